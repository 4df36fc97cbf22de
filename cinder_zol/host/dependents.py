"""Deleting, cloning and reverting zvols that clones depend on.

ZFS refuses to destroy a snapshot with clones, or a zvol whose snapshots
have clones; Cinder expects both deletes to succeed while the clones keep
working. The bookkeeping lives on the storage host only, so a restart at
any point loses and leaks nothing:

* a snapshot is destroyed with ``zfs destroy -d``: at once when nothing
  depends on it, otherwise zfs marks it and destroys it itself when its last
  clone goes;
* a zvol whose snapshots still have clones is renamed to
  ``deleted-<name>-<ns>`` (hidden from Cinder) and destroyed by
  :func:`collect` once it has no snapshots left;
* the temporary snapshot behind a volume clone is deferred-destroyed right
  after the clone exists, so zfs removes it with the clone.

Every function here runs under the storage host's dependency lock
(:mod:`.locks`, taken by :mod:`.agent` as each operation's entry in
:data:`.wire.OPERATIONS` says), so two services or two requests never see
each other's half-done steps. Nothing here ever uses ``-r``/``-R`` on
data a user may need.
"""

import time

from . import errors
from . import log

DELETED_PREFIX = 'deleted-'
REVERTING_PREFIX = 'reverting-'
CLONE_SNAP_PREFIX = 'clone-'


def hidden_name(name):
    # Nanoseconds in fixed-width hex: unique, and sorts by age.
    return '%s%s-%016x' % (DELETED_PREFIX, name, time.time_ns())


def clone_snapshot_name(new_name):
    return CLONE_SNAP_PREFIX + new_name


def owned(ds):
    if not ds.managed:
        raise errors.NotOwned(
            'Dataset %s exists but was not created by cinder-zol (no '
            'cinder_zol:managed property); refusing to touch it' % ds.name,
            hint='Rename or remove it by hand if it is not needed.')
    return ds


def owned_dataset(host, name, what):
    """``name`` read with its snapshots; NotFound or NotOwned otherwise.

    ``what`` says what failed, e.g. 'extend'.
    """
    ds = host.get(name)
    if ds is None:
        raise errors.NotFound('%s of %s failed' % (what, host.path(name)),
                              'dataset does not exist')
    return owned(ds)


def _undo(steps, what):
    """Run undo steps newest first, stopping at the first that fails.

    Stopping leaves the names in a state :func:`sweep` recognises and
    finishes at the next start (a later step could remove the marker it
    needs). The caller re-raises its original error; a failing undo is
    only noted, never raised in its place.
    """
    for step in reversed(steps):
        try:
            step()
        except errors.HostError as e:
            log.note('Undoing %s stopped at a failing step; the start-up '
                     'sweep finishes it: %s' % (what, e))
            return


def delete_volume(host, name):
    """Delete a zvol for Cinder; keep it hidden while clones need it.

    Returns 'gone' (it did not exist), 'destroyed' or the hidden name.
    """
    ds = current(host, name)
    if ds is None:
        return 'gone'
    owned(ds)
    try:
        # a snapshot already marked (destroy -d earlier) needs nothing more:
        # one zfs process fewer when a source with clones is hidden
        host.destroy_snapshots(name, [s.snapshot_name for s in ds.snapshots
                                      if not s.deferred])
    except errors.NotFound:
        pass  # already gone: nothing else can change them under the lock
    if any(s.clones for s in ds.snapshots):
        return hide(host, ds)
    host.destroy(name)
    _collect_quietly(host, ds.origin)
    return 'destroyed'


def hide(host, ds):
    """Rename a zvol out of Cinder's way while clones still need it."""
    name = host.child_name(ds.name)
    hidden = hidden_name(name)
    host.rename(name, hidden)
    log.note('Volume %s still has dependent clones; kept on the storage '
             'host as %s until the last one is deleted.' % (name, hidden))
    release_reservation(host, ds, hidden)
    return hidden


