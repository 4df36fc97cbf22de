"""The golden-image cache on the storage host.

One zvol per Glance image (``image-<id>``, or ``image-<id>-<volblocksize>``
for volume types that ask for another block size) holding the image's raw
data, with a ``@golden`` snapshot every volume made from the image is a
clone of: constant time whatever the image size. An entry carries
``cinder_zol:image_id`` and ``cinder_zol:image_hash`` (Glance's
``os_hash_algo:os_hash_value``), so it is found again after any restart and
never reused for different data.

Filling: the driver writes the data into ``importing-<entry>-<ns>``, then
:func:`commit` snapshots and renames it and makes the first volume from it,
in one locked step; when another service committed the same entry
meanwhile, ours is dropped and theirs is used. A volume from an entry is
:func:`clone_image`: the look and the clone under the shared lock that
eviction's exclusive one excludes. Evicting an entry is a delete with
dependents (:mod:`.dependents`): clones made from it keep working, and its
data goes when the last of them does.

Leases: an import, and the clone an upload of an attached volume is read
from (``upload-<volume>-<ns>``), is leased to the agent process that made
it: a ``flock`` on ``lease-<parent>-<name>.lock`` in the agent's lock
directory, taken before the dataset exists and held until the import or
upload is dropped or committed, or that process ends. The driver keeps one
agent session per SSH connection, so the process lives from begin to
commit or drop whichever connection carries the data (the data itself
goes through the root helper, under sudo, which holds no lease: it would
not cover the steps before and after the transfer). When cinder-volume
dies or restarts, its connections close and its agents exit with their
leases; so does everything at a storage host reboot (/run is a tmpfs).
The start-up sweep of any service removes only leftovers whose lease is
free, never another service's import or upload in flight. An agent run
once per request (``san_is_local``) ends its lease with the request.
"""

import contextlib
import os
import time

from . import config
from . import dependents
from . import errors
from . import locks
from . import log
from . import names
from . import props as zprops
from .serve import implements

PREFIX = 'image-'
IMPORTING_PREFIX = 'importing-'
UPLOAD_PREFIX = 'upload-'
GOLDEN = 'golden'


def importing_name(name):
    return '%s%s-%016x' % (IMPORTING_PREFIX, name, time.time_ns())


def upload_name(name):
    return '%s%s-%016x' % (UPLOAD_PREFIX, name, time.time_ns())


# -- leases ---------------------------------------------------------------

# lease file -> the ExitStack holding its flock, for this agent process
_HELD = {}


def _lease(ctx, parent, name):
    """The lock name (for :func:`locks.hold`) and file of a lease."""
    lock = 'lease-%s-%s' % (locks.lock_name(parent), name)
    return lock, os.path.join(ctx.lock_dir, lock + '.lock')


def _hold(ctx, lock):
    """Try the lease's flock once; an ExitStack holding it, or None."""
    uid = config.agent_uid(ctx.config.user)
    held = contextlib.ExitStack()
    try:
        held.enter_context(locks.hold(
            ctx.lock_dir, lock, wait=0,
            owners={uid} if uid is not None else set()))
    except errors.Timeout:
        return None
    return held


def _take_lease(ctx, parent, name):
    """Lease ``name`` (not made yet) to this process."""
    for path in [p for p in _HELD if not os.path.exists(p)]:
        _HELD.pop(path).close()     # ended elsewhere (commit, drop)
    lock, path = _lease(ctx, parent, name)
    held = _hold(ctx, lock)
    if held is None:
        raise errors.Busy('the lease of %s is taken' % name)
    _HELD[path] = held


