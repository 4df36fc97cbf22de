"""The operations the driver may ask of the storage host: the vocabulary.

Each operation is one request (``OP ARG...`` plus a JSON payload) and runs
entirely on the storage host, under the host's dependency lock where it
changes what other datasets depend on. That gives one round trip per
Cinder operation, atomicity across every cinder-volume process that shares
the parent dataset, and a fixed grammar for the SSH wrapper: the argument
spec of each operation below *is* the grammar (:func:`parse`).

Argument kinds: PARENT (a dataset listed in host.conf), NAME and SNAP (one
safe name component), SIZE (bytes, decimal), HELPER (an enabled target
helper), NAMES (one or more NAME, last argument only), SNAPSHOTS (one or
more NAME@SNAP of distinct zvols, at most grammar.MAX_SNAPSHOTS, last
argument only).
"""

import os

from . import dependents
from . import errors
from . import grammar
from . import locks
from . import log
from . import names
from . import props as zprops

PROTOCOL = 1

OPERATIONS = {}


class Operation(object):

    def __init__(self, name, spec, func, lock, payload, target, stream):
        self.name = name
        self.spec = spec.split()
        self.func = func
        self.lock = lock          # None, 'shared' or 'exclusive'
        self.payload = payload    # reads a JSON object from stdin
        self.target = target      # runs as root (the root helper)
        self.stream = stream      # stdin/stdout carry raw data


def op(name, spec='', lock=None, payload=False, target=False, stream=False):
    def register(func):
        OPERATIONS[name] = Operation(name, spec, func, lock, payload, target,
                                     stream)
        return func
    return register


def _check_arg(kind, value, config):
    if kind == 'PARENT':
        return config.check_parent(value)
    if kind in ('NAME', 'SNAP', 'NAMES'):
        return names.component(value, kind.lower())
    if kind == 'SNAPSHOTS':
        name, at, snap = value.partition('@')
        if not at:
            raise errors.Refused('%r is not NAME@SNAPSHOT' % (value,))
        names.component(name, 'zvol name')
        names.component(snap, 'snapshot name')
        return value
    if kind == 'SIZE':
        names.size(value)
        return value
    if kind == 'HELPER':
        return config.check_helper(value)
    raise AssertionError(kind)


def parse(argv, config):
    """Validate ``[OP, ARG...]`` against the vocabulary; (Operation, args).

    Raises errors.Refused for anything else; nothing has run then.
    """
    if not argv or argv[0] not in OPERATIONS:
        raise errors.Refused('unknown operation %r' % (argv[:1],))
    operation = OPERATIONS[argv[0]]
    args = list(argv[1:])
    spec = operation.spec
    variadic = bool(spec) and spec[-1] in ('NAMES', 'SNAPSHOTS')
    if len(args) != len(spec) and not (variadic and len(args) >= len(spec)):
        raise errors.Refused('%s takes %s, not %d arguments' % (
            operation.name, ' '.join(spec) or 'no arguments', len(args)))
    if variadic and len(args) - len(spec) + 1 > grammar.MAX_SNAPSHOTS:
        raise errors.Refused('%s takes at most %d %s' % (
            operation.name, grammar.MAX_SNAPSHOTS, spec[-1]))
    for i, value in enumerate(args):
        kind = spec[min(i, len(spec) - 1)]
        _check_arg(kind, value, config)
    return operation, args


def _grow(host, name, size, current):
    """Grow a zvol to ``size`` bytes; never shrink (zfs would allow it)."""
    size = names.size(size)
    if current is not None and size < current:
        raise errors.Invalid(
            'resize %s failed' % host.path(name),
            'refusing to shrink from %d to %d bytes' % (current, size))
    if current is None or size > current:
        host.set_volsize(name, size)


def _owned_zvol(host, name, what):
    """Refuse a zvol that is missing or not the driver's: one read."""
    try:
        rows = host.list(name, types='volume', depth=0)
    except errors.NotFound:
        rows = []
    if not rows:
        raise errors.NotFound('%s failed' % what, 'there is no zvol %s'
                              % host.path(name),
                              'It may have been removed outside Cinder.')
    return dependents.owned(rows[0])


def _props(payload):
    return zprops.requested(payload.get('props') or {})


def _sparse(payload):
    return bool(payload.get('sparse', True))


# -- information ---------------------------------------------------------

@op('version')
def version(ctx, payload):
    zfs_version = ctx.zfs_version()
    return {'protocol': PROTOCOL, 'euid': os.geteuid(),
            'zfs': '.'.join(map(str, zfs_version)) if zfs_version else None,
            'datasets': ctx.config.datasets,
            'target_helpers': ctx.config.target_helpers}


@op('check', 'PARENT')
def check(ctx, parent, payload):
    host = ctx.zfs(parent)
    return {'type': host.parent_type()}


@op('stats', 'PARENT')
def stats(ctx, parent, payload):
    """Capacity; the first call after a storage-host boot sweeps first.

    The driver asks for stats every minute, so what a storage-host crash
    left half done is finished then, not only when cinder-volume restarts.
    """
    if not _swept_this_boot(ctx, parent):
        _sweep_after_boot(ctx, parent)
    used, available = ctx.zfs(parent).space()
    return {'used': used, 'available': available}


