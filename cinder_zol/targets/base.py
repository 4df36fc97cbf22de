"""Shared logic of the iSCSI target helpers (tgt and LIO).

Everything runs on the remote storage host through the driver's runner;
nothing here touches the local host.

Names and numbers
    Target IQN = ``target_prefix`` + ``volume.name`` (Cinder's own rule), e.g.
    ``iqn.2010-10.org.openstack:volume-<uuid>``; once exported, the IQN stored
    in ``provider_location`` wins, so changing ``target_prefix`` never
    orphans an existing export. ``provider_location`` is
    ``<ip>:<port>,<tid> <iqn> <lun>`` (Cinder's format). tgt: tid as assigned
    by tgtd, LUN 1 (LUN 0 is tgt's controller). LIO: tid = TPG tag 1, LUN 0.

Portal address
    The target runs on the storage host, not on the cinder-volume host, so
    Cinder's default ``target_ip_address = $my_ip`` is wrong here. Unless
    ``san_is_local`` is set, the portal is ``target_ip_address`` when it is
    set explicitly (backend section or ``[backend_defaults]``) to something
    other than ``my_ip``, else ``san_ip``. The portal is taken from the
    current configuration at each ``initialize_connection``, so changing it
    needs no database change. ``target_secondary_ip_addresses`` are offered
    as extra portals to multipath connectors (both tgt and LIO listen on
    all addresses).

CHAP (on by default)
    Cinder's ``use_chap_auth`` defaults to False; this driver turns CHAP on
    unless ``use_chap_auth = False`` is written explicitly in the backend
    section (or in ``[backend_defaults]``). Credentials: the volume's
    existing ``provider_auth`` is kept; otherwise ``chap_username`` /
    ``chap_password`` when both are configured; otherwise a random user
    name (20 characters) and secret (16 characters, the longest every
    common initiator accepts) per volume. Secrets travel only in stdin
    (config file text or script parameters), never in a command line.

Access control
    Always per initiator: an initiator may log in only after
    ``initialize_connection`` named it, and loses access at
    ``terminate_connection`` unless another attachment of the same
    multiattach volume from the same initiator remains. ``connector=None``
    (force detach) removes every initiator. There is no "allow any
    initiator" mode, with or without CHAP.

Serialisation
    tgt-admin and rtslib are not safe to run in parallel: every change holds
    an in-process lock per storage host and runs under
    ``flock /run/lock/cinder-zol-targets`` on the storage host, so several
    cinder-volume processes (backends) sharing one storage host do not
    collide.
"""

import abc
import contextlib
import re

from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging

from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder.volume import configuration as cinder_configuration
from cinder.volume import volume_utils

from cinder_zol import exception

LOG = logging.getLogger(__name__)

REMOTE_LOCK_FILE = '/run/lock/cinder-zol-targets'
# Seconds to wait for the storage host lock; flock then exits with
# LOCK_CONFLICT_EXIT so the error can say what happened.
REMOTE_LOCK_WAIT = 120
LOCK_CONFLICT_EXIT = 75
# Exit code of the remote scripts when the zvol device node did not appear.
DEVICE_MISSING_EXIT = 3

CHAP_USERNAME_LENGTH = 20
CHAP_SECRET_LENGTH = 16
CHAP_SECRET_MIN_LENGTH = 12

_IQN_RE = re.compile(r'^iqn\.\d{4}-\d{2}\.[A-Za-z0-9][A-Za-z0-9.-]*'
                     r'(:[A-Za-z0-9.:_-]+)?$')
_EUI_RE = re.compile(r'^eui\.[0-9A-Fa-f]{16}$')
_NAA_RE = re.compile(r'^naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?$')
_MAX_NAME = 223  # RFC 3720 limit for iSCSI names
# Credentials go into tgt config files (tgt-admin hands them to a shell)
# and LIO configfs: keep them to characters no layer interprets.
_CHAP_RE = re.compile(r'^[A-Za-z0-9._@+=-]+$')
_DEVICE_RE = re.compile(r'^/dev/zvol/[A-Za-z0-9_.:/-]+$')


# -- validation --------------------------------------------------------

def _invalid(reason):
    return cinder_exception.InvalidInput(reason=reason)


