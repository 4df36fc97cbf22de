"""Deleting and reverting datasets that clones still depend on.

ZFS refuses to destroy a snapshot with clones, or a zvol whose snapshots
have clones; Cinder expects both deletes to succeed while the clones keep
working. The bookkeeping lives on the storage host only, so a restart at
any point loses and leaks nothing:

* a snapshot is destroyed with ``zfs destroy -d``: at once when nothing
  depends on it, otherwise zfs marks it and destroys it itself when its last
  clone goes;
* a zvol whose snapshots still have clones is renamed to
  ``deleted-<name>-<ns>`` (hidden from Cinder and from the stats) and
  destroyed by :func:`collect` once it has no snapshots left;
* the temporary snapshot behind a volume clone is deferred-destroyed right
  after the clone exists, so zfs removes it with the clone.

Nothing here ever uses ``-r``/``-R`` on data a user may need.
"""

import time

from oslo_log import log as logging
from oslo_utils import excutils

from cinder_zol import exception

LOG = logging.getLogger(__name__)

DELETED_PREFIX = 'deleted-'
REVERTING_PREFIX = 'reverting-'
CLONE_SNAP_PREFIX = 'clone-'


def is_hidden(name):
    return name.startswith((DELETED_PREFIX, REVERTING_PREFIX))


def hidden_name(name):
    # Nanoseconds in fixed-width hex: unique, and sorts by age.
    return '%s%s-%016x' % (DELETED_PREFIX, name, time.time_ns())


def clone_snapshot_name(new_name):
    return CLONE_SNAP_PREFIX + new_name


def _owned(ds):
    if not ds.managed:
        raise exception.NotOwned(dataset=ds.name)
    return ds


def delete_volume(host, name):
    """Delete a zvol for Cinder; keep it hidden while clones need it.

    Returns False when the zvol did not exist.
    """
    ds = host.get(name)
    if ds is None:
        return False
    _owned(ds)
    snaps = ds['snapshots']
    host.destroy_snapshots(name, [s.snapshot_name for s in snaps])
    if any(s.clones for s in snaps):
        _hide(host, ds)
        return True
    host.destroy(name)
    collect(host, ds['origin'])
    return True


def _hide(host, ds):
    name = host.child_name(ds.name)
    hidden = hidden_name(name)
    host.rename(name, hidden)
    LOG.info('Volume %(name)s still has dependent clones; kept on the '
             'storage host as %(hidden)s until the last one is deleted.',
             {'name': name, 'hidden': hidden})
    _release_reservation(host, ds, hidden)


def _release_reservation(host, ds, hidden):
    """Nobody writes to a hidden zvol: give its reservation back."""
    if not ds['refreservation']:
        return
    try:
        host.set(hidden, {'refreservation': 'none'})
    except exception.ZfsError as e:
        LOG.warning('Could not drop the reservation of %s: %s', hidden, e)


def delete_snapshot(host, name, snapshot):
    """Delete a snapshot now, or once its last clone is gone."""
    try:
        host.destroy_snapshots(name, [snapshot])
    except exception.ZfsNotFound:
        LOG.info('Snapshot %s@%s was already gone.', name, snapshot)


def clone_volume(host, source, new_name, props):
    """Clone a zvol through a temporary snapshot that zfs cleans up."""
    snap = clone_snapshot_name(new_name)
    host.snapshot(source, snap)
    try:
        host.clone(source, snap, new_name, props)
    except Exception:
        with excutils.save_and_reraise_exception():
            host.destroy_snapshots(source, [snap])
    # Deferred: destroyed by zfs when the clone is destroyed.
    host.destroy_snapshots(source, [snap])


def collect(host, origin):
    """Destroy hidden zvols up the origin chain that nothing needs now."""
    name = _deleted_child(host, origin)
    while name:
        name = _deleted_child(host, _destroy_if_unneeded(host, name))


def _deleted_child(host, origin):
    if not origin:
        return None
    try:
        name = host.child_name(origin.split('@', 1)[0])
    except exception.UnsafeName:
        return None  # origin outside our parent: not ours to collect
    return name if name.startswith(DELETED_PREFIX) else None


