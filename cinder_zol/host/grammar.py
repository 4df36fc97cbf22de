"""The exact zfs command lines the storage host side may run.

Every ``zfs`` argv built by :mod:`.zfs` is checked here before it runs, so
no code path (nor a future change) can name a dataset outside the allowed
parents, use ``-r``/``-R`` on a destroy, touch ``mountpoint`` or send and
receive streams. Positional and exact: an option is accepted only at its
place, so getopt's argument permutation cannot smuggle one in. The unit
tests feed every command the host code produces through :func:`check_zfs`.
"""

import re

from . import errors
from . import names
from . import props as zprops
from . import wire

# Columns `zfs list` may be asked for.
LIST_FIELDS = frozenset((
    'name', 'type', 'volsize', 'used', 'available', 'refreservation',
    'origin', 'clones', 'defer_destroy', 'createtxg', 'volblocksize',
    'referenced', 'logicalused', zprops.MANAGED) + zprops.IMAGE)
LIST_TYPES = frozenset(('all', 'volume', 'snapshot', 'filesystem',
                        'filesystem,volume', 'volume,snapshot'))
GET_PROPS = frozenset(('type', 'used', 'available', 'used,available',
                       'type,used,available', 'type,volmode', 'version',
                       zprops.MANAGED))


def _dataset(arg, parents):
    """P/NAME with P an allowed parent and NAME one safe component."""
    for parent in parents:
        prefix = parent + '/'
        if arg.startswith(prefix):
            names.component(arg[len(prefix):])
            return arg
    raise errors.Refused('%r is not a dataset directly below %s'
                         % (arg, ' or '.join(parents)))


def _snapshots(arg, parents, several=False):
    dataset, at, snaps = arg.partition('@')
    if not at:
        raise errors.Refused('%r is not a snapshot' % arg)
    _dataset(dataset, parents)
    for snap in snaps.split(',') if several else [snaps]:
        names.component(snap, 'snapshot name')
    return arg


def _snapshot_set(args, parents):
    """One or more snapshots of distinct zvols below ONE parent.

    One command is one transaction group in one pool: that is what makes a
    group snapshot consistent, so the datasets must share their parent.
    """
    if not 1 <= len(args) <= wire.MAX_SNAPSHOTS:
        raise errors.Refused('a snapshot command takes 1 to %d snapshots, '
                             'not %d' % (wire.MAX_SNAPSHOTS, len(args)))
    datasets = [_snapshots(arg, parents).partition('@')[0] for arg in args]
    if len(set(d.rsplit('/', 1)[0] for d in datasets)) != 1:
        raise errors.Refused('snapshots below different parents in one '
                             'command: %s' % ' '.join(args))
    if len(set(datasets)) != len(datasets):
        raise errors.Refused('two snapshots of one dataset in one command: '
                             '%s' % ' '.join(args))
    return args


def _assignment(arg, allowed):
    key, eq, value = arg.partition('=')
    if not eq or key not in allowed:
        raise errors.Refused('property %r may not be set here' % key)
    names.properties({key: value})
    return key, value


def _options(args):
    """Leading ``-o k=v`` pairs -> (dict, rest)."""
    props = {}
    while len(args) >= 2 and args[0] == '-o':
        key, value = _assignment(args[1], zprops.SETTABLE)
        props[key] = value
        args = args[2:]
    return props, args


def _new_zvol(props):
    """A created or cloned zvol's options carry the marks of ours."""
    return props.get(zprops.MANAGED) == 'yes' and \
        all(props.get(key) == value
            for key, value in zprops.FIXED.items())


def _expect(cond, argv):
    if not cond:
        raise errors.Refused('zfs command not in the grammar: %s'
                             % ' '.join(argv))


def check_zfs(argv, parents):
    """Refuse (errors.Refused) any zfs argv outside the exact grammar."""
    _expect(len(argv) >= 2 and argv[0] == 'zfs', argv)
    verb, args = argv[1], list(argv[2:])
    if verb == 'list':
        _expect(len(args) == 9 and args[:3] == ['-H', '-p', '-o'] and
                set(args[3].split(',')) <= LIST_FIELDS and
                args[4] == '-t' and args[5] in LIST_TYPES and
                args[6] == '-d' and args[7] in ('0', '1', '2'), argv)
        if args[8] not in parents:
            _dataset(args[8], parents)
    elif verb == 'get':
        _expect(len(args) == 6 and args[:4] == ['-H', '-p', '-o', 'value']
                and args[4] in GET_PROPS, argv)
        if args[5] not in parents:
            _dataset(args[5], parents)
    elif verb == 'create':
        _expect(len(args) >= 3 and args[0] == '-V', argv)
        names.size(args[1])
        args = args[2:]
        if args[0] == '-s':
            args = args[1:]
        props, rest = _options(args)
        _expect(len(rest) == 1 and _new_zvol(props), argv)
        _dataset(rest[0], parents)
    elif verb == 'snapshot':
        _snapshot_set(args, parents)
    elif verb == 'clone':
        props, rest = _options(args)
        _expect(len(rest) == 2 and _new_zvol(props), argv)
        _snapshots(rest[0], parents)
        _dataset(rest[1], parents)
    elif verb in ('promote', 'destroy') and len(args) == 1:
        _dataset(args[0], parents)
    elif verb == 'destroy':
        _expect(len(args) == 2 and args[0] == '-d', argv)
        _snapshots(args[1], parents, several=True)
    elif verb == 'rename' and len(args) == 2 and '@' in args[0]:
        # a snapshot, renamed within its own zvol only
        _snapshots(args[0], parents)
        _snapshots(args[1], parents)
        _expect(args[0].split('@')[0] == args[1].split('@')[0], argv)
    elif verb == 'rename':
        _expect(len(args) == 2, argv)
        _dataset(args[0], parents)
        _dataset(args[1], parents)
    elif verb == 'set':
        _expect(len(args) >= 2, argv)
        for arg in args[:-1]:
            key, value = _assignment(arg, zprops.SETTABLE)
            _expect(zprops.FIXED.get(key, value) == value, argv)
        _dataset(args[-1], parents)
    elif verb == 'inherit':
        _expect(len(args) == 2 and args[0] in zprops.INHERITABLE, argv)
        _dataset(args[1], parents)
    elif verb == 'rollback':
        _expect(len(args) in (1, 2), argv)
        if len(args) == 2:
            _expect(args[0] == '-r', argv)
        _snapshots(args[-1], parents)
    elif verb == 'version':
        _expect(not args, argv)
    else:
        _expect(False, argv)
    return argv


