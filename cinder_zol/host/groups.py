"""Consistent group snapshots and groups of clones, on the storage host.

A consistent group snapshot is ONE ``zfs snapshot a@s1 b@s2 ...``: zfs
takes every snapshot of one command in one transaction group of the pool,
so they all hold the same instant, or none is created. Cinder names each
snapshot of a group snapshot on its own (``snapshot-<id>``), so each zvol
gets its own name and every later operation (delete, clone, revert) sees an
ordinary snapshot with the usual dependency rules (:mod:`.dependents`).

A group from a source group clones each source through a temporary
snapshot, as a single clone does, but takes all the temporary snapshots in
one command first, so the copy is one instant too. Every clone of a group is
made in one request: when one fails, the ones already made and the
temporary snapshots are removed again before the error is returned.
"""

from . import dependents
from . import errors
from . import log
from . import names
from . import ops
from .serve import implements


def _volumes(host, wanted, what):
    """The zvols named, each existing below the parent and the driver's."""
    found = {row.short_name: row for row in host.list(types='volume')}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise errors.NotFound(
            '%s failed' % what,
            'no zvol %s below %s' % (', '.join(missing), host.parent),
            'A volume of the group is missing on the storage host; it may '
            'have been removed outside Cinder.')
    return [dependents.owned(found[name]) for name in wanted]


def _pairs(snapshots):
    pairs = [tuple(s.split('@', 1)) for s in snapshots]
    volumes = [name for name, _snap in pairs]
    if len(set(volumes)) != len(volumes):
        raise errors.Refused('a group snapshot takes one snapshot per zvol: '
                             '%s' % ' '.join(snapshots))
    return pairs


@implements('group-check')
def group_check(ctx, parent, *wanted, payload):
    """Refuse volumes a consistent group could not snapshot."""
    _volumes(ctx.zfs(parent), wanted, 'adding to a group')
    return {}


@implements('group-snapshot')
def group_snapshot(ctx, parent, *snapshots, payload):
    """Snapshot every zvol named (NAME@SNAP) in one zfs command."""
    host = ctx.zfs(parent)
    pairs = _pairs(snapshots)
    _volumes(host, [name for name, _snap in pairs],
             'group snapshot %s' % ' '.join(snapshots))
    host.snapshot_set(pairs)
    return {}


def _plan(new_names, payload):
    """Validated [{name, source, snapshot, size, props, sparse}]."""
    clones = payload.get('clones')
    if not isinstance(clones, dict) or set(clones) != set(new_names):
        raise errors.Refused('clone-group needs one payload entry per new '
                             'zvol: %s' % ' '.join(new_names))
    plan = []
    for name in new_names:
        entry = clones[name]
        if not isinstance(entry, dict):
            raise errors.Refused('clone-group entry of %s is not an object'
                                 % name)
        snapshot = entry.get('snapshot')
        plan.append({
            'name': name,
            'source': names.component(entry.get('source'), 'source zvol'),
            'snapshot': None if snapshot is None else names.component(
                snapshot, 'snapshot name'),
            'size': names.size(entry.get('size')),
            'props': ops.requested_props(entry),
            'sparse': bool(entry.get('sparse', True))})
    if len(set(p['snapshot'] is None for p in plan)) != 1:
        raise errors.Refused('clone-group clones either snapshots or '
                             'volumes, not both')
    return plan


@implements('clone-group')
def clone_group(ctx, parent, *new_names, payload):
    """New zvols NAMES, all from snapshots or all from one instant of zvols.

    payload: {"clones": {NAME: {"source": zvol, "snapshot": name or null,
    "size": bytes, "props": {...}, "sparse": bool}}}. Without snapshots the
    sources are snapshotted together first (temporary ``clone-NAME``
    snapshots, deferred-destroyed once the clones exist, as for one clone).
    """
    host = ctx.zfs(parent)
    plan = _plan(new_names, payload)
    what = 'group of clones %s' % ' '.join(new_names)
    sources = {p['source']: host.get(p['source']) for p in plan}
    missing = sorted(s for s, ds in sources.items() if ds is None)
    if missing:
        raise errors.NotFound('%s failed' % what, 'no zvol %s below %s' % (
            ', '.join(missing), host.parent),
            'It may have been removed outside Cinder.')
    for ds in sources.values():
        dependents.owned(ds)
    temporary = []
    if plan[0]['snapshot'] is None:
        for p in plan:
            p['snapshot'] = dependents.clone_snapshot_name(p['name'])
            p['volsize'] = sources[p['source']].volsize
        temporary = [(p['source'], p['snapshot']) for p in plan]
        host.snapshot_set(temporary)
    else:
        for p in plan:
            snaps = {s.snapshot_name: s
                     for s in sources[p['source']].snapshots}
            if p['snapshot'] not in snaps:
                raise errors.NotFound(
                    '%s failed' % what, 'snapshot %s does not exist'
                    % host.path(p['source'], p['snapshot']),
                    'It may have been removed outside Cinder.')
            p['volsize'] = snaps[p['snapshot']].volsize
    made = []
    try:
        for p in plan:
            host.clone(p['source'], p['snapshot'], p['name'], p['props'],
                       p['sparse'])
            made.append(p['name'])
            ops.grow(host, p['name'], p['size'], p['volsize'])
    except errors.HostError as e:
        _remove(host, made, temporary)
        e.message = '%s (%d of %d made, all removed again)' % (
            e.message, len(made), len(plan))
        raise
    # Deferred: zfs destroys each with its clone.
    _destroy_temporary(host, temporary)
    return {}


def _remove(host, made, temporary):
    """Undo a group of clones; a failing step is noted, the rest still run.

    The clones are independent of each other, so one that cannot be
    destroyed does not keep the others; a temporary snapshot left behind is
    destroyed by the start-up sweep (a ``clone-`` snapshot not deferred).
    """
    for name in reversed(made):
        try:
            host.destroy(name)
        except errors.HostError as e:
            log.note('Removing %s of a failed group of clones failed: %s'
                     % (name, e))
    _destroy_temporary(host, temporary)


def _destroy_temporary(host, temporary):
    for source, snap in temporary:
        try:
            host.destroy_snapshots(source, [snap])
        except errors.HostError as e:
            log.note('Destroying the temporary snapshot %s failed; the '
                     'start-up sweep retries: %s'
                     % (host.path(source, snap), e))
