"""/etc/cinder-zol/host.conf: what this storage host lets the driver use.

Root-owned and written by setup-storage-host.sh; read by the agent and by
the root helper on every call::

    # parent datasets cinder-zol may manage (space separated)
    datasets = tank/cinder
    # target helpers the root helper may drive
    target_helpers = tgtadm lioadm nvmet
    # account that runs the agent (for the root helper's checks)
    user = cinder-zol

A tiny ``key = value`` format (no configparser): the agent starts once per
command, and every import counts.
"""

from . import errors
from . import names

PATH = '/etc/cinder-zol/host.conf'
TARGET_HELPERS = ('tgtadm', 'lioadm', 'nvmet')


class HostConfig(object):

    def __init__(self, datasets, target_helpers=TARGET_HELPERS, user='root'):
        self.datasets = [names.parent(d) for d in datasets]
        self.target_helpers = [h for h in target_helpers
                               if h in TARGET_HELPERS]
        self.user = user

    def check_parent(self, parent):
        names.parent(parent)
        if parent not in self.datasets:
            raise errors.Refused(
                'dataset %s is not managed on this storage host' % parent,
                hint='Add it to "datasets" in %s (setup-storage-host.sh '
                     '--dataset %s).' % (PATH, parent))
        return parent

    def check_helper(self, helper):
        if helper not in self.target_helpers:
            raise errors.Refused(
                'target helper %r is not enabled on this storage host'
                % (helper,),
                hint='Set zol_target_helper to one of %s, or add it to '
                     '"target_helpers" in %s.'
                     % (', '.join(self.target_helpers) or '(none)', PATH))
        return helper


def parse(text):
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        key, eq, value = line.partition('=')
        if not eq:
            raise errors.Unavailable('%s line %d is not "key = value"'
                                     % (PATH, number))
        values[key.strip()] = value.strip()
    return HostConfig(
        values.get('datasets', '').split(),
        values.get('target_helpers', ' '.join(TARGET_HELPERS)).split(),
        values.get('user', 'root'))


def load(path=PATH):
    try:
        with open(path) as f:
            return parse(f.read())
    except FileNotFoundError:
        raise errors.Unavailable(
            '%s is missing: this host is not set up for cinder-zol' % path,
            hint='Run setup-storage-host.sh on the storage host.')
    except OSError as e:
        raise errors.Unavailable('cannot read %s' % path, e.strerror)


# Dependency locks of the agent, whichever account runs it (root in a lab,
# the agent account otherwise): one directory, so both exclude each other.
# Owned by the agent account (systemd-tmpfiles, set up by
# setup-storage-host.sh).
LOCK_DIR = '/run/cinder-zol'
# The root helper's own lock directory: root only.
TARGET_LOCK_DIR = '/run/cinder-zol-target'


def agent_uid(user):
    """uid of the configured agent account (None if it does not exist)."""
    import pwd
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None