_ZFS_VERSION = re.compile(r'zfs-(?:kmod-)?([0-9]+\.[0-9]+\.[0-9]+)')


def parse_version(text):
    """'zfs-2.1.11-1\\nzfs-kmod-2.1.11-1' -> (2, 1, 11) of the module."""
    found = _ZFS_VERSION.findall(text or '')
    if not found:
        return None
    return tuple(int(x) for x in found[-1].split('.'))


# -- nvmet configfs ----------------------------------------------------------
#
# What the root helper may do below /sys/kernel/config/nvmet (paths relative
# to it): the objects of one export, the attributes that build them, and
# nothing that opens a subsystem to every host (attr_allow_any_host is only
# ever written 0).

# Whole-string patterns (re.fullmatch), ASCII digits only.
_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                   r'[0-9a-f]{12}')
_NVMET_VALUES = {
    'attr_allow_any_host': re.compile(r'0'),
    'enable': re.compile(r'[01]'),
    'revalidate_size': re.compile(r'1'),
    'device_uuid': _UUID,
    'device_nguid': _UUID,
    'addr_trtype': re.compile(r'tcp'),
    'addr_adrfam': re.compile(r'ipv4'),
    'addr_traddr': re.compile(r'0\.0\.0\.0'),
    'addr_trsvcid': re.compile(r'[1-9][0-9]{0,4}'),
}
# A port or namespace number (str.isdigit() takes any Unicode digit).
_NUMBER = re.compile(r'[0-9]{1,10}')


def _number(text):
    return _NUMBER.fullmatch(text) is not None


def _nvmet_object(parts):
    """The kind of object a configfs path names, checking every name."""
    if len(parts) == 2 and parts[0] == 'hosts':
        names.nqn(parts[1], 'host NQN')
        return 'host'
    if len(parts) == 2 and parts[0] == 'ports' and _number(parts[1]):
        return 'port'
    if len(parts) >= 2 and parts[0] == 'subsystems':
        names.nqn(parts[1], 'subsystem NQN')
        if len(parts) == 2:
            return 'subsystem'
        if len(parts) == 4 and parts[2] == 'namespaces' and \
                _number(parts[3]):
            return 'namespace'
        if len(parts) == 4 and parts[2] == 'allowed_hosts':
            names.nqn(parts[3], 'host NQN')
            return 'allowed host'
    if len(parts) == 4 and parts[0] == 'ports' and _number(parts[1]) and \
            parts[2] == 'subsystems':
        names.nqn(parts[3], 'subsystem NQN')
        return 'port subsystem'
    return None


def check_nvmet(action, path, value=None):
    """Refuse (errors.Refused) any nvmet configfs change outside the grammar.

    ``action`` is mkdir, rmdir, write (``value`` the text), link (``value``
    the link's target path) or unlink; paths are relative to the nvmet
    configfs root.
    """
    parts = path.split('/') if isinstance(path, str) else []
    refused = errors.Refused('nvmet %s %r%s is not in the grammar'
                             % (action, path, '' if value is None
                                else ' = %r' % (value,)))
    if not parts or '' in parts or '.' in parts or '..' in parts:
        raise refused
    if action in ('mkdir', 'rmdir'):
        kind = _nvmet_object(parts)
        if kind not in ('host', 'port', 'subsystem', 'namespace'):
            raise refused
    elif action == 'write':
        attr = parts[-1]
        kind = _nvmet_object(parts[:-1])
        if not isinstance(value, str):
            raise refused
        if attr == 'device_path' and kind == 'namespace':
            device = value[len('/dev/zvol/'):].split('/')
            if not value.startswith('/dev/zvol/') or len(device) < 3:
                raise refused
            names.parent('/'.join(device[:-1]))
            names.component(device[-1])
        elif attr not in _NVMET_VALUES or \
                not _NVMET_VALUES[attr].fullmatch(value) or kind != {
                    'attr_allow_any_host': 'subsystem',
                    'enable': 'namespace', 'revalidate_size': 'namespace',
                    'device_uuid': 'namespace', 'device_nguid': 'namespace',
                }.get(attr, 'port'):
            raise refused
    elif action == 'link':
        kind = _nvmet_object(parts)
        target = value.split('/') if isinstance(value, str) else []
        if kind == 'allowed host' and target == ['hosts', parts[3]]:
            return
        if kind == 'port subsystem' and target == ['subsystems', parts[3]]:
            return
        raise refused
    elif action == 'unlink':
        if _nvmet_object(parts) not in ('allowed host', 'port subsystem'):
            raise refused
    else:
        raise refused
