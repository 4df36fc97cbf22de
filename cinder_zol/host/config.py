"""/etc/cinder-zol/host.conf: what this storage host lets the driver use.

Root-owned and written by setup-storage-host.sh; read by the agent and by
the root helper on every call::

    # parent datasets cinder-zol may manage (space separated)
    datasets = tank/cinder
    # target helpers the root helper may drive
    target_helpers = tgtadm lioadm nvmet
    # account that runs the agent (for the root helper's checks)
    user = cinder-zol
    # TCP ports targets may listen on
    target_ports = 3260 4420
    # zvol data streams the root helper runs at once
    max_streams = 4
    # pool features properties may activate (none by default)
    pool_features = zstd

A tiny ``key = value`` format (no configparser): the agent starts once per
command, and every import counts.
"""

import re

from . import errors
from . import helpers
from . import names
from . import props

PATH = '/etc/cinder-zol/host.conf'
TARGET_PORTS = tuple(helpers.default_ports(helpers.NAMES))
MAX_STREAMS = 4
_NUMBER = re.compile(r'[1-9][0-9]{0,4}')


class HostConfig(object):

    def __init__(self, datasets, target_helpers=helpers.NAMES, user='root',
                 target_ports=TARGET_PORTS, max_streams=MAX_STREAMS,
                 pool_features=()):
        self.datasets = [names.parent(d) for d in datasets]
        self.target_helpers = [h for h in target_helpers
                               if h in helpers.HELPERS]
        self.user = user
        self.target_ports = list(target_ports)
        self.max_streams = max_streams
        self.pool_features = list(pool_features)

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

    def check_port(self, port):
        """A TCP port targets may listen on here, or Refused."""
        if type(port) is not int or port not in self.target_ports:
            raise errors.Refused(
                'port %r is not a target port of this storage host (%s)'
                % (port, ' '.join(map(str, self.target_ports)) or 'none'),
                hint='Add it to "target_ports" in %s '
                     '(setup-storage-host.sh --target-port %s).'
                     % (PATH, port))
        return port


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
    ports = values.get('target_ports')
    return HostConfig(
        values.get('datasets', '').split(),
        values.get('target_helpers', ' '.join(helpers.NAMES)).split(),
        values.get('user', 'root'),
        TARGET_PORTS if ports is None else
        [_number('target_ports', p, 65535) for p in ports.split()],
        _number('max_streams', values.get('max_streams', str(MAX_STREAMS)),
                1000),
        [_feature(f) for f in values.get('pool_features', '').split()])


def _number(key, text, highest):
    if not _NUMBER.fullmatch(text) or int(text) > highest:
        raise errors.Unavailable('%s: %s = %s is not a number from 1 to %d'
                                 % (PATH, key, text, highest))
    return int(text)


def _feature(name):
    if name not in props.POOL_FEATURES:
        raise errors.Unavailable(
            '%s: pool_features lists %r; known are %s'
            % (PATH, name, ' '.join(sorted(props.POOL_FEATURES))))
    return name


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
# The root helper's records of the exports it made (.root.records): root
# only.
TARGET_STATE_DIR = '/var/lib/cinder-zol-target'


def agent_uid(user):
    """uid of the configured agent account (None if it does not exist)."""
    import pwd
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None