def validate_iscsi_name(name, what='iSCSI name'):
    """Refuse anything but a plain iqn./eui./naa. name."""
    if (not isinstance(name, str) or len(name) > _MAX_NAME or
            not (_IQN_RE.match(name) or _EUI_RE.match(name) or
                 _NAA_RE.match(name))):
        raise _invalid(_('%(what)s %(name)r is not a valid iSCSI name '
                         '(iqn.yyyy-mm.reversed.domain[:id], eui.<16 hex> '
                         'or naa.<16|32 hex>; no spaces or quotes)')
                       % {'what': what, 'name': name})
    return name


def validate_device(device):
    if (not isinstance(device, str) or not _DEVICE_RE.match(device) or
            '/../' in device + '/' or '/./' in device + '/'):
        raise _invalid(_('device path %r is not a /dev/zvol/... path the '
                         'target helpers can export') % (device,))
    return device


def validate_chap(username, secret):
    for what, value in (('CHAP user name', username),
                        ('CHAP secret', secret)):
        if not isinstance(value, str) or not _CHAP_RE.match(value) or \
                len(value) > 255:
            # Never echo the value: it may be a secret.
            raise _invalid(_('%s may only contain letters, digits and '
                             '._@+=- (1-255 characters)') % what)
    if len(secret) < CHAP_SECRET_MIN_LENGTH:
        raise _invalid(_('CHAP secret must have at least %d characters '
                         '(RFC 3720)') % CHAP_SECRET_MIN_LENGTH)
    return username, secret


def parse_provider_location(location):
    """'<ip>:<port>,<tid> <iqn> <lun>' -> (portal, tid, iqn, lun)."""
    try:
        portal_tid, iqn, lun = location.split(' ')
        portal, tid = portal_tid.rsplit(',', 1)
        return portal, int(tid), validate_iscsi_name(iqn), int(lun)
    except (AttributeError, ValueError, cinder_exception.InvalidInput):
        raise _invalid(_('provider_location %r is not "<ip>:<port>,<tid> '
                         '<iqn> <lun>"') % (location,))


def parse_provider_auth(auth):
    """'CHAP <user> <secret>' -> (user, secret); None when not CHAP."""
    if not auth:
        return None
    parts = auth.split()
    if len(parts) != 3 or parts[0] != 'CHAP':
        raise _invalid(_('provider_auth is not "CHAP <user> <secret>"'))
    return validate_chap(parts[1], parts[2])


# -- configuration helpers ---------------------------------------------

def explicit_option(configuration, name):
    """The option's value if an operator set it, else None.

    Cinder's BackendGroupConfiguration registers backend-section options with
    a None default, so None there means "not in the backend section"; for
    ``[backend_defaults]`` (and the DEFAULT-group style) oslo.config says
    where a value came from.
    """
    backend_conf = getattr(configuration, 'backend_conf', None)
    if backend_conf is not None:
        value = getattr(backend_conf, name, None)
        if value is not None:
            return value
        group = cinder_configuration.SHARED_CONF_GROUP
    else:
        group = None
    try:
        location = cfg.CONF.get_location(name, group).location
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
        return None
    if location in (cfg.Locations.opt_default, cfg.Locations.set_default):
        return None
    return getattr(cfg.CONF[group], name) if group else cfg.CONF[name]


def chap_enabled(configuration):
    """CHAP is on unless use_chap_auth = False was set explicitly."""
    value = explicit_option(configuration, 'use_chap_auth')
    return True if value is None else bool(value)


def attached_initiators(volume):
    """Initiator names of the volume's current attachments."""
    names = []
    for attachment in volume.volume_attachment or []:
        if getattr(attachment, 'attach_status', None) == 'detached':
            continue
        connector = getattr(attachment, 'connector', None) or {}
        initiator = connector.get('initiator')
        if initiator and initiator not in names:
            names.append(initiator)
    return names


