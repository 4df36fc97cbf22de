"""iSCSI export of zvols on the remote storage host (tgt or LIO).

``get_target(configuration, runner)`` returns the helper chosen by
``zol_target_helper``; see :mod:`cinder_zol.targets.base` for the behaviour
shared by both (IQN, CHAP defaults, portal address, ACLs, locking).
"""

from cinder import exception as cinder_exception
from cinder.i18n import _


def get_target(configuration, runner):
    """Return the target helper configured by ``zol_target_helper``."""
    helper = configuration.safe_get('zol_target_helper') or 'tgtadm'
    if helper == 'tgtadm':
        from cinder_zol.targets import tgt
        return tgt.TgtTarget(configuration, runner)
    if helper == 'lioadm':
        from cinder_zol.targets import lio
        return lio.LioTarget(configuration, runner)
    raise cinder_exception.InvalidConfigurationValue(
        _('zol_target_helper must be tgtadm or lioadm, not %r') % helper)
