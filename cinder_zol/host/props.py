"""ZFS property rules for zvols, in one place: who may ask for what.

The storage host enforces them (its requests and its zfs grammar import
this module); the driver uses the same rules for the precedence below and
to decide what a retype can change in place.

A new zvol's properties, lowest precedence first:

1. ``zol_zvol_properties`` (the backend's defaults),
2. ``zol_volblocksize`` (the backend's block size),
3. the volume type's ``zfs:<property>`` extra specs.

Nobody requests the size or thin/thick as properties: the size is the
volume's, thin/thick comes from the type's ``provisioning:type`` (else
``san_thin_provision``) and the host turns it into ``refreservation``.
So a request for ``volsize``, ``refreservation``, ``volmode`` or the
driver's own ``cinder_zol:*`` marks is refused, never silently applied.

Values that change pool-wide state (:func:`pool_features`) are the
storage host operator's to allow (host.conf ``pool_features``).
"""

import re

from . import errors
from . import names

SPEC_PREFIX = 'zfs:'
MANAGED = 'cinder_zol:managed'
IMAGE = ('cinder_zol:image_id', 'cinder_zol:image_hash')

# What a backend or a volume type may ask for.
REQUESTABLE = frozenset((
    'volblocksize', 'compression', 'sync', 'logbias', 'primarycache',
    'secondarycache', 'copies', 'checksum', 'dedup', 'redundant_metadata',
    'snapdev'))
# What the storage host sets on every zvol it makes: no partition devices,
# and (with the udev rule of setup-storage-host.sh) nothing on the host
# probes, links or activates what tenants write into them.
FIXED = {'volmode': 'dev'}
# What only the driver sets, and how a request should say it instead.
OWN = {
    'volsize': 'the size is the volume\'s own',
    'refreservation': 'ask for thin or thick with the volume type\'s '
                      'provisioning:type extra spec',
    MANAGED: 'the driver\'s ownership mark',
    IMAGE[0]: 'the image cache\'s own mark',
    IMAGE[1]: 'the image cache\'s own mark',
    'volmode': 'every zvol is volmode=dev, so that the storage host never '
               'probes what tenants write',
}
# Fixed when a zvol is created: a clone inherits it from its origin, and a
# retype that changes it is a migration.
CREATE_ONLY = frozenset(('volblocksize',))

# What the storage host's zfs grammar lets `zfs create/clone/set` carry.
SETTABLE = REQUESTABLE | frozenset(OWN)
# What `zfs inherit` may clear: the marks (unmanage) and what a retype
# drops (back to the parent's value).
INHERITABLE = (REQUESTABLE - CREATE_ONLY) | frozenset((MANAGED,) + IMAGE)


def requested(props):
    """Check properties asked for by a backend or a volume type."""
    names.properties(props)
    for key in sorted(props):
        if key in OWN:
            raise errors.Refused('ZFS property %s cannot be requested: %s'
                                 % (key, OWN[key]))
        if key not in REQUESTABLE:
            raise errors.Refused(
                'ZFS property %s cannot be requested (a zfs:<property> '
                'extra spec or zol_zvol_properties); these can: %s'
                % (key, ', '.join(sorted(REQUESTABLE))))
    return props


def merged(defaults, volblocksize, extra_specs):
    """A new zvol's requested properties, by the precedence above."""
    props = dict(defaults or {})
    if volblocksize:
        props['volblocksize'] = volblocksize
    for key, value in (extra_specs or {}).items():
        if key.startswith(SPEC_PREFIX):
            props[key[len(SPEC_PREFIX):]] = str(value)
    return props


def for_clone(props):
    """What a clone can be created with: its origin fixes the rest."""
    return {k: v for k, v in props.items() if k not in CREATE_ONLY}


def retype_changes(spec_diff):
    """Split a volume type diff: (set, reset to inherited, fixed ones).

    ``spec_diff`` is Cinder's ``{key: (old, new)}`` of extra specs; only
    ``zfs:<property>`` keys matter here.
    """
    changed, dropped, fixed = {}, [], []
    for key, (old, new) in sorted(spec_diff.items()):
        if not key.startswith(SPEC_PREFIX) or old == new:
            continue
        prop = key[len(SPEC_PREFIX):]
        if prop in CREATE_ONLY:
            fixed.append(prop)
        elif new is None:
            dropped.append(prop)
        else:
            changed[prop] = str(new)
    return changed, dropped, fixed


# Pool-wide state a property value changes (zpool-features(7)): a feature
# stays active while any dataset uses it, and an OpenZFS without it can no
# longer import the pool; dedup grows the pool's one deduplication table.
# ``copies`` is not here: its extra space is charged to the dataset, so
# the parent's quota bounds it.
POOL_FEATURES = {
    'dedup': 'adds to the pool-wide deduplication table',
    'zstd': 'activates the pool feature zstd_compress',
    'large_blocks': 'activates the pool feature large_blocks (blocks '
                    'above 128K)',
    'sha512': 'activates the pool feature sha512',
    'skein': 'activates the pool feature skein',
    'edonr': 'activates the pool feature edonr',
    'blake3': 'activates the pool feature blake3',
}
_FEATURE_CHECKSUMS = ('sha512', 'skein', 'edonr', 'blake3')
LARGE_BLOCK = 128 * 1024
_SIZE_SUFFIX = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}
_NICE_SIZE = re.compile(r'([0-9]+(?:\.[0-9]+)?)([kmg]?)(?:i?b)?')


def pool_features(props):
    """{pool feature: 'property=value' needing it} of ``props``."""
    needed = {}
    for key, value in sorted(props.items()):
        for feature in _features(key, value.lower()):
            needed.setdefault(feature, '%s=%s' % (key, value))
    return needed


def _features(key, value):
    if key == 'dedup' and value != 'off':
        # on, verify, sha256[,verify], skein[,verify], ...
        return ['dedup'] + [a for a in value.split(',')
                            if a in _FEATURE_CHECKSUMS]
    if key == 'checksum' and value in _FEATURE_CHECKSUMS:
        return [value]
    if key == 'compression' and value.startswith('zstd'):
        return ['zstd']
    if key == 'volblocksize' and _bytes(key, value) > LARGE_BLOCK:
        return ['large_blocks']
    return []


def _bytes(key, value):
    """A zfs size such as 16K, 1M or 131072, in bytes."""
    found = _NICE_SIZE.fullmatch(value)
    if found is None:
        raise errors.Refused('ZFS property %s=%s is not a size (such as 16K)'
                             % (key, value))
    return float(found.group(1)) * _SIZE_SUFFIX[found.group(2)]