def release_reservation(host, ds, hidden):
    """Nobody writes to a hidden zvol: give its reservation back."""
    if not ds.refreservation:
        return
    try:
        host.set(hidden, {'refreservation': 'none'})
    except errors.HostError as e:
        log.note('Could not drop the reservation of %s: %s' % (hidden, e))


def delete_snapshot(host, name, snapshot):
    """Delete a snapshot now, or once its last clone is gone."""
    ds = current(host, name)
    if ds is not None:
        owned(ds)
    if ds is None or snapshot not in [s.snapshot_name for s in ds.snapshots]:
        log.note('Snapshot %s was already gone.' % host.path(name, snapshot))
        return
    host.destroy_snapshots(name, [snapshot])


def clone_volume(host, source, new_name, props, sparse=True):
    """Clone a zvol through a temporary snapshot that zfs cleans up."""
    snap = clone_snapshot_name(new_name)
    host.snapshot(source, snap)
    try:
        host.clone(source, snap, new_name, props, sparse)
    except errors.HostError:
        _undo([lambda: host.destroy_snapshots(source, [snap])],
              'clone of %s' % source)
        raise
    # Deferred: destroyed by zfs when the clone is destroyed.
    host.destroy_snapshots(source, [snap])


def _collect_quietly(host, origin):
    """collect(), but a failure only postpones it to the next sweep."""
    try:
        collect(host, origin)
    except errors.HostError as e:
        log.note('Collecting hidden zvols above %s failed; start-up sweep '
                 'will retry: %s' % (origin, e))


def collect(host, origin):
    """Destroy hidden zvols up the origin chain that nothing needs now."""
    name = _deleted_child(host, origin)
    while name:
        name = _deleted_child(host, _destroy_if_unneeded(host, name))


def _deleted_child(host, origin):
    if not origin:
        return None
    name = host.child_name(origin.split('@', 1)[0])
    return name if name and name.startswith(DELETED_PREFIX) else None


def _destroy_if_unneeded(host, name):
    """Destroy a hidden zvol without dependents; return its origin."""
    ds = host.get(name)
    if ds is None or not ds.managed:
        return None
    leftovers = [s.snapshot_name for s in ds.snapshots if not s.clones]
    host.destroy_snapshots(name, leftovers)
    if any(s.clones for s in ds.snapshots):
        return None
    host.destroy(name)
    log.note('Destroyed %s: its last dependent clone is gone.' % name)
    return ds.origin


def revert(host, name, snapshot, clone_props, sparse=True):
    """Revert a zvol to its latest Cinder snapshot, in place; its volsize.

    Newer snapshots can only be hidden ones (deferred, or behind a volume
    clone). When none has clones, ``zfs rollback -r`` is enough; otherwise
    the zvol is replaced by a promoted clone of the snapshot and the old one
    is hidden for its dependents, so no clone ever loses data.
    """
    ds = current(host, name)
    if ds is None:
        raise errors.NotFound('revert %s failed' % host.path(name),
                              'dataset does not exist')
    owned(ds)
    target = [s for s in ds.snapshots if s.snapshot_name == snapshot]
    if not target:
        raise errors.NotFound('revert %s failed' % host.path(name),
                              'snapshot %s does not exist'
                              % host.path(name, snapshot))
    newer = [s for s in ds.snapshots if s.createtxg > target[0].createtxg]
    blocking = [s.snapshot_name for s in newer if not s.deferred and
                not s.snapshot_name.startswith(CLONE_SNAP_PREFIX)]
    if blocking:
        raise errors.HasDependents(
            'revert %s to %s failed' % (host.path(name), snapshot),
            'newer snapshots exist: %s' % ', '.join(blocking),
            'Only the latest snapshot can be reverted to.')
    if not any(s.clones for s in newer):
        host.rollback(name, snapshot, destroy_newer=bool(newer))
    else:
        _swap_in_clone(host, ds, name, snapshot, clone_props, sparse)
    return target[0].volsize


