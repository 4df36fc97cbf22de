"""Adopting zvols the driver did not create, giving them back, retyping.

Manage renames an existing zvol under the parent to Cinder's name and
marks it ``cinder_zol:managed=yes``; a volsize that is not a whole GiB is
grown to the next GiB first (Cinder's sizes are whole GiB, and growing
never loses data). Unmanage only drops the marker: the data stays under
its name for the operator, and nothing of the driver touches it again.
Snapshots of a managed zvol are the driver's once renamed to Cinder's name.

Refused (``errors.Refused``, nothing changed): a name that is not a zvol
directly under the parent, a zvol that is already managed, the driver's own
hidden or transient names, and a zvol or snapshot something depends on in a
way Cinder could not see (a clone outside the driver, a clone of a zvol that
is not managed).
"""

from . import dependents
from . import errors
from . import images
from . import names
from . import props as zprops
from .serve import implements

GiB = 1 << 30
# Names the driver keeps for itself: never offered, never adopted.
RESERVED_PREFIXES = (dependents.DELETED_PREFIX, images.PREFIX,
                     images.IMPORTING_PREFIX)


def _why_not_volume(host, ds, children):
    """Why a zvol cannot be managed, or None."""
    if ds.type != 'volume':
        return 'not a zvol (%s)' % ds.type
    if ds.short_name.startswith(RESERVED_PREFIXES):
        return 'a name cinder-zol keeps for itself'
    if ds.managed:
        return 'already managed by cinder-zol'
    for snap in ds.snapshots:
        for clone in snap.clones:
            return 'snapshot %s has a clone %s' % (snap.snapshot_name, clone)
    if ds.origin:
        base = host.child_name(ds.origin.split('@', 1)[0])
        source = children.get(base) if base else None
        if source is None or not source.managed:
            return 'a clone of %s, which cinder-zol does not manage' % (
                ds.origin)
    return None


def _whole_gib(size):
    return -(-size // GiB)


@implements('manageable')
def manageable(ctx, parent, payload):
    """Every zvol under the parent, with what manage would make of it."""
    host = ctx.zfs(parent)
    children = host.children()
    volumes = []
    for name in sorted(children):
        ds = children[name]
        if ds.type != 'volume' or ds.short_name.startswith(
                RESERVED_PREFIXES):
            continue
        reason = _why_not_volume(host, ds, children)
        volumes.append({
            'name': name, 'size_gb': _whole_gib(ds.volsize or 0),
            'managed': ds.managed, 'reason_not_safe': reason,
            'snapshots': [{'name': s.snapshot_name,
                           'size_gb': _whole_gib(s.volsize or 0),
                           'clones': [host.child_name(c) or c
                                      for c in s.clones]}
                          for s in ds.snapshots]})
    return {'volumes': volumes}


def _get_volume(host, name, what):
    ds = host.get(name)
    if ds is None:
        raise errors.NotFound('%s of %s failed' % (what, host.path(name)),
                              'dataset does not exist')
    return ds


@implements('manage')
def manage(ctx, parent, existing, new, payload):
    """Adopt ``existing`` as ``new``: whole GiB, renamed, marked."""
    host = ctx.zfs(parent)
    ds = _get_volume(host, existing, 'manage')
    reason = _why_not_volume(host, ds, host.children())
    if reason:
        raise errors.Refused('cannot manage %s: %s' % (host.path(existing),
                                                       reason))
    if host.get(new) is not None:
        raise errors.Refused('cannot manage %s as %s: that name exists'
                             % (host.path(existing), host.path(new)))
    size = _whole_gib(ds.volsize) * GiB
    if size != ds.volsize:
        host.set_volsize(existing, size)
    host.rename(existing, new)
    try:
        host.set(new, {zprops.MANAGED: 'yes'})
    except errors.HostError:
        try:
            host.rename(new, existing)
        except errors.HostError as e:
            from . import log
            log.note('Renaming %s back to %s failed: %s' % (new, existing, e))
        raise
    return {'size_gb': size // GiB, 'grown': size != ds.volsize}


@implements('unmanage')
def unmanage(ctx, parent, name, payload):
    """Drop the marker; the zvol and its data stay under their name."""
    host = ctx.zfs(parent)
    ds = _get_volume(host, name, 'unmanage')
    dependents.owned(ds)
    host.inherit(name, zprops.MANAGED)
    return {}


@implements('manage-snapshot')
def manage_snapshot(ctx, parent, name, existing, new, payload):
    """Adopt snapshot ``name@existing`` of a managed zvol as ``@new``."""
    host = ctx.zfs(parent)
    ds = _get_volume(host, name, 'manage of a snapshot')
    dependents.owned(ds)
    snaps = {s.snapshot_name: s for s in ds.snapshots}
    snap = snaps.get(existing)
    if snap is None:
        raise errors.NotFound(
            'manage of %s failed' % host.path(name, existing),
            'snapshot does not exist')
    if new in snaps:
        raise errors.Refused('cannot manage %s as %s: that name exists'
                             % (host.path(name, existing), new))
    if snap.clones:
        raise errors.Refused('cannot manage %s: it has clones (%s)'
                             % (host.path(name, existing),
                                ', '.join(snap.clones)))
    host.rename_snapshot(name, existing, new)
    return {'size_gb': _whole_gib(snap.volsize or 0)}


@implements('set-props')
def set_props(ctx, parent, name, payload):
    """Retype in place: change properties a live zvol can change.

    ``props``: {property: value}; ``sparse``: True/False switches between
    thin and thick (refreservation none/auto). volblocksize cannot change
    after creation: refused, the driver lets Cinder migrate instead.
    """
    host = ctx.zfs(parent)
    ds = _get_volume(host, name, 'retype')
    dependents.owned(ds)
    props = dict(zprops.requested(payload.get('props') or {}))
    if 'volblocksize' in props and ds.volblocksize is not None and \
            str(props['volblocksize']) not in (
                str(ds.volblocksize), _human(ds.volblocksize)):
        raise errors.Refused('volblocksize of %s is fixed at creation'
                             % host.path(name))
    props.pop('volblocksize', None)
    inherit = [names.component(p, 'property') for p in
               payload.get('inherit') or ()]
    for prop in inherit:
        if prop not in zprops.INHERITABLE or prop.startswith('cinder_zol:'):
            raise errors.Refused('%s of %s cannot be reset' % (
                prop, host.path(name)))
    if 'sparse' in payload:
        props['refreservation'] = 'none' if payload['sparse'] else 'auto'
    if props:
        host.set(name, props)
    for prop in inherit:
        host.inherit(name, prop)
    return {'changed': sorted(props) + inherit}


def _human(size):
    for unit, shift in (('M', 20), ('K', 10)):
        if size % (1 << shift) == 0:
            return '%d%s' % (size >> shift, unit)
    return str(size)
