"""LIO exports through rtslib-fb, one remote ``python3 -`` per operation.

The program sent is :mod:`cinder_zol.targets.lio_remote` (read as text,
never imported here) plus one line calling ``main()`` with the parameters as
a Python string literal of JSON: IQN, device, initiators and CHAP secrets
are data, never code, and never in a command line. targetcli is not used:
it costs 1-2 s per call under emulation, the batched rtslib program about
as much for the whole export.

Layout per volume: block backstore named after the volume on the zvol
device, target ``<iqn>``, TPG 1 with ``generate_node_acls=0`` (only
explicit ACLs), ``authentication=1`` when CHAP is on, portal
``0.0.0.0:<target_port>`` (all addresses, so secondary portals work too),
LUN 0, one NodeACL per initiator carrying the volume's CHAP credentials.
Each change ends with ``RTSRoot().save_to_file()``; enable
``rtslib-fb-targetctl`` (Debian) or ``target.service`` on the storage host so
the saved configuration is restored at boot.

Resize: LIO reads the size from the block device, so ``refresh_size`` has
nothing to do.
"""

import json
import os

from oslo_log import log as logging

from cinder.i18n import _

from cinder_zol import exception
from cinder_zol.targets import base

LOG = logging.getLogger(__name__)

LUN = 0
PORTAL_IP = '0.0.0.0'
_PROGRAM_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             'lio_remote.py')
_program = None


def remote_program():
    """Source text of the program sent to the storage host."""
    global _program
    if _program is None:
        with open(_PROGRAM_PATH) as f:
            _program = f.read()
    return _program


def script_for(params):
    """Program text for one operation; params become a string literal."""
    literal = repr(json.dumps(params, sort_keys=True))
    return '%s\nmain(json.loads(%s))\n' % (remote_program(), literal)


class LioTarget(base.ISCSITarget):
    """iSCSI exports through the LIO kernel target on the storage host."""

    lun = LUN
    tools = 'python3 + python3-rtslib-fb and util-linux flock'

    def _hint(self, stderr, exit_code):
        if 'Address already in use' in stderr:
            return _('is tgtd or another target holding port %s? only one '
                     'iSCSI target implementation can run') % (
                         self.target_port)
        return None

    def _call(self, volume, params):
        out = self._run(volume, ['python3', '-'], input=script_for(params))
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise exception.TargetError(
                volume=volume.name,
                reason=_('unexpected output from the rtslib program: %r')
                % out.stdout[-200:])

    def _export_params(self, volume, iqn, device, chap, initiators):
        for initiator in initiators:
            base.validate_iscsi_name(initiator, 'initiator')
        return {'op': 'export', 'iqn': iqn, 'device': device,
                'so_name': volume.name, 'wait': self.device_wait_timeout,
                'portal_ip': PORTAL_IP, 'port': self.target_port,
                'chap': list(chap) if chap else None,
                'initiators': list(initiators)}

    def _export(self, volume, iqn, device, chap, initiators):
        result = self._call(volume, self._export_params(
            volume, iqn, device, chap, initiators))
        return result['tid']

    def _ensure(self, volume, iqn, device, chap, initiators):
        params = self._export_params(volume, iqn, device, chap, initiators)
        params['leave_if_present'] = True
        result = self._call(volume, params)
        if result.get('changed'):
            LOG.info('ensure_export: recreated export %s.', iqn)

    def _remove(self, volume, iqn):
        self._call(volume, {'op': 'remove', 'iqn': iqn,
                            'so_name': volume.name})

    def _allow(self, volume, iqn, initiator, chap):
        result = self._call(volume, {'op': 'allow', 'iqn': iqn,
                                     'so_name': volume.name,
                                     'initiator': initiator,
                                     'chap': list(chap) if chap else None})
        if initiator.lower() not in [a.lower() for a in result['acls']]:
            raise exception.TargetError(
                volume=volume.name,
                reason=_('initiator %(ini)s is not in the ACL of %(iqn)s '
                         'after adding it') % {'ini': initiator, 'iqn': iqn})

    def _deny(self, volume, iqn, initiators):
        self._call(volume, {'op': 'deny', 'iqn': iqn,
                            'initiators': initiators})

    def _refresh_size(self, volume, iqn, device):
        LOG.debug('LIO reports the new size of %s by itself.', iqn)