def _swept_this_boot(ctx, parent):
    return locks.done_this_boot(ctx.lock_dir, locks.lock_name(parent))


def _sweep_after_boot(ctx, parent):
    """Sweep once per boot; a failure only postpones it to the next call."""
    try:
        with ctx.locked(parent, 'exclusive'):
            if not _swept_this_boot(ctx, parent):
                sweep(ctx, parent, {})
    except errors.HostError as e:
        log.note('The sweep after the storage host booted failed; the next '
                 'stats request retries it: %s' % e)


@op('sweep', 'PARENT', lock='exclusive')
def sweep(ctx, parent, payload):
    """Finish what crashes left; {'actions': n, 'left': {name: why}}."""
    actions, left = dependents.sweep(ctx.zfs(parent), ctx.transient_prefixes)
    locks.mark_done_this_boot(ctx.lock_dir, locks.lock_name(parent))
    return {'actions': actions, 'left': left}


# -- volumes and snapshots ---------------------------------------------

@op('create', 'PARENT NAME SIZE', payload=True)
def create(ctx, parent, name, size, payload):
    ctx.zfs(parent).create_volume(name, size, bool(payload.get('sparse')),
                                  _props(payload))
    return {}


@op('delete', 'PARENT NAME', lock='exclusive')
def delete(ctx, parent, name, payload):
    return {'result': dependents.delete_volume(ctx.zfs(parent), name)}


@op('snapshot', 'PARENT SNAP NAMES')
def snapshot(ctx, parent, snap, name, *more, payload):
    host = ctx.zfs(parent)
    for each in (name,) + more:
        _owned_zvol(host, each, 'snapshot of %s' % host.path(each))
    host.snapshot(name, snap, *more)
    return {}


@op('delete-snapshot', 'PARENT NAME SNAP', lock='exclusive')
def delete_snapshot(ctx, parent, name, snap, payload):
    dependents.delete_snapshot(ctx.zfs(parent), name, snap)
    return {}


@op('clone', 'PARENT NAME NAME SIZE', lock='shared', payload=True)
def clone(ctx, parent, source, new, size, payload):
    """A new zvol with the current data of ``source``, grown to ``size``."""
    host = ctx.zfs(parent)
    src = dependents.owned_dataset(host, source, 'clone')
    dependents.clone_volume(host, source, new, _props(payload),
                            _sparse(payload))
    _grow_new(host, new, size, src.volsize)
    return {}


@op('clone-snapshot', 'PARENT NAME SNAP NAME SIZE', lock='shared',
    payload=True)
def clone_snapshot(ctx, parent, source, snap, new, size, payload):
    """A new zvol from a snapshot, of ``size`` bytes: one zfs command.

    The clone is made at its size (``zfs clone -o volsize``), without
    reading the snapshot first (that read was a quarter of the operation).
    zfs itself refuses a missing snapshot; a smaller size than the
    snapshot's is refused here against ``snapshot_size``, which the driver
    sends from Cinder's records: a snapshot's volsize is never above them
    (zvols are whole GiB; manage rounds up), and Cinder's API refuses a
    volume smaller than its snapshot. The source must be the driver's:
    a clone of a foreign zvol would be a managed copy of its data. The
    shared lock keeps the source from being renamed by a revert meanwhile.
    """
    host = ctx.zfs(parent)
    size = names.size(size)
    floor = payload.get('snapshot_size')
    if floor is not None and size < names.size(floor):
        raise errors.Invalid(
            'clone of %s failed' % host.path(source, snap),
            'refusing to make a %d-byte volume from a %s-byte snapshot'
            % (size, floor))
    _owned_zvol(host, source, 'clone of %s' % host.path(source, snap))
    host.clone(source, snap, new, _props(payload), _sparse(payload),
               volsize=size)
    return {}


def _grow_new(host, name, size, current):
    """Grow a fresh clone; destroy it again if that fails."""
    try:
        _grow(host, name, size, current)
    except errors.HostError:
        try:
            host.destroy(name)
        except errors.HostError as e:
            log.note('Removing %s after a failed resize failed: %s'
                     % (name, e))
        raise


@op('extend', 'PARENT NAME SIZE')
def extend(ctx, parent, name, size, payload):
    host = ctx.zfs(parent)
    ds = dependents.owned_dataset(host, name, 'extend')
    _grow(host, name, size, ds.volsize)
    return {}


@op('revert', 'PARENT NAME SNAP SIZE', lock='exclusive', payload=True)
def revert(ctx, parent, name, snap, size, payload):
    """Revert to a snapshot, then grow back to ``size`` (Cinder's size)."""
    host = ctx.zfs(parent)
    volsize = dependents.revert(host, name, snap, _props(payload),
                                _sparse(payload))
    _grow(host, name, size, volsize)
    return {}


@op('rename', 'PARENT NAME NAME', lock='exclusive')
def rename(ctx, parent, old, new, payload):
    host = ctx.zfs(parent)
    dependents.owned_dataset(host, old, 'rename')
    host.rename(old, new)
    return {}
