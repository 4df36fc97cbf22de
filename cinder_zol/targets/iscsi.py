"""iSCSI exports (tgt or LIO on the storage host).

Names: target IQN = ``target_prefix`` + ``volume.name`` (Cinder's rule);
once exported, the IQN stored in ``provider_location`` wins, so changing
``target_prefix`` never orphans an export. ``provider_location`` is
``<ip>:<port>,<tid> <iqn> <lun>``: tgt numbers LUNs from 1 (LUN 0 is its
controller), LIO from 0.

Portals (multipath): the primary one is ``target_ip_address:target_port``;
each ``target_secondary_ip_addresses`` entry adds one, ``ADDRESS`` on
``target_port`` (several NICs of the storage host, Cinder's meaning) or
``ADDRESS:PORT`` with a port of its own (``[IPv6]:PORT``). Connection info
lists them all (``target_portals``/``target_iqns``/``target_luns``, one
target seen through each portal); ``provider_location`` names only the
primary, so changing the secondaries needs no database change. Exports ask
the storage host to listen on every port the portals use, on all of its
addresses (tgt: a tgtd portal per port, LIO: a network portal per port in
each TPG; see cinder_zol.host.root.tgt and cinder_zol.host.root.lio).

CHAP is on unless ``use_chap_auth = False`` is written explicitly (Cinder's
own default is off). Each volume gets its own random user name (20
characters) and secret (16, the longest every common initiator accepts),
kept in ``provider_auth``; the storage host keeps the first export's
credentials when two attachments race, and says which it kept.
``chap_username``/``chap_password`` are not used: a shared tgtd account
cannot change its password under live targets, and deleting it would
unbind it from every target (as Cinder's own tgt and LIO targets, which
also generate per-volume credentials).
"""

from oslo_log import log as logging

from cinder.common import constants
from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder.volume import volume_utils

from cinder_zol.host import errors as host_errors
from cinder_zol.host import names
from cinder_zol import options
from cinder_zol.targets import base

LOG = logging.getLogger(__name__)

CHAP_USERNAME_LENGTH = 20
CHAP_SECRET_LENGTH = 16


def _invalid(error):
    return cinder_exception.InvalidInput(reason=error.message)


def validate_iscsi_name(name, what='iSCSI name'):
    try:
        return names.iscsi_name(name, what)
    except host_errors.Refused as e:
        raise _invalid(e)


def parse_provider_location(location):
    """'<ip>:<port>,<tid> <iqn> <lun>' -> (portal, tid, iqn, lun)."""
    try:
        portal_tid, iqn, lun = location.split(' ')
        portal, tid = portal_tid.rsplit(',', 1)
        return portal, int(tid), validate_iscsi_name(iqn), int(lun)
    except (AttributeError, ValueError, cinder_exception.InvalidInput):
        raise cinder_exception.InvalidInput(
            reason=_('provider_location %r is not "<ip>:<port>,<tid> <iqn> '
                     '<lun>"') % (location,))


def parse_provider_auth(auth):
    """'CHAP <user> <secret>' -> [user, secret]; None when not CHAP."""
    if not auth:
        return None
    parts = auth.split()
    if len(parts) != 3 or parts[0] != 'CHAP':
        raise cinder_exception.InvalidInput(
            reason=_('provider_auth is not "CHAP <user> <secret>"'))
    try:
        return list(names.chap(parts[1:]))
    except host_errors.Refused as e:
        raise _invalid(e)


class ISCSITarget(base.Target):

    storage_protocol = constants.ISCSI
    protocol = 'iscsi'

    def host_id(self, connector):
        if not connector or not connector.get('initiator'):
            raise cinder_exception.InvalidConnectorException(
                missing='initiator')
        return validate_iscsi_name(connector['initiator'], 'initiator')

    def target_name(self, volume):
        if volume.provider_location:
            return parse_provider_location(volume.provider_location)[2]
        prefix = self.conf('target_prefix') or 'iqn.2010-10.org.openstack:'
        return validate_iscsi_name(prefix + volume.name, 'target IQN')

    def chap(self, volume):
        """Credentials to propose for an export, or None without CHAP."""
        if not options.chap_enabled(self.configuration):
            return None
        try:
            existing = parse_provider_auth(volume.provider_auth)
        except cinder_exception.InvalidInput:
            LOG.warning('Ignoring malformed provider_auth of %s; new CHAP '
                        'credentials will be generated.', volume.name)
            existing = None
        return existing or [
            volume_utils.generate_username(CHAP_USERNAME_LENGTH),
            volume_utils.generate_password(CHAP_SECRET_LENGTH)]

    def model_update(self, volume, result):
        location = '%s,%s %s %s' % (self.portals()[0], result['tid'],
                                    self.target_name(volume), result['lun'])
        chap = result.get('chap')
        return {'provider_location': location,
                'provider_auth': 'CHAP %s %s' % tuple(chap) if chap
                else None}

    def connection_data(self, volume, connector):
        _portal, _tid, iqn, lun = parse_provider_location(
            volume.provider_location)
        portals = self.portals()
        data = {
            'target_discovered': False,
            'target_portal': portals[0],
            'target_iqn': iqn,
            'target_lun': lun,
            'volume_id': volume.id,
            'discard': True,
            'encrypted': volume.encryption_key_id is not None,
        }
        # as Cinder's own targets: every portal when there are several
        # (os-brick fails over between them even without multipath), and
        # the one portal for multipath (no sendtargets discovery, which
        # would answer with every address the storage host listens on)
        if len(portals) > 1 or connector.get('multipath'):
            data['target_portals'] = portals
            data['target_iqns'] = [iqn] * len(portals)
            data['target_luns'] = [lun] * len(portals)
        chap = parse_provider_auth(volume.provider_auth)
        if chap:
            data['auth_method'] = 'CHAP'
            data['auth_username'], data['auth_password'] = chap
        return data