def _swap_in_clone(host, ds, name, snapshot, clone_props, sparse):
    tmp, hidden = REVERTING_PREFIX + name, hidden_name(name)
    host.clone(name, snapshot, tmp, clone_props, sparse)
    steps = [lambda: host.destroy(tmp)]
    try:
        host.rename(name, hidden)
        steps.append(lambda: host.rename(hidden, name))
        host.rename(tmp, name)
        steps.append(lambda: host.rename(name, tmp))
        host.promote(name)
    except errors.HostError:
        _undo(steps, 'revert of %s' % name)
        raise
    log.note('Reverted %s to %s by swapping in a clone; the previous data '
             'stays as %s while clones need it.' % (name, snapshot, hidden))
    release_reservation(host, ds, hidden)


def current(host, name):
    """The zvol ``name`` (or None), after a swap-revert cut short.

    A crash (or a failing undo) in :func:`_swap_in_clone` leaves traces
    this finishes or undoes first, as the sweep would, so that a delete
    never answers 'gone' for a volume whose data is only hidden, to bring
    it back later. Costs no read beyond :meth:`get` unless the zvol is
    missing or such traces are found.
    """
    ds = host.get(name)
    tmp = REVERTING_PREFIX + name
    if ds is None:
        reverting = host.get(tmp)
        if reverting is None or not reverting.managed:
            return None
        _undo_swap(host, name, reverting)
    elif host.path(tmp) in [c for s in ds.snapshots for c in s.clones]:
        host.destroy(tmp)           # cut before the renames
    elif _swapped_unpromoted(host, ds):
        host.promote(name)          # cut between the swap and the promote
    else:
        return ds
    log.note('Finished a revert of %s that was cut short.' % host.path(name))
    return host.get(name)


def _undo_swap(host, name, reverting):
    """Cut between the renames: the old data gets its name back."""
    hidden = _deleted_child(host, reverting.origin)
    if hidden and hidden.startswith(DELETED_PREFIX + name + '-'):
        host.rename(hidden, name)
    host.destroy(REVERTING_PREFIX + name)


def _swapped_unpromoted(host, ds):
    origin = ds.origin or ''
    return origin.startswith(host.path(DELETED_PREFIX + ds.base + '-'))


def sweep(host, transient_prefixes=()):
    """Finish or undo what a crash interrupted; collect what nothing needs.

    Runs under the exclusive dependency lock, so it never sees another
    request's half-done steps, whichever service sent it. Datasets whose
    names start with one of ``transient_prefixes`` (image imports in
    progress when the host went down) are destroyed. Each leftover is
    handled on its own: one that cannot be finished now (held open, a zfs
    hold, a failing command) is noted and left to the next sweep, and
    never stops the others. Returns (actions taken, {name: why left}).
    """
    datasets = host.children()
    actions, left = 0, {}
    for base, ds in sorted(datasets.items()):
        if not ds.managed:
            continue
        try:
            actions += _sweep_one(host, datasets, base, ds,
                                  transient_prefixes)
        except errors.HostError as e:
            left[base] = str(e)
            log.note('Left %s as it is until the next sweep: %s'
                     % (host.path(base), e))
    return actions, left


def _sweep_one(host, datasets, base, ds, transient_prefixes):
    """Finish one leftover; the number of actions taken."""
    if base.startswith(REVERTING_PREFIX):
        name = base[len(REVERTING_PREFIX):]
        if name in datasets:
            host.destroy(base)      # cut before the renames
        else:
            _undo_swap(host, name, ds)
        return 1
    if base.startswith(DELETED_PREFIX):
        if any(s.clones for s in ds.snapshots):
            return 0
        collect(host, _destroy_if_unneeded(host, base))
        return 1
    if base.startswith(tuple(transient_prefixes)):
        return transient_prefixes.remove(host, base)    # unless leased
    actions = 0
    stale = [s.snapshot_name for s in ds.snapshots
             if s.snapshot_name.startswith(CLONE_SNAP_PREFIX) and
             not s.deferred]
    if stale:
        host.destroy_snapshots(base, stale)
        actions += 1
    if _swapped_unpromoted(host, ds):
        host.promote(base)          # cut between the swap and the promote
        actions += 1
    return actions
