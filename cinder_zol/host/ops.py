"""The volume operations: information, zvols and snapshots.

Each operation is one request (``OP ARG...`` plus a JSON payload) and runs
entirely on the storage host, under the host's dependency lock where it
changes what other datasets depend on. That gives one round trip per
Cinder operation, atomicity across every cinder-volume process that shares
the parent dataset, and a fixed grammar for the SSH wrapper: the argument
spec of each operation in :data:`.wire.OPERATIONS` *is* the grammar
(:func:`.wire.parse`); here each is bound to its implementation
(:func:`.serve.implements`).
"""

import os

from . import dependents
from . import errors
from . import locks
from . import log
from . import names
from . import props as zprops
from . import wire
from .serve import implements


def grow(host, name, size, current):
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


def requested_props(payload):
    return zprops.requested(payload.get('props') or {})


def _sparse(payload):
    return bool(payload.get('sparse', True))


# -- information ---------------------------------------------------------

@implements('version')
def version(ctx, payload):
    zfs_version = ctx.zfs_version()
    return {'protocol': wire.PROTOCOL, 'euid': os.geteuid(),
            'zfs': '.'.join(map(str, zfs_version)) if zfs_version else None,
            'datasets': ctx.config.datasets,
            'target_helpers': ctx.config.target_helpers}


@implements('check')
def check(ctx, parent, payload):
    return ctx.zfs(parent).parent_props()


@implements('stats')
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


@implements('sweep')
def sweep(ctx, parent, payload):
    """Finish what crashes left; {'actions': n, 'left': {name: why}}."""
    actions, left = dependents.sweep(ctx.zfs(parent), ctx.transient_prefixes)
    locks.mark_done_this_boot(ctx.lock_dir, locks.lock_name(parent))
    return {'actions': actions, 'left': left}


# -- volumes and snapshots ---------------------------------------------

@implements('create')
def create(ctx, parent, name, size, payload):
    ctx.zfs(parent).create_volume(name, size, bool(payload.get('sparse')),
                                  requested_props(payload))
    return {}


@implements('delete')
def delete(ctx, parent, name, payload):
    return {'result': dependents.delete_volume(ctx.zfs(parent), name)}


@implements('snapshot')
def snapshot(ctx, parent, snap, name, *more, payload):
    host = ctx.zfs(parent)
    for each in (name,) + more:
        _owned_zvol(host, each, 'snapshot of %s' % host.path(each))
    host.snapshot(name, snap, *more)
    return {}


@implements('delete-snapshot')
def delete_snapshot(ctx, parent, name, snap, payload):
    dependents.delete_snapshot(ctx.zfs(parent), name, snap)
    return {}


@implements('clone')
def clone(ctx, parent, source, new, size, payload):
    """A new zvol with the current data of ``source``, grown to ``size``."""
    host = ctx.zfs(parent)
    src = dependents.owned_dataset(host, source, 'clone')
    dependents.clone_volume(host, source, new, requested_props(payload),
                            _sparse(payload))
    _grow_new(host, new, size, src.volsize)
    return {}


@implements('clone-snapshot')
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
    host.clone(source, snap, new, requested_props(payload), _sparse(payload),
               volsize=size)
    return {}


def _grow_new(host, name, size, current):
    """Grow a fresh clone; destroy it again if that fails."""
    try:
        grow(host, name, size, current)
    except errors.HostError:
        try:
            host.destroy(name)
        except errors.HostError as e:
            log.note('Removing %s after a failed resize failed: %s'
                     % (name, e))
        raise


@implements('extend')
def extend(ctx, parent, name, size, payload):
    host = ctx.zfs(parent)
    ds = dependents.owned_dataset(host, name, 'extend')
    grow(host, name, size, ds.volsize)
    return {}


@implements('revert')
def revert(ctx, parent, name, snap, size, payload):
    """Revert to a snapshot, then grow back to ``size`` (Cinder's size)."""
    host = ctx.zfs(parent)
    volsize = dependents.revert(host, name, snap, requested_props(payload),
                                _sparse(payload))
    grow(host, name, size, volsize)
    return {}


@implements('rename')
def rename(ctx, parent, old, new, payload):
    host = ctx.zfs(parent)
    dependents.owned_dataset(host, old, 'rename')
    host.rename(old, new)
    return {}
