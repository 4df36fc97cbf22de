"""Exporting zvols from the storage host: what every protocol shares.

The work happens on the storage host's root helper
(:mod:`cinder_zol.host.root.exports`, under its own lock, one request per
call); this side decides names, credentials
and access from Cinder's objects and turns the host's answers into
``provider_location``/``provider_auth`` and connection info.

Access control is always per host (an initiator IQN or a host NQN): a host
may connect only after an attachment named it, and loses access when its
last attachment of the volume goes, unless an attachment whose host Cinder
has not recorded yet is being made. There is no "allow any host" mode.

Cinder's contract, which the volume manager relies on:

* ``create_export(volume, connector)`` exports and allows the connector's
  host in one request, so ``initialize_connection`` needs no round trip;
* ``terminate_connection`` returns True while another attachment still
  uses the export, and the manager then keeps it (no ``remove_export``);
* ``remove_export`` of a volume that was never exported does nothing, so a
  stopped target service never blocks deleting unexported volumes.
"""

import abc
import re

from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_config import types
from oslo_log import log as logging
from oslo_utils import netutils

from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder.objects import fields
from cinder.volume import volume_utils

from cinder_zol import exception
from cinder_zol.host import helpers
from cinder_zol import options

LOG = logging.getLogger(__name__)


def parse_portal(entry, default_port):
    """``ADDRESS``, ``ADDRESS:PORT``, ``[IPv6]:PORT`` -> (address, port).

    A bare IPv6 address (more than one colon, no brackets) is an address
    on ``default_port``; a host name is accepted as Cinder accepts one in
    ``target_ip_address``. Anything else raises
    InvalidConfigurationValue naming the entry.
    """
    text = str(entry).strip()
    match = _BRACKETED.match(text)
    if match:
        address, port = match.group(1), match.group(2)
        ok = netutils.is_valid_ipv6(address)
    elif text.count(':') == 1:
        address, port = text.split(':')
        ok = _is_host(address)
    else:
        address, port = text, None
        ok = _is_host(address)
    if port is not None:
        ok = ok and bool(_PORT.match(port)) and 0 < int(port) < 65536
    if not ok:
        raise cinder_exception.InvalidConfigurationValue(
            _('target_secondary_ip_addresses entry %r is not ADDRESS, '
              'ADDRESS:PORT or [IPv6 ADDRESS]:PORT (PORT 1-65535; ADDRESS '
              'alone uses target_port).') % (entry,))
    return address, int(port) if port is not None else default_port


_BRACKETED = re.compile(r'^\[([^\]]+)\](?::([^:]*))?$')
_PORT = re.compile(r'^[0-9]{1,5}$')


def _is_host(address):
    try:
        types.HostAddress()(address)
    except ValueError:
        return False
    return True


def live_attachments(volume):
    return [a for a in volume.volume_attachment or []
            if getattr(a, 'attach_status', None) != 'detached']


# Attachment states in which Cinder may not have recorded the host yet.
_BEING_MADE = (fields.VolumeAttachStatus.RESERVED,
               fields.VolumeAttachStatus.ATTACHING)


def _in_flight(attachment):
    """Is the attachment being made, for a host not recorded yet?

    ``reserved``: attachment_update has not recorded its connector yet;
    ``attaching`` without one: the older attach API. An attachment
    completed without a connector (a shelved offloaded server) has no host.
    """
    return getattr(attachment, 'connector', None) is None and \
        getattr(attachment, 'attach_status', None) in _BEING_MADE


