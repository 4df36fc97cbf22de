"""The golden-image cache on the storage host.

One zvol per Glance image (``image-<id>``, or ``image-<id>-<volblocksize>``
for volume types that ask for another block size) holding the image's raw
data, with a ``@golden`` snapshot every volume made from the image is a
clone of: constant time whatever the image size. An entry carries
``cinder_zol:image_id`` and ``cinder_zol:image_hash`` (Glance's
``os_hash_algo:os_hash_value``), so it is found again after any restart and
never reused for different data.

Filling: the driver writes the data into ``importing-<entry>-<ns>`` (swept
at start-up if a crash interrupts it), then :func:`commit` snapshots and
renames it in one locked step; when another service committed the same
entry meanwhile, ours is dropped and theirs is used. Evicting an entry is
a delete with dependents (:mod:`.dependents`): clones made from it keep
working, and its data goes when the last of them does.
"""

import time

from . import dependents
from . import errors
from . import names
from . import ops
from . import props as zprops

PREFIX = 'image-'
IMPORTING_PREFIX = 'importing-'
GOLDEN = 'golden'


def importing_name(name):
    return '%s%s-%016x' % (IMPORTING_PREFIX, name, time.time_ns())


def _entry(host, name):
    if not name.startswith(PREFIX):
        raise errors.Refused('%r is not an image cache entry name' % name)
    return host.get(name)


@ops.op('image-find', 'PARENT NAME')
def find(ctx, parent, name, payload):
    """The entry's hash and size, or {} when there is no usable entry."""
    ds = _entry(ctx.zfs(parent), name)
    if ds is None or not ds.managed or \
            GOLDEN not in [s.snapshot_name for s in ds.snapshots]:
        return {}
    return {'hash': ds.image_hash, 'volsize': ds.volsize}


@ops.op('image-begin', 'PARENT NAME SIZE', payload=True)
def begin(ctx, parent, name, size, payload):
    """Create the zvol an image is written into; its name."""
    if not name.startswith(PREFIX):
        raise errors.Refused('%r is not an image cache entry name' % name)
    host = ctx.zfs(parent)
    props = dict(zprops.requested(payload.get('props') or {}))
    props[host_prop('image_id')] = names.component(
        str(payload.get('image_id')), 'image id')
    props[host_prop('image_hash')] = str(payload.get('hash'))
    importing = importing_name(name)
    host.create_volume(importing, size, True, props)
    return {'importing': importing}


def host_prop(short):
    return 'cinder_zol:' + short


@ops.op('image-commit', 'PARENT NAME NAME', lock='exclusive')
def commit(ctx, parent, importing, name, payload):
    """Make a filled import the cache entry ``name``.

    'committed', or 'exists' when another request committed it first (the
    import is then dropped and the existing entry serves).
    """
    if not importing.startswith(IMPORTING_PREFIX + name + '-'):
        raise errors.Refused('%s is not an import of %s' % (importing, name))
    host = ctx.zfs(parent)
    if host.get(name) is not None:
        dependents.delete_volume(host, importing)
        return {'result': 'exists'}
    host.snapshot(importing, GOLDEN)
    host.rename(importing, name)
    return {'result': 'committed'}


def entries(host):
    """Cache entries with their last use (a createtxg), oldest first."""
    datasets = host.children()
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


@ops.op('image-evict', 'PARENT', lock='exclusive', payload=True)
def evict(ctx, parent, payload):
    """Evict least recently used entries beyond the operator's limits.

    Limits of 0 mean no limit. Entries with clones go last: evicting them
    frees nothing until their clones are deleted. ``keep`` names an entry
    that must stay (the one just used).
    """
    host = ctx.zfs(parent)
    max_count = int(payload.get('max_count') or 0)
    max_bytes = int(payload.get('max_bytes') or 0)
    keep = payload.get('keep')
    current = entries(host)
    count = len(current)
    total = sum(e['bytes'] for e in current)
    evicted = []
    for entry in current:
        over_count = max_count and count > max_count
        over_bytes = max_bytes and total > max_bytes
        if not (over_count or over_bytes):
            break
        if entry['name'] == keep:
            continue
        dependents.delete_volume(host, entry['name'])
        evicted.append(entry['name'])
        count -= 1
        total -= entry['bytes']
    return {'evicted': evicted, 'entries': count}


@ops.op('image-purge', 'PARENT', lock='exclusive')
def purge(ctx, parent, payload):
    """Evict every entry (clones made from them keep working)."""
    host = ctx.zfs(parent)
    evicted = []
    for entry in entries(host):
        dependents.delete_volume(host, entry['name'])
        evicted.append(entry['name'])
    return {'evicted': evicted}


@ops.op('image-list', 'PARENT')
def list_entries(ctx, parent, payload):
    return {'entries': entries(ctx.zfs(parent))}
