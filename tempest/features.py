"""Which tempest volume features the driver really implements.

    python tempest/features.py [DRIVER_CLASS]   -> JSON on stdout

A feature counts as implemented when the driver class itself (a class of
its own package in the MRO, not one of Cinder's base classes, whose
versions raise NotImplementedError or do nothing) defines every method
Cinder calls for it. The rest of tempest.conf comes from the capabilities
the running backend reports to the scheduler (tempest/run.py).
"""

from __future__ import annotations

import importlib
import json
import sys

# tempest [volume-feature-enabled] option -> driver methods it needs
FEATURES = {
    'snapshot': ['create_snapshot', 'delete_snapshot',
                 'create_volume_from_snapshot'],
    'clone': ['create_cloned_volume'],
    'volume_revert': ['revert_to_snapshot'],
    'extend_volume_with_snapshot': ['extend_volume'],
    'manage_volume': ['manage_existing', 'manage_existing_get_size',
                      'unmanage'],
    'manage_snapshot': ['manage_existing_snapshot',
                        'manage_existing_snapshot_get_size',
                        'unmanage_snapshot'],
    # the generic group API works without driver support; the deprecated
    # consistency group API and group snapshots of a CG need these
    'consistency_group': ['create_group', 'create_group_snapshot'],
    'replication': ['failover_host'],
}


def defining_module(cls, name: str) -> str | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass.__module__
    return None


def features(path: str) -> dict:
    from cinder import objects
    objects.register_all()
    mod_name, _, cls_name = path.rpartition('.')
    cls = getattr(importlib.import_module(mod_name), cls_name)
    own = cls.__module__.split('.')[0]
    result = {}
    for feature, methods in FEATURES.items():
        where = {m: defining_module(cls, m) for m in methods}
        result[feature] = {
            'enabled': all(w and w.split('.')[0] == own
                           for w in where.values()),
            'methods': where,
        }
    return result


if __name__ == '__main__':
    print(json.dumps(features(sys.argv[1] if len(sys.argv) > 1 else
                              'cinder_zol.driver.ZFSonLinuxISCSIDriver'),
                     indent=1))
