"""NVMe-oF over TCP exports (the kernel nvmet target on the storage host).

Names: subsystem NQN = ``target_prefix`` + ``volume.name`` when
``target_prefix`` is an NQN prefix (starts with ``nqn.``), else
``nqn.2010-10.org.openstack:`` + ``volume.name``; once exported, the NQN
stored in ``provider_location`` wins. The namespace's uuid and nguid are the
volume's name_id, so a re-created export shows the same identity.
``provider_location`` is ``<ip>:<port> tcp <nqn> <nsid>``, the layout of
Cinder's own nvmet target.

Access is per host NQN (the connector's ``nqn``); there is no CHAP and no
allow-any-host. The connection info is os-brick's NVMeOFConnector "new"
format (Cinder's ``nvmeof_conn_info_version = 2``): ``target_nqn``,
``vol_uuid``, ``volume_nguid``, ``ns_id`` and ``portals``, one
``(address, port, 'tcp')`` per portal address.
"""

from cinder.common import constants
from cinder import exception as cinder_exception
from cinder.i18n import _

from cinder_zol.host import errors as host_errors
from cinder_zol.host import names
from cinder_zol import options
from cinder_zol.targets import base

NQN_PREFIX = 'nqn.2010-10.org.openstack:'
TRANSPORT = 'tcp'
PROTOCOLS = ('nvmet_tcp',)


def validate_nqn(name, what='NQN'):
    try:
        return names.nqn(name, what)
    except host_errors.Refused as e:
        raise cinder_exception.InvalidInput(reason=e.message)


def parse_provider_location(location):
    """'<ip>:<port> tcp <nqn> <nsid>' -> (portal, nqn, nsid)."""
    try:
        portal, transport, nqn, nsid = location.split(' ')
        if transport != TRANSPORT:
            raise ValueError(transport)
        return portal, validate_nqn(nqn), int(nsid)
    except (AttributeError, ValueError, cinder_exception.InvalidInput):
        raise cinder_exception.InvalidInput(
            reason=_('provider_location %r is not "<ip>:<port> tcp <nqn> '
                     '<nsid>"') % (location,))


class NVMeTCPTarget(base.Target):

    storage_protocol = constants.NVMEOF_TCP
    protocol = constants.NVMEOF_VARIANT_2      # 'nvmeof'

    def __init__(self, configuration, storage, helper):
        super().__init__(configuration, storage, helper)
        protocol = self.conf('target_protocol') or 'iscsi'
        if protocol not in PROTOCOLS:
            raise cinder_exception.InvalidConfigurationValue(
                _('zol_target_helper = %(h)s exports NVMe-oF over TCP: set '
                  'target_protocol = nvmet_tcp, not %(p)s')
                % {'h': helper, 'p': protocol})

    @property
    def port(self):
        # Cinder's target_port defaults to iSCSI's 3260: only a value the
        # operator wrote counts here, else NVMe/TCP's 4420
        return int(options.explicit_option(self.configuration, 'target_port')
                   or self.default_port)

    def check_portals(self):
        """nvmet listens on target_port only: no portal with another port."""
        portals = super().check_portals()
        other = ['%s:%s' % (ip, port) for ip, port in self.portal_addresses()
                 if port != self.port]
        if other:
            raise cinder_exception.InvalidConfigurationValue(
                _('target_secondary_ip_addresses %(o)s: the nvmet helper '
                  'listens on target_port (%(p)s) only; list addresses '
                  'without a port.') % {'o': ', '.join(other), 'p': self.port})
        return portals

    def host_id(self, connector):
        if not connector or not connector.get('nqn'):
            raise cinder_exception.InvalidConnectorException(missing='nqn')
        return validate_nqn(connector['nqn'], 'host NQN')

    def target_name(self, volume):
        if volume.provider_location:
            return parse_provider_location(volume.provider_location)[1]
        prefix = self.conf('target_prefix') or ''
        if not prefix.startswith('nqn.'):
            prefix = NQN_PREFIX
        return validate_nqn(prefix + volume.name, 'subsystem NQN')

    def model_update(self, volume, result):
        location = '%s %s %s %s' % (self.portals()[0], TRANSPORT,
                                    self.target_name(volume), result['nsid'])
        return {'provider_location': location, 'provider_auth': None}

    def connection_data(self, volume, connector):
        _portal, nqn, nsid = parse_provider_location(
            volume.provider_location)
        serial = self.serial(volume)
        return {
            'target_nqn': nqn,
            'vol_uuid': serial,
            'volume_nguid': serial,
            'ns_id': nsid,
            # as Cinder's nvmet target: the port as text, no brackets
            'portals': [(ip, str(port), TRANSPORT)
                        for ip, port in self.portal_addresses()],
            'host_nqn': self.host_id(connector),
            'discard': True,
            'encrypted': volume.encryption_key_id is not None,
        }
