"""Cinder volume driver for a remote ZFS-on-Linux storage host.

Thin by design: it maps Cinder objects onto requests to the storage host
(:mod:`cinder_zol.storage`, answered by :mod:`cinder_zol.host` on the host,
where the ZFS model, the dependency bookkeeping and the target helpers run
under the host's own locks) and onto an export protocol
(:mod:`cinder_zol.targets`). One request per Cinder operation.
"""

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder import interface
from cinder.message import api as message_api
from cinder.message import message_field
from cinder.volume.drivers.san import san
from cinder.volume import volume_utils

from cinder_zol import exception
from cinder_zol import groups
from cinder_zol.host import errors as host_errors
from cinder_zol.host import props as zfs_props
from cinder_zol.host import wire
from cinder_zol import images
from cinder_zol import manage
from cinder_zol import options
from cinder_zol import runner as runner_mod
from cinder_zol import storage
from cinder_zol import targets
from cinder_zol.targets import base

LOG = logging.getLogger(__name__)


@interface.volumedriver
class ZFSonLinuxISCSIDriver(manage.ManageMixin, groups.GroupMixin,
                            san.SanISCSIDriver):
    """Volumes as ZFS zvols on a ZoL host, exported over iSCSI.

    Version history:
        1.0.0 - zvols, snapshots, O(1) clones, dependent-safe deletes,
                revert, extend, tgt and LIO export over SSH.
        2.0.0 - the storage host agent (cinder-zol-host): one request per
                operation under host-side locks, least-privilege account,
                root helper for targets; correct shared-export detach,
                migration and fault handling.
    """

    VERSION = '2.0.0'
    VENDOR = 'OpenZFS'
    # Third-party CI wiki page name.
    CI_WIKI_NAME = 'Cinder_ZoL_CI'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(options.ALL_OPTS)
        self.runner = None
        self.storage = None
        self.target = None
        self._stats = {}

    @staticmethod
    def get_driver_options():
        return options.ALL_OPTS

    # -- setup -----------------------------------------------------------

    def do_setup(self, context):
        conf = self.configuration
        self.runner = runner_mod.from_configuration(conf)
        self.storage = storage.StorageHost(self.runner, conf.zol_dataset,
                                           conf.zol_host_command)
        self.target = targets.get_target(conf, self.storage)
        self.image_cache = images.ImageCache(self.storage, conf)
        images.check_cinder_cache(conf)
        if conf.safe_get('chap_username') or conf.safe_get('chap_password'):
            LOG.warning('chap_username/chap_password are ignored: every '
                        'volume gets its own CHAP credentials.')

    def check_for_setup_error(self):
        super().check_for_setup_error()
        parent = self.storage.parent
        host = self.runner.host
        version = self.storage.version()
        if version.get('protocol') != wire.PROTOCOL:
            raise cinder_exception.VolumeBackendAPIException(data=_(
                'The cinder-zol agent on %(h)s speaks protocol %(got)s, this '
                'driver %(want)s: install the storage host component of '
                'this release there (setup-storage-host.sh).')
                % {'h': host, 'got': version.get('protocol'),
                   'want': wire.PROTOCOL})
        try:
            found = self.storage.check_parent()
        except exception.ZfsNotFound:
            raise cinder_exception.VolumeBackendAPIException(data=_(
                'Parent dataset %(p)s does not exist on %(h)s: create it '
                'with "zfs create %(p)s" or fix zol_dataset.')
                % {'p': parent, 'h': host})
        if found['type'] != 'filesystem':
            raise cinder_exception.VolumeBackendAPIException(data=_(
                'zol_dataset %(p)s is a %(k)s, not a filesystem dataset: '
                'point zol_dataset at a filesystem such as tank/cinder.')
                % {'p': parent, 'k': found['type']})
        # an agent older than this release does not report it
        volmode = found.get('volmode')
        if volmode not in (None, 'dev'):
            LOG.warning('Parent dataset %(p)s on %(h)s has volmode=%(m)s: '
                        'OpenZFS then makes each new zvol\'s device twice '
                        'and its /dev/zvol link disappears for a moment, '
                        'which can fail an export that comes right after a '
                        'create. Run "zfs set volmode=dev %(p)s" on the '
                        'storage host once no zvol of others below it '
                        'takes its volmode from there (setup-storage-host.sh '
                        'does so).', {'p': parent, 'h': host, 'm': volmode})
        self.storage.target_version(self.target.helper)
        self._check_backend_props()
        LOG.info('Storage host %(h)s: OpenZFS %(z)s, agent protocol %(p)s, '
                 'running as uid %(u)s, target helper %(t)s.',
                 {'h': host, 'z': version.get('zfs'), 'p': wire.PROTOCOL,
                  'u': version.get('euid'), 't': self.target.helper})
        self._sweep()

    def _sweep(self):
        """Clean up after crashes; never a reason not to start.

        The storage host handles each leftover on its own and logs those
        it must leave (they come back here as notes); a sweep that fails
        as a whole runs again with the next stats request.
        """
        parent = self.storage.parent
        try:
            fixed = self.storage.sweep()
        except exception.StorageHostError as e:
            LOG.warning('Cleaning up leftovers of interrupted operations '
                        'under %(p)s failed; the backend starts anyway and '
                        'they stay until the next clean-up: %(e)s',
                        {'p': parent, 'e': e})
            return
        if fixed:
            LOG.info('Cleaned up %d leftovers of interrupted operations '
                     'under %s.', fixed, parent)

    def _check_backend_props(self):
        """Refuse to start with properties every create would fail on."""
        conf = self.configuration
        try:
            zfs_props.requested(zfs_props.merged(
                conf.zol_zvol_properties, conf.zol_volblocksize, {}))
        except host_errors.Refused as e:
            raise cinder_exception.VolumeBackendAPIException(data=_(
                'zol_zvol_properties/zol_volblocksize: %(e)s. Fix the '
                'backend section; every new volume would fail otherwise.')
                % {'e': e.message})

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def _extra_specs(volume):
        vtype = volume.volume_type if volume.volume_type_id else None
        return (vtype.extra_specs or {}) if vtype else {}

    def _is_thin(self, volume):
        kind = self._extra_specs(volume).get('provisioning:type')
        if kind in ('thin', 'thick'):
            return kind == 'thin'
        return self.configuration.san_thin_provision

    def _zvol_props(self, volume):
        """ZFS properties a new zvol of this volume's type asks for.

        The precedence and what may be asked for: :mod:`.host.props`
        (checked again on the storage host).
        """
        conf = self.configuration
        return zfs_props.merged(conf.zol_zvol_properties,
                                conf.zol_volblocksize,
                                self._extra_specs(volume))

    def _wishes(self, volume):
        return {'props': self._zvol_props(volume),
                'sparse': self._is_thin(volume)}

    # -- volumes and snapshots ------------------------------------------

    def create_volume(self, volume):
        self.storage.create_volume(volume.name, volume.size * units.Gi,
                                   sparse=self._is_thin(volume),
                                   props=self._zvol_props(volume))

    def delete_volume(self, volume):
        try:
            result = self.storage.delete_volume(volume.name)
        except exception.ZfsBusy:
            # busy: a leftover export (see Target.release) or a real user.
            # A recorded export is Cinder's to remove (the manager calls
            # remove_export before delete_volume): that stays busy.
            if volume.provider_location:
                raise cinder_exception.VolumeIsBusy(volume_name=volume.name)
            try:
                released = self.target.release(volume)
            except exception.HostOperationFailed as e:
                LOG.warning('Could not check %(v)s for a leftover export: '
                            '%(e)s', {'v': volume.name, 'e': e})
                released = False
            if not released:
                raise cinder_exception.VolumeIsBusy(volume_name=volume.name)
            try:
                result = self.storage.delete_volume(volume.name)
            except exception.ZfsBusy:
                raise cinder_exception.VolumeIsBusy(volume_name=volume.name)
        if result == 'gone':
            LOG.info('Volume %s was not on the storage host; treating the '
                     'delete as done.', volume.name)

    def create_snapshot(self, snapshot):
        self.storage.snapshot(snapshot.volume_name, snapshot.name)

    def delete_snapshot(self, snapshot):
        try:
            self.storage.delete_snapshot(snapshot.volume_name, snapshot.name)
        except exception.ZfsBusy:
            raise cinder_exception.SnapshotIsBusy(snapshot_name=snapshot.name)

    def create_volume_from_snapshot(self, volume, snapshot):
        self.storage.clone_snapshot(snapshot.volume_name, snapshot.name,
                                    volume.name, volume.size * units.Gi,
                                    self._wishes(volume),
                                    snapshot.volume_size * units.Gi)

    def create_cloned_volume(self, volume, src_vref):
        self.storage.clone_volume(src_vref.name, volume.name,
                                  volume.size * units.Gi,
                                  self._wishes(volume))

    def extend_volume(self, volume, new_size):
        self.storage.extend(volume.name, new_size * units.Gi)
        self.target.extend(volume)

    def revert_to_snapshot(self, context, volume, snapshot):
        # Rolling back restores the snapshot's volsize; Cinder keeps the
        # volume's current size, so the host grows it back.
        self.storage.revert(volume.name, snapshot.name,
                            volume.size * units.Gi, self._wishes(volume))

    def snapshot_revert_use_temp_snapshot(self):
        # zfs rollback is atomic: no backup snapshot is needed, and one
        # newer than the target would have to be destroyed by the revert.
        return False

    def update_migrated_volume(self, ctxt, volume, new_volume,
                               original_volume_status):
        """Give the migrated zvol the original volume's name when possible.

        An available volume's zvol is renamed to the original name (as
        Cinder's LVM driver does); an in-use one, or one whose original
        name is still taken on this host, keeps its own name, and Cinder
        records it as name_id with its export and CHAP credentials.
        """
        keep = {'_name_id': new_volume.name_id,
                'provider_location': new_volume.provider_location,
                'provider_auth': new_volume.provider_auth}
        if original_volume_status != 'available':
            return keep
        original = cfg.CONF.volume_name_template % volume.id
        try:
            self.storage.rename(new_volume.name, original)
        except (exception.ZfsExists, exception.ZfsNotFound) as e:
            LOG.warning('Keeping %(new)s as the name of migrated volume '
                        '%(id)s: %(err)s', {'new': new_volume.name,
                                            'id': volume.id, 'err': e})
            return keep
        return {'_name_id': None, 'provider_location': None,
                'provider_auth': None}

    # -- images ----------------------------------------------------------

    def clone_image(self, context, volume, image_location, image_meta,
                    image_service):
        """A volume from an image as a clone of its golden zvol.

        Cinder asks this before it downloads anything; (None, False) lets
        it take its own path (download, then copy_image_to_volume).
        """
        why_not = self.image_cache.applies(volume, image_meta)
        if why_not:
            LOG.debug('Image %(i)s: no golden-image clone (%(w)s).',
                      {'i': image_meta.get('id'), 'w': why_not})
            return None, False
        try:
            return self.image_cache.clone(context, volume, image_meta,
                                          image_service,
                                          self._wishes(volume)), True
        except cinder_exception.ImageCopyFailure as e:
            # Cinder records no user message for a failed clone_image:
            # without one the user sees only an error status
            message_api.API().create(
                context, message_field.Action.COPY_IMAGE_TO_VOLUME,
                resource_uuid=volume.id, exception=e)
            raise

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        """Write an image into the zvol over SSH (no attach).

        Encrypted volumes take Cinder's own path
        (copy_image_to_encrypted_volume), which attaches the volume to
        the cinder-volume host to format it with LUKS.
        """
        images.copy_image_to_zvol(self.storage, context, volume,
                                  image_service, image_id, disable_sparse)

    def copy_volume_to_image(self, context, volume, image_service,
                             image_meta):
        """Upload a volume over SSH (no attach).

        A raw image streams from the zvol to Glance; other formats are
        converted by Cinder from a sparse copy of the zvol's data
        (:func:`images.upload_zvol`). An attached volume is read from a
        clone, so the image is one point in time; the clone is leased to
        this service's agent session, so that neither a lost reply nor a
        cinder-volume that dies leaves it for good: the next upload of the
        volume or the start-up sweep removes it. An encrypted volume is
        uploaded as it is stored (LUKS), as Cinder's generic upload does.
        """
        if not base.live_attachments(volume):
            images.upload_zvol(self.storage, context, image_service,
                               image_meta, volume, volume.name)
            return
        temporary = None
        try:
            temporary = self.storage.image_upload(volume.name)
            images.upload_zvol(self.storage, context, image_service,
                               image_meta, volume, temporary)
        finally:
            if temporary:
                images.drop_quietly(self.storage, temporary,
                                    'the next upload of %s or the start-up '
                                    'sweep removes it' % volume.name)

    # -- export ----------------------------------------------------------

    def create_export(self, context, volume, connector):
        return self.target.create_export(volume, connector)

    def ensure_export(self, context, volume):
        self.target.ensure_export(volume)

    def remove_export(self, context, volume):
        self.target.remove_export(volume)

    def initialize_connection(self, volume, connector, initiator_data=None):
        return self.target.initialize_connection(volume, connector)

    def terminate_connection(self, volume, connector, **kwargs):
        return self.target.terminate_connection(volume, connector)

    def validate_connector(self, connector):
        self.target.host_id(connector)

    # -- stats -----------------------------------------------------------

    def get_volume_stats(self, refresh=False):
        if refresh or not self._stats:
            self._update_volume_stats()
        return self._stats

    def _update_volume_stats(self):
        """Capacity of the parent dataset: one O(1) request.

        Provisioned capacity is left to Cinder, which counts it from its
        own database (allocated_capacity_gb); listing every zvol here would
        make each periodic update grow with the number of volumes.
        """
        used, available = self.storage.space()
        conf = self.configuration
        backend = conf.safe_get('volume_backend_name') or 'ZFSonLinux'
        self._stats = {
            'volume_backend_name': backend,
            'vendor_name': self.VENDOR,
            'driver_version': self.VERSION,
            'storage_protocol': self.target.storage_protocol,
            'total_capacity_gb': round((used + available) / units.Gi, 2),
            'free_capacity_gb': round(available / units.Gi, 2),
            'reserved_percentage': conf.reserved_percentage,
            'max_over_subscription_ratio':
                volume_utils.get_max_over_subscription_ratio(
                    conf.max_over_subscription_ratio, supports_auto=True),
            'thin_provisioning_support': True,
            'thick_provisioning_support': True,
            'online_extend_support': True,
            'multiattach': True,
            'QoS_support': False,
            'sparse_copy_volume': True,
            # a group snapshot is one zfs command (cinder_zol.groups)
            'consistent_group_snapshot_enabled': True,
        }
