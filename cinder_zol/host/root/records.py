"""The root helper's own record of each export it made.

One JSON file per export, in a directory only root can read
(``/var/lib/cinder-zol-target/<helper>/<parent>/<name>.json``): which
target the zvol is exported as, its serial, ports and allowed initiators.
No secret is kept here (CHAP lives where tgt and LIO keep it).

The record serves two purposes. It ties a target name to a zvol for the
binding check when the target itself cannot show it (a crash left the
target without its LUN or namespace). And it is what brings back exports
of a helper that keeps no configuration of its own: nvmet forgets
everything at a reboot, so ``cinder-zol-target restore`` (run at boot by
``cinder-zol-target-restore.service``) re-creates them from here, with or
without a cinder-volume running.
"""

import json
import os
import tempfile

from .. import errors
from .. import locks


def _path(state_dir, helper, parent, name):
    return os.path.join(state_dir, helper, locks.lock_name(parent),
                        name + '.json')


def read(state_dir, helper, parent, name):
    """The record of PARENT/NAME's export, or None."""
    try:
        with open(_path(state_dir, helper, parent, name)) as f:
            record = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as e:
        raise errors.TargetError('the export record of %s/%s is unreadable'
                                 % (parent, name), str(e),
                                 'Remove it; ensure_export writes it anew.')
    return record if isinstance(record, dict) else None


def write(state_dir, helper, parent, name, record):
    """Replace the record atomically (root only, 0600)."""
    path = _path(state_dir, helper, parent, name)
    try:
        _make_dirs(state_dir, os.path.dirname(path))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path),
                                   prefix='.record-')
        with os.fdopen(fd, 'w') as f:
            json.dump(dict(record, parent=parent, name=name), f,
                      sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as e:
        raise errors.TargetError('writing the export record %s failed'
                                 % path, e.strerror)


def _make_dirs(state_dir, path):
    """Each missing level from state_dir down to path, root only."""
    for level in (state_dir, os.path.dirname(path), path):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            pass


def remove(state_dir, helper, parent, name):
    try:
        os.unlink(_path(state_dir, helper, parent, name))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise errors.TargetError('removing the export record of %s/%s '
                                 'failed' % (parent, name), e.strerror)


def every(state_dir, helper):
    """All records of one helper, in a stable order."""
    base = os.path.join(state_dir, helper)
    found = []
    for parent_dir in sorted(_listdir(base)):
        for entry in sorted(_listdir(os.path.join(base, parent_dir))):
            if entry.endswith('.json') and not entry.startswith('.'):
                parent = parent_dir.replace('%', '/')
                record = read(state_dir, helper, parent, entry[:-5])
                if record is not None:
                    found.append(record)
    return found


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
