"""Cinder volume driver for ZFS-on-Linux storage hosts.

The driver class is imported lazily so that the lab tooling
(``python -m cinder_zol.lab``) works without Cinder installed; cinder-volume
resolves ``cinder_zol.ZFSonLinuxISCSIDriver`` through ``__getattr__``.
"""


def __getattr__(name):
    if name == 'ZFSonLinuxISCSIDriver':
        from cinder_zol.driver import ZFSonLinuxISCSIDriver
        return ZFSonLinuxISCSIDriver
    raise AttributeError(name)
