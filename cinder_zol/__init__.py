"""Cinder volume driver for ZFS-on-Linux storage hosts.

``volume_driver = cinder_zol.ZFSonLinuxISCSIDriver`` in a backend section.
The storage host's half of the driver is :mod:`cinder_zol.host` (standard
library only; installed on the storage host by its setup script), so this
package imports Cinder only when the driver class is asked for.
"""


def __getattr__(name):
    if name == 'ZFSonLinuxISCSIDriver':
        from cinder_zol.driver import ZFSonLinuxISCSIDriver
        return ZFSonLinuxISCSIDriver
    raise AttributeError(name)