class ISCSITarget(object, metaclass=abc.ABCMeta):
    """Export zvols over iSCSI on the storage host (abstract)."""

    protocol = 'iscsi'
    # LUN number of the volume inside its target.
    lun = None

    def __init__(self, configuration, runner):
        self.configuration = configuration
        self.runner = runner
        self._lock_name = 'cinder-zol-targets-%s' % getattr(
            runner, 'host', 'localhost')

    # -- configuration -------------------------------------------------

    def _conf(self, name, default=None):
        value = self.configuration.safe_get(name)
        return default if value is None else value

    @property
    def target_prefix(self):
        return self._conf('target_prefix', 'iqn.2010-10.org.openstack:')

    @property
    def target_port(self):
        return int(self._conf('target_port', 3260))

    @property
    def device_wait_timeout(self):
        return int(self._conf('zol_device_wait_timeout', 30))

    def target_ip(self):
        """Primary portal address; see the module docstring."""
        configured = self._conf('target_ip_address')
        if self._conf('san_is_local', False):
            return configured or cfg.CONF.my_ip
        explicit = explicit_option(self.configuration, 'target_ip_address')
        if explicit and explicit != cfg.CONF.my_ip:
            return explicit
        return self._conf('san_ip') or configured or cfg.CONF.my_ip

    def portals(self):
        ips = [self.target_ip()] + list(
            self._conf('target_secondary_ip_addresses', []) or [])
        return ['%s:%s' % (volume_utils.sanitize_host(ip), self.target_port)
                for ip in ips]

    def iqn(self, volume):
        """IQN of the volume: the exported one, else prefix + name."""
        if volume.provider_location:
            return parse_provider_location(volume.provider_location)[2]
        return validate_iscsi_name(self.target_prefix + volume.name,
                                   'target IQN')

    def new_iqn(self, volume):
        return validate_iscsi_name(self.target_prefix + volume.name,
                                   'target IQN')

    def chap_for_export(self, volume):
        """CHAP (user, secret) for a (re)export, or None without CHAP."""
        if not chap_enabled(self.configuration):
            return None
        try:
            existing = parse_provider_auth(volume.provider_auth)
        except cinder_exception.InvalidInput:
            LOG.warning('Ignoring malformed provider_auth of %s; new CHAP '
                        'credentials will be generated.', volume.name)
            existing = None
        if existing:
            return existing
        user = self._conf('chap_username')
        secret = self._conf('chap_password')
        if user and secret:
            try:
                return validate_chap(user, secret)
            except cinder_exception.InvalidInput as e:
                raise cinder_exception.InvalidConfigurationValue(
                    _('chap_username/chap_password: %s') % e.msg)
        return (volume_utils.generate_username(CHAP_USERNAME_LENGTH),
                volume_utils.generate_password(CHAP_SECRET_LENGTH))

    def model_update(self, iqn, tid, chap):
        location = '%s,%s %s %s' % (self.portals()[0], tid, iqn, self.lun)
        auth = 'CHAP %s %s' % chap if chap else None
        return {'provider_location': location, 'provider_auth': auth}

    # -- running commands ----------------------------------------------

    @contextlib.contextmanager
    def _locked(self):
        with lockutils.lock(self._lock_name, external=False):
            yield

    def _run(self, volume, argv, input=None):
        """Run argv under the storage host lock; errors -> TargetError.

        Only the command's stderr goes into the error: stdout may carry
        config text with secrets.
        """
        cmd = ['flock', '-w', str(REMOTE_LOCK_WAIT),
               '-E', str(LOCK_CONFLICT_EXIT), REMOTE_LOCK_FILE] + list(argv)
        try:
            return self.runner.run(cmd, input=input)
        except processutils.ProcessExecutionError as e:
            raise self._error(volume, e)

    def _hint(self, stderr, exit_code):
        """What the operator should do about this error, or None."""
        return None

    def _error(self, volume, error):
        stderr = (error.stderr or '').strip()
        if error.exit_code == LOCK_CONFLICT_EXIT:
            reason = _('another target change on the storage host held %(f)s '
                       'for more than %(t)s s') % {'f': REMOTE_LOCK_FILE,
                                                   't': REMOTE_LOCK_WAIT}
        elif error.exit_code == 127 or 'command not found' in stderr:
            reason = _('%(err)s (is the %(tool)s tool installed on the '
                       'storage host?)') % {'err': stderr,
                                            'tool': self.tools}
        else:
            reason = stderr or _('exit code %s') % error.exit_code
            hint = self._hint(stderr, error.exit_code)
            if hint:
                reason = '%s (%s)' % (reason, hint)
        return exception.TargetError(volume=volume_name(volume),
                                     reason=reason)

    # -- connection info -----------------------------------------------

    def iscsi_properties(self, volume, multipath=False):
        """Connection properties of an exported volume (Cinder's format)."""
        if not volume.provider_location:
            raise exception.TargetError(
                volume=volume.name,
                reason=_('the volume has no provider_location (not '
                         'exported); create_export or ensure_export must '
                         'run first'))
        _portal, _tid, iqn, lun = parse_provider_location(
            volume.provider_location)
        portals = self.portals()
        properties = {
            'target_discovered': False,
            'target_portal': portals[0],
            'target_iqn': iqn,
            'target_lun': lun,
            'volume_id': volume.id,
            'discard': True,
            'encrypted': volume.encryption_key_id is not None,
        }
        if multipath and len(portals) > 1:
            properties['target_portals'] = portals
            properties['target_iqns'] = [iqn] * len(portals)
            properties['target_luns'] = [lun] * len(portals)
        chap = parse_provider_auth(volume.provider_auth)
        if chap:
            properties['auth_method'] = 'CHAP'
            properties['auth_username'] = chap[0]
            properties['auth_password'] = chap[1]
        return properties

    @staticmethod
    def connector_initiator(connector):
        if not connector or not connector.get('initiator'):
            raise cinder_exception.InvalidConnectorException(
                missing='initiator')
        return validate_iscsi_name(connector['initiator'], 'initiator')

    @staticmethod
    def keeps_access(volume, initiator):
        """True when another attachment from this initiator remains."""
        if not volume.multiattach:
            return False
        same = [a for a in volume.volume_attachment or []
                if (getattr(a, 'connector', None) or {}).get('initiator') ==
                initiator and getattr(a, 'attach_status', None) !=
                'detached']
        return len(same) > 1

    # -- public API ----------------------------------------------------

    def create_export(self, volume, device):
        """Export the zvol; returns the model update (idempotent)."""
        validate_device(device)
        iqn = self.iqn(volume) if volume.provider_location else \
            self.new_iqn(volume)
        chap = self.chap_for_export(volume)
        with self._locked():
            tid = self._export(volume, iqn, device, chap,
                               attached_initiators(volume))
        LOG.info('Exported %(vol)s as %(iqn)s (tid %(tid)s, CHAP %(chap)s).',
                 {'vol': volume.name, 'iqn': iqn, 'tid': tid,
                  'chap': 'on' if chap else 'off'})
        return self.model_update(iqn, tid, chap)

    def ensure_export(self, volume, device):
        """Recreate a missing export as recorded; leave a correct one."""
        if not volume.provider_location:
            LOG.debug('ensure_export: %s was never exported.', volume.name)
            return
        validate_device(device)
        iqn = self.iqn(volume)
        chap = parse_provider_auth(volume.provider_auth)
        with self._locked():
            self._ensure(volume, iqn, device, chap,
                         attached_initiators(volume))

    def remove_export(self, volume):
        """Remove target, LUN and persistent config; missing is fine."""
        iqn = self.iqn(volume)
        with self._locked():
            self._remove(volume, iqn)
        LOG.info('Removed export %(iqn)s of %(vol)s.',
                 {'iqn': iqn, 'vol': volume.name})

    def initialize_connection(self, volume, connector):
        initiator = self.connector_initiator(connector)
        properties = self.iscsi_properties(volume,
                                           bool(connector.get('multipath')))
        with self._locked():
            self._allow(volume, properties['target_iqn'], initiator,
                        parse_provider_auth(volume.provider_auth))
        return {'driver_volume_type': self.protocol, 'data': properties}

    def terminate_connection(self, volume, connector):
        if connector is None:
            initiators = None  # force detach: everybody
        else:
            initiator = self.connector_initiator(connector)
            if self.keeps_access(volume, initiator):
                LOG.debug('%(ini)s keeps access to %(vol)s: another '
                          'attachment from it remains.',
                          {'ini': initiator, 'vol': volume.name})
                return
            initiators = [initiator]
        with self._locked():
            self._deny(volume, self.iqn(volume), initiators)

    def refresh_size(self, volume, device):
        """Make the target report the zvol's new size (after a resize)."""
        validate_device(device)
        if not volume.provider_location:
            return
        with self._locked():
            self._refresh_size(volume, self.iqn(volume), device)

    # -- per helper ----------------------------------------------------

    tools = 'target'

    @abc.abstractmethod
    def _export(self, volume, iqn, device, chap, initiators):
        """Create or complete the export; return the tid."""

    @abc.abstractmethod
    def _ensure(self, volume, iqn, device, chap, initiators):
        pass

    @abc.abstractmethod
    def _remove(self, volume, iqn):
        pass

    @abc.abstractmethod
    def _allow(self, volume, iqn, initiator, chap):
        pass

    @abc.abstractmethod
    def _deny(self, volume, iqn, initiators):
        """Remove the initiators (None: all) from the ACL."""

    @abc.abstractmethod
    def _refresh_size(self, volume, iqn, device):
        pass


def volume_name(volume):
    return getattr(volume, 'name', None) or str(volume)
