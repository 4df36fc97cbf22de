"""Locks on the storage host, shared by every process that drives it.

cinder-volume processes on several hosts (or two backends on one parent)
reach the same storage host; an in-process lock cannot keep their
multi-step operations apart, a ``flock`` on the storage host can. Lock
files live in a directory only the lock's users can write (never the
world-writable /run/lock), and a dead holder releases its lock with its
process.
"""

import contextlib
import errno
import fcntl
import os
import stat
import time

from . import errors

DEFAULT_WAIT = 120


def _check_dir(path, owners):
    """The lock directory must not be writable by anybody but its users."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in owners or \
            st.st_mode & 0o022:
        raise errors.Refused(
            'lock directory %s must be a directory owned by uid %s and not '
            'writable by group or others' % (path, ' or '.join(
                str(o) for o in sorted(owners))),
            hint='setup-storage-host.sh creates it (systemd-tmpfiles).')


def ensure_dir(path, owners=None):
    """Create (root only) or check a lock directory."""
    owners = set(owners or ()) | {0, os.geteuid()}
    try:
        os.mkdir(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise errors.Unavailable(
                'cannot create lock directory %s' % path, e.strerror,
                'setup-storage-host.sh creates it (systemd-tmpfiles).')
    _check_dir(path, owners)


@contextlib.contextmanager
def hold(directory, name, shared=False, wait=DEFAULT_WAIT, owners=None):
    """Hold ``directory/name.lock`` (shared or exclusive) for the block.

    ``owners``: uids besides root and ourselves that may own the directory
    (the agent account, when root uses the agent's directory).
    """
    ensure_dir(directory, owners)
    path = os.path.join(directory, name + '.lock')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        if os.geteuid() == 0:
            # root shares the agent account's directory: leave the lock
            # file usable by that account
            st = os.stat(directory)
            os.fchown(fd, st.st_uid, st.st_gid)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise errors.Timeout(
                    'another operation on the storage host held %s for more '
                    'than %s s' % (path, wait),
                    hint='Look for a hung zfs or target command on the '
                         'storage host.')
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        yield
    finally:
        os.close(fd)


def lock_name(dataset):
    """A file name for a dataset's lock: tank/cinder -> tank%cinder."""
    return dataset.replace('/', '%')