def _destroy_if_unneeded(host, name):
    """Destroy a hidden zvol without dependents; return its origin."""
    ds = host.get(name)
    if ds is None or not ds.managed:
        return None
    leftovers = [s.snapshot_name for s in ds['snapshots'] if not s.clones]
    host.destroy_snapshots(name, leftovers)
    if any(s.clones for s in ds['snapshots']):
        return None
    try:
        host.destroy(name)
    except exception.ZfsNotFound:
        return None  # a concurrent delete collected it
    LOG.info('Destroyed %s: its last dependent clone is gone.', name)
    return ds['origin']


def revert(host, name, snapshot, clone_props):
    """Revert a zvol to its latest Cinder snapshot, in place.

    Newer snapshots can only be hidden ones (deferred, or behind a volume
    clone). When none has clones, ``zfs rollback -r`` is enough; otherwise
    the zvol is replaced by a promoted clone of the snapshot and the old one
    is hidden for its dependents, so no clone ever loses data.
    """
    ds = _owned(host.get(name) or _missing(host, name))
    snaps = ds['snapshots']
    target = [s for s in snaps if s.snapshot_name == snapshot]
    if not target:
        raise exception.ZfsNotFound(
            action='revert %s' % host.path(name),
            stderr='snapshot %s does not exist' % host.path(name, snapshot))
    newer = [s for s in snaps if s['createtxg'] > target[0]['createtxg']]
    blocking = [s.snapshot_name for s in newer if not s.deferred and
                not s.snapshot_name.startswith(CLONE_SNAP_PREFIX)]
    if blocking:
        raise exception.ZfsHasDependents(
            action='revert %s to %s' % (host.path(name), snapshot),
            stderr='newer snapshots exist: %s' % ', '.join(blocking),
            hint=' Only the latest snapshot can be reverted to.')
    if not any(s.clones for s in newer):
        host.rollback(name, snapshot, destroy_newer=bool(newer))
        return
    _swap_in_clone(host, ds, name, snapshot, clone_props)


def _missing(host, name):
    raise exception.ZfsNotFound(action='revert %s' % host.path(name),
                                stderr='dataset does not exist')


def _swap_in_clone(host, ds, name, snapshot, clone_props):
    tmp, hidden = REVERTING_PREFIX + name, hidden_name(name)
    host.clone(name, snapshot, tmp, clone_props)
    steps = []
    try:
        host.rename(name, hidden)
        steps.append(lambda: host.rename(hidden, name))
        host.rename(tmp, name)
        steps.append(lambda: host.rename(name, tmp))
        host.promote(name)
    except Exception:
        with excutils.save_and_reraise_exception():
            for undo in reversed(steps):
                undo()
            host.destroy(tmp)
    LOG.info('Reverted %(name)s to %(snap)s by swapping in a clone; the '
             'previous data stays as %(hidden)s while clones need it.',
             {'name': name, 'snap': snapshot, 'hidden': hidden})
    _release_reservation(host, ds, hidden)


def sweep(host):
    """Finish or undo what a crash interrupted; collect what nothing needs.

    Run once at service start, before any other operation, so it cannot
    race with work in progress.
    """
    rows = host.list(depth=2)
    datasets = {}
    for row in rows:
        if not row.name.startswith(host.parent + '/'):
            continue  # the parent itself and its own snapshots
        base = host.child_name(row.name)
        if row.snapshot_name is None:
            row['snapshots'] = []
            datasets[base] = row
        elif base in datasets:
            datasets[base]['snapshots'].append(row)
    actions = 0
    for base, ds in sorted(datasets.items()):
        if not ds.managed:
            continue
        if base.startswith(REVERTING_PREFIX):
            actions += _recover_revert(host, datasets, base)
        elif base.startswith(DELETED_PREFIX):
            if not any(s.clones for s in ds['snapshots']):
                collect(host, _destroy_if_unneeded(host, base))
                actions += 1
        else:
            stale = [s.snapshot_name for s in ds['snapshots']
                     if s.snapshot_name.startswith(CLONE_SNAP_PREFIX) and
                     not s.deferred]
            if stale:
                host.destroy_snapshots(base, stale)
                actions += 1
            origin = ds['origin'] or ''
            if origin.startswith(host.path(DELETED_PREFIX + base + '-')):
                host.promote(base)  # crash between swap and promote
                actions += 1
    return actions


def _recover_revert(host, datasets, tmp):
    name = tmp[len(REVERTING_PREFIX):]
    if name not in datasets:
        hidden = sorted(b for b in datasets
                        if b.startswith(DELETED_PREFIX + name + '-'))
        if hidden:
            host.rename(hidden[-1], name)
    host.destroy(tmp)
    return 1