class Target(object, metaclass=abc.ABCMeta):
    """Export zvols over one protocol through one storage host helper."""

    # Cinder's storage_protocol constant (stats) and driver_volume_type.
    storage_protocol = None
    protocol = None
    # zol_target_helper values this class serves.
    helper = None

    def __init__(self, configuration, storage, helper):
        self.configuration = configuration
        self.storage = storage
        self.helper = helper
        # volume id -> ids of attachments whose detach already ran here
        self._claims = {}
        # ids of volumes whose last detach left the export to be removed,
        # and of those an attach exported again before the removal
        self._removal_due = set()
        self._removal_cancelled = set()
        self.check_portals()

    # -- configuration -------------------------------------------------

    def conf(self, name):
        return self.configuration.safe_get(name)

    @property
    def default_port(self):
        return helpers.HELPERS[self.helper].port

    @property
    def port(self):
        return int(self.conf('target_port') or self.default_port)

    def target_ip(self):
        """The primary portal address.

        The target runs on the storage host, not on the cinder-volume host,
        so Cinder's default ``target_ip_address = $my_ip`` is wrong here.
        Unless ``san_is_local`` is set, the portal is ``target_ip_address``
        when it is set explicitly to something other than ``my_ip``, else
        ``san_ip``. Taken at each attach: changing it needs no database
        change.
        """
        configured = self.conf('target_ip_address')
        if self.conf('san_is_local'):
            return configured or cfg.CONF.my_ip
        explicit = options.explicit_option(self.configuration,
                                           'target_ip_address')
        if explicit and explicit != cfg.CONF.my_ip:
            return explicit
        return self.conf('san_ip') or configured or cfg.CONF.my_ip

    def portal_addresses(self):
        """(address, port) of every portal: the primary one first.

        ``target_secondary_ip_addresses`` entries are ``ADDRESS`` (on
        ``target_port``, as in Cinder) or ``ADDRESS:PORT`` (``[IPv6]:PORT``)
        for a portal with its own port.
        """
        primary = (self.target_ip(), self.port)
        return [primary] + [
            parse_portal(entry, self.port)
            for entry in self.conf('target_secondary_ip_addresses') or []]

    def portals(self):
        return ['%s:%s' % (volume_utils.sanitize_host(ip), port)
                for ip, port in self.portal_addresses()]

    def ports(self):
        """The TCP ports the storage host must listen on, sorted."""
        return sorted({port for _ip, port in self.portal_addresses()})

    def check_portals(self):
        """Refuse unusable portal options at do_setup, saying which."""
        portals = self.portals()
        twice = sorted({p for p in portals if portals.count(p) > 1})
        if twice:
            raise cinder_exception.InvalidConfigurationValue(
                _('target_secondary_ip_addresses lists the portal %(p)s '
                  'more than once (the primary portal is '
                  'target_ip_address:target_port = %(first)s): a multipath '
                  'device needs distinct portals.')
                % {'p': ', '.join(twice), 'first': portals[0]})
        return portals

    @staticmethod
    def serial(volume):
        """The LUN's identity: the zvol's (name_id), stable across swaps."""
        return volume.name_id

    # -- per protocol ----------------------------------------------------

    @abc.abstractmethod
    def host_id(self, connector):
        """The connecting host's name (IQN, NQN) from a connector."""

    @abc.abstractmethod
    def target_name(self, volume):
        """Name of the volume's target (kept once exported)."""

    def chap(self, volume):
        """Credentials to propose for an export, or None (no CHAP)."""
        return None

    def export_payload(self, volume):
        """What the storage host needs to export the volume.

        ``iqn`` is the target's name whatever the protocol (an NQN for
        NVMe-oF); ``ports`` every port the portals use.
        """
        return {'iqn': self.target_name(volume), 'chap': self.chap(volume),
                'port': self.port, 'ports': self.ports(),
                'serial': self.serial(volume),
                'wait': int(self.conf('zol_device_wait_timeout') or 30)}

    @abc.abstractmethod
    def model_update(self, volume, result):
        """provider_location/provider_auth from the host's export reply."""

    @abc.abstractmethod
    def connection_data(self, volume, connector):
        """The ``data`` of initialize_connection's answer."""

    # -- the flow --------------------------------------------------------

    def _request(self, op, volume, payload):
        return self.storage.target(op, volume.name, self.helper, payload)

    def _access_lock(self, volume):
        """Who may connect changes one call at a time per volume.

        A detach decides from the attachments it read when it started; an
        export made after that read must wait for the detach to end, or
        the detach would take back the access the export gave.
        """
        return lockutils.lock('cinder-zol-access-%s' % volume.id)

    def create_export(self, volume, connector):
        """Export, allowing the connector's host; the model update."""
        payload = self.export_payload(volume)
        hosts = [self.host_id(connector)] if connector else []
        payload['initiators'] = hosts
        with self._access_lock(volume):
            result = self._request('export', volume, payload)
            if volume.id in self._removal_due:
                self._removal_due.discard(volume.id)
                self._removal_cancelled.add(volume.id)
        LOG.info('Exported %(vol)s as %(name)s for %(hosts)s.',
                 {'vol': volume.name, 'name': payload['iqn'],
                  'hosts': ', '.join(hosts) or 'nobody yet'})
        return self.model_update(volume, result)

    def ensure_export(self, volume):
        """Recreate a lost export as recorded; leave a correct one alone."""
        if not volume.provider_location:
            LOG.debug('ensure_export: %s was never exported.', volume.name)
            return
        payload = self.export_payload(volume)
        payload['initiators'] = self.attached_hosts(volume)
        result = self._request('export', volume, payload)
        if result.get('changed'):
            LOG.info('ensure_export: recreated the export of %s.',
                     volume.name)

    def remove_export(self, volume):
        """Remove the export, unless an attach renewed it meanwhile.

        Meanwhile: since the detach that left it to be removed (see
        terminate_connection).
        """
        if not volume.provider_location:
            LOG.debug('remove_export: %s was never exported.', volume.name)
            return
        with self._access_lock(volume):
            self._removal_due.discard(volume.id)
            if volume.id in self._removal_cancelled:
                self._removal_cancelled.discard(volume.id)
                LOG.info('Kept the export of %s: an attach made while its '
                         'last detach ran uses it.', volume.name)
                return
            self._request('remove', volume,
                          {'iqn': self.target_name(volume)})
        LOG.info('Removed the export of %s.', volume.name)

    def release(self, volume):
        """Remove any export of a volume being deleted; True if one was.

        An export whose request was lost (connection dropped, cinder-volume
        killed) can still complete on the storage host after Cinder gave
        up on it, with no provider_location to show for it, so Cinder never
        calls remove_export. A volume being deleted without a recorded
        export has no attachments: any export of it is such a leftover,
        and it keeps the zvol busy.
        """
        result = self._request('remove', volume,
                               {'iqn': self.target_name(volume)})
        if result.get('removed'):
            LOG.warning('Removed a leftover export of %s (an export whose '
                        'request was lost) before deleting it.', volume.name)
            return True
        return False

    def initialize_connection(self, volume, connector):
        self.host_id(connector)   # validates the connector
        if not volume.provider_location:
            raise exception.TargetError(
                what=_('%s is not exported') % volume.name,
                hint=_('create_export or ensure_export must run first.'))
        return {'driver_volume_type': self.protocol,
                'data': self.connection_data(volume, connector)}

    def terminate_connection(self, volume, connector):
        """Drop the host's access unless it still needs it.

        Returns True when another attachment of the volume remains, which
        tells the volume manager to keep the export.

        Cinder's API loads the volume before its RPC call and drops the
        attachment only after the call returns, so detaches made at the
        same moment all list every attachment, and each would count the
        others as remaining: nobody would deny the host or remove the
        export. Each call therefore claims one attachment of its host,
        under a per-volume lock, and counts only the unclaimed ones; a
        claim ends when the volume no longer lists that attachment.

        An attachment being made has no connector yet (Cinder records it
        after create_export and initialize_connection return), so it may
        be this host's, already allowed by its create_export: the host
        keeps access while one is listed. One that starts later exports
        after this call (the access lock); if this call returns False, the
        volume manager's remove_export then keeps that export.
        """
        with self._access_lock(volume):
            live = live_attachments(volume)
            listed = {a.id for a in live}
            claimed = self._claims.setdefault(volume.id, set())
            claimed &= listed
            live = [a for a in live if a.id not in claimed]
            if connector is None:
                # force detach without a connector: we cannot tell whose
                # attachment this is; cut nobody off while others remain
                others = len(live) > 1
                if not others:
                    self._deny(volume, None)
            else:
                host = self.host_id(connector)
                mine = [a for a in live if self._host_of(a) == host]
                if mine:
                    live.remove(mine[0])
                others = bool(live)
                in_flight = [a.id for a in live if _in_flight(a)]
                if len(mine) > 1:
                    LOG.debug('%(h)s keeps access to %(v)s: another '
                              'attachment from it remains.',
                              {'h': host, 'v': volume.name})
                elif in_flight:
                    LOG.info('%(h)s keeps access to %(v)s: attachment '
                             '%(a)s is being made, maybe from it.',
                             {'h': host, 'v': volume.name,
                              'a': ', '.join(in_flight)})
                else:
                    self._deny(volume, [host])
                if mine:
                    claimed.add(mine[0].id)
            if not others or not claimed:
                # the last one: every listed attachment is accounted for
                self._claims.pop(volume.id, None)
            if not others:
                self._removal_cancelled.discard(volume.id)
                self._removal_due.add(volume.id)
            return others

    def _host_of(self, attachment):
        connector = getattr(attachment, 'connector', None) or {}
        try:
            return self.host_id(connector)
        except cinder_exception.InvalidConnectorException:
            return None

    def _deny(self, volume, hosts):
        if volume.provider_location:
            self._request('deny', volume, {'iqn': self.target_name(volume),
                                           'initiators': hosts})

    def extend(self, volume):
        """Make a live export report the zvol's new size."""
        if volume.provider_location:
            self._request('resize', volume,
                          {'iqn': self.target_name(volume),
                           'serial': self.serial(volume)})

    # -- attachments -----------------------------------------------------

    def attached_hosts(self, volume):
        hosts = []
        for attachment in live_attachments(volume):
            connector = getattr(attachment, 'connector', None) or {}
            try:
                host = self.host_id(connector)
            except cinder_exception.InvalidConnectorException:
                continue
            if host not in hosts:
                hosts.append(host)
        return hosts
