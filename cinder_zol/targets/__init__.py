"""Exports of zvols from the storage host, one class per protocol.

``HELPERS`` is the one list of target helpers: ``zol_target_helper``'s
choices come from it, and :func:`get_target` builds the target for the
configured one.
"""

from cinder import exception as cinder_exception
from cinder.i18n import _

# helper name -> (module, class, what it is)
HELPERS = {
    'tgtadm': ('cinder_zol.targets.iscsi', 'ISCSITarget',
               'iSCSI through the Linux SCSI target framework (tgtd), one '
               'config file per volume in /etc/tgt/conf.d'),
    'lioadm': ('cinder_zol.targets.iscsi', 'ISCSITarget',
               'iSCSI through the LIO kernel target (rtslib-fb), saved '
               'with saveconfig'),
    'nvmet': ('cinder_zol.targets.nvme', 'NVMeTCPTarget',
              'NVMe-oF over TCP through the kernel nvmet target '
              '(configfs); needs target_protocol = nvmet_tcp'),
}


def get_target(configuration, storage):
    """The target for ``zol_target_helper``."""
    helper = configuration.safe_get('zol_target_helper') or 'tgtadm'
    if helper not in HELPERS:
        raise cinder_exception.InvalidConfigurationValue(
            _('zol_target_helper must be one of %(h)s, not %(v)r')
            % {'h': ', '.join(sorted(HELPERS)), 'v': helper})
    module_name, class_name, _what = HELPERS[helper]
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name)(configuration, storage, helper)