def _end_lease(ctx, parent, name):
    """``name`` is gone or committed: end its lease, whoever holds it."""
    _lock, path = _lease(ctx, parent, name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    held = _HELD.pop(path, None)
    if held is not None:
        held.close()


def remove_unleased(ctx, host, name):
    """Remove a leftover import or upload clone unless it is leased.

    1 when it was removed, 0 when a live agent still holds its lease.
    """
    held = _hold(ctx, _lease(ctx, host.parent, name)[0])
    if held is None:
        log.note('%s is in use by an import or upload in progress (its '
                 'lease is held); left in place.' % host.path(name))
        return 0
    with held:
        dependents.delete_volume(host, name)
        _end_lease(ctx, host.parent, name)
    return 1


class Transients(object):
    """What an interrupted import or upload leaves: swept unless leased.

    Iterates over the name prefixes; :meth:`remove` is the sweep's step.
    """

    prefixes = (IMPORTING_PREFIX, UPLOAD_PREFIX)

    def __init__(self, ctx):
        self.ctx = ctx

    def __iter__(self):
        return iter(self.prefixes)

    def remove(self, host, name):
        return remove_unleased(self.ctx, host, name)


def _entry(host, name):
    if not name.startswith(PREFIX):
        raise errors.Refused('%r is not an image cache entry name' % name)
    return host.get(name)


def _usable(host, name):
    """The entry with its golden snapshot, or None."""
    ds = _entry(host, name)
    if ds is None or not ds.managed or \
            GOLDEN not in [s.snapshot_name for s in ds.snapshots]:
        return None
    return ds


@implements('image-find')
def find(ctx, parent, name, payload):
    """The entry's hash and size, or {} when there is no usable entry."""
    ds = _usable(ctx.zfs(parent), name)
    if ds is None:
        return {}
    return {'hash': ds.image_hash, 'volsize': ds.volsize}


@implements('clone-image')
def clone_image(ctx, parent, name, new, size, payload):
    """A volume from the entry ``name``, if it holds the image's data.

    'cloned'; or, with nothing made, 'missing' (no entry) or 'stale' (it
    holds other data than ``hash``). Looking and cloning under the shared
    lock: eviction (exclusive) cannot remove the entry in between.
    """
    host = ctx.zfs(parent)
    ds = _usable(host, name)
    if ds is None:
        return {'result': 'missing'}
    if ds.image_hash != payload.get('hash'):
        return {'result': 'stale'}
    _clone_golden(host, ds, new, size, payload)
    return {'result': 'cloned'}


def _clone_golden(host, ds, new, size, payload):
    """Clone the entry's @golden into ``new`` of ``size`` bytes."""
    size = names.size(size)
    if size < ds.volsize:
        raise errors.Invalid(
            'clone of %s failed' % host.path(ds.base, GOLDEN),
            'refusing to make a %d-byte volume from a %d-byte snapshot'
            % (size, ds.volsize))
    host.clone(ds.base, GOLDEN, names.component(new),
               zprops.requested(payload.get('props') or {}),
               bool(payload.get('sparse', True)), volsize=size)


@implements('image-begin')
def begin(ctx, parent, name, size, payload):
    """Create the zvol an image is written into; its name."""
    if not name.startswith(PREFIX):
        raise errors.Refused('%r is not an image cache entry name' % name)
    host = ctx.zfs(parent)
    props = dict(zprops.requested(payload.get('props') or {}))
    props[host_prop('image_id')] = names.component(
        str(payload.get('image_id')), 'image id')
    props[host_prop('image_hash')] = names.image_hash(payload.get('hash'))
    importing = importing_name(name)
    _take_lease(ctx, parent, importing)
    try:
        host.create_volume(importing, size, True, props)
    except errors.HostError:
        _end_lease(ctx, parent, importing)
        raise
    return {'importing': importing}


def host_prop(short):
    return 'cinder_zol:' + short


@implements('image-commit')
def commit(ctx, parent, importing, name, payload):
    """Make a filled import the cache entry ``name``.

    'committed', or 'exists' when another request committed it first (the
    import is then dropped and the existing entry serves). ``clone``
    (name, size, props, sparse) makes the volume that asked for the image
    from the entry in the same locked step: no eviction comes between.
    """
    if not importing.startswith(IMPORTING_PREFIX + name + '-'):
        raise errors.Refused('%s is not an import of %s' % (importing, name))
    host = ctx.zfs(parent)
    if host.get(name) is not None:
        dependents.delete_volume(host, importing)
        result = 'exists'
    else:
        host.snapshot(importing, GOLDEN)
        host.rename(importing, name)
        result = 'committed'
    _end_lease(ctx, parent, importing)
    clone = payload.get('clone')
    if clone:
        ds = _usable(host, name)
        if ds is None:
            raise errors.NotFound('clone of %s failed' % host.path(name),
                                  'the entry has no @%s snapshot' % GOLDEN)
        _clone_golden(host, ds, clone.get('name'), clone.get('size'), clone)
    return {'result': result}


@implements('image-upload')
def upload(ctx, parent, name, payload):
    """A leased clone of ``name`` to read an upload from; its name.

    One point in time while the volume stays in use. Clones of earlier
    uploads of it whose lease is free (a lost reply, a cinder-volume that
    died) are removed first.
    """
    host = ctx.zfs(parent)
    ds = dependents.owned_dataset(host, name, 'upload')
    stale = UPLOAD_PREFIX + name + '-'
    for clone in [c for s in ds.snapshots for c in s.clones]:
        child = host.child_name(clone)
        if child and child.startswith(stale):
            remove_unleased(ctx, host, child)
    temporary = upload_name(name)
    _take_lease(ctx, parent, temporary)
    try:
        dependents.clone_volume(host, name, temporary, {})
    except errors.HostError:
        _end_lease(ctx, parent, temporary)
        raise
    return {'temporary': temporary}


@implements('image-drop')
def drop(ctx, parent, name, payload):
    """Remove an import or upload clone that is done with, and its lease."""
    if not name.startswith(Transients.prefixes):
        raise errors.Refused('%r is not an import or upload clone' % name)
    result = dependents.delete_volume(ctx.zfs(parent), name)
    _end_lease(ctx, parent, name)
    return {'result': result}


def entries(host, datasets=None):
    """Cache entries with their last use (a createtxg), oldest first."""
    datasets = host.children() if datasets is None else datasets
    found = []
    for base, ds in datasets.items():
        if not base.startswith(PREFIX) or not ds.managed:
            continue
        golden = [s for s in ds.snapshots if s.snapshot_name == GOLDEN]
        last = golden[0].createtxg if golden else ds.createtxg
        users = []
        for snap in golden:
            for clone in snap.clones:
                child = datasets.get(host.child_name(clone))
                users.append(child)
                if child is not None and child.createtxg:
                    last = max(last or 0, child.createtxg)
        found.append({'name': base, 'last_used': last or 0,
                      'clones': len(users),
                      'bytes': ds.used or 0})
    return sorted(found, key=lambda e: (e['clones'] > 0, e['last_used']))


def hidden_copies(datasets):
    """Entries evicted or replaced while volumes still use their data."""
    hidden = dependents.DELETED_PREFIX + PREFIX
    return [ds for base, ds in datasets.items()
            if base.startswith(hidden) and ds.managed]


@implements('image-evict')
def evict(ctx, parent, payload):
    """Evict least recently used entries beyond the operator's limits.

    Limits of 0 mean no limit. The budget counts the hidden copies of
    entries that volumes still use (they go with their last clone), and
    only entries without clones are evicted: evicting one with clones
    frees nothing, and the next volume from its image would download and
    store it again. ``keep`` names an entry that must stay (the one just
    used).
    """
    host = ctx.zfs(parent)
    max_count = int(payload.get('max_count') or 0)
    max_bytes = int(payload.get('max_bytes') or 0)
    keep = payload.get('keep')
    datasets = host.children()
    current = entries(host, datasets)
    hidden = hidden_copies(datasets)
    count = len(current) + len(hidden)
    total = sum(e['bytes'] for e in current) + \
        sum(ds.used or 0 for ds in hidden)

    def over():
        return (max_count and count > max_count) or \
            (max_bytes and total > max_bytes)
    evicted = []
    for entry in current:
        if not over() or entry['clones']:
            break
        if entry['name'] == keep:
            continue
        dependents.delete_volume(host, entry['name'])
        evicted.append(entry['name'])
        count -= 1
        total -= entry['bytes']
    if over():
        log.note('The image cache stays above its limits (%d entries, %d '
                 'bytes, with %d hidden copies): volumes use the rest, and '
                 'evicting those would free nothing.'
                 % (count, total, len(hidden)))
    return {'evicted': evicted, 'entries': count - len(hidden),
            'hidden': len(hidden)}


@implements('image-purge')
def purge(ctx, parent, payload):
    """Evict every entry (clones made from them keep working)."""
    host = ctx.zfs(parent)
    evicted = []
    for entry in entries(host):
        dependents.delete_volume(host, entry['name'])
        evicted.append(entry['name'])
    return {'evicted': evicted}


@implements('image-list')
def list_entries(ctx, parent, payload):
    return {'entries': entries(ctx.zfs(parent))}
