"""Cinder volume driver for a remote ZFS-on-Linux storage host.

Thin by design: it maps Cinder objects onto the ZFS host model
(:mod:`cinder_zol.zfs`), the dependency bookkeeping
(:mod:`cinder_zol.dependents`) and an iSCSI target helper
(:mod:`cinder_zol.targets`), all of which run through one command runner.
"""

from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import units

from cinder.common import constants
from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder import interface
from cinder.volume.drivers.san import san
from cinder.volume import volume_utils

from cinder_zol import dependents
from cinder_zol import exception
from cinder_zol import options
from cinder_zol import runner as runner_mod
from cinder_zol import targets
from cinder_zol import zfs

LOG = logging.getLogger(__name__)

ZFS_SPEC_PREFIX = 'zfs:'


@interface.volumedriver
class ZFSonLinuxISCSIDriver(san.SanISCSIDriver):
    """Volumes as ZFS zvols on a ZoL host, exported over iSCSI.

    Version history:
        1.0.0 - zvols, snapshots, O(1) clones, dependent-safe deletes,
                revert, extend, tgt and LIO export over SSH.
    """

    VERSION = '1.0.0'
    VENDOR = 'OpenZFS'
    # Third-party CI wiki page name.
    CI_WIKI_NAME = 'Cinder_ZoL_CI'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(options.ALL_OPTS)
        self.runner = None
        self.zfs = None
        self.target = None
        self._stats = {}

    @staticmethod
    def get_driver_options():
        return options.ALL_OPTS

    # -- setup -----------------------------------------------------------

    def do_setup(self, context):
        self.runner = runner_mod.from_configuration(self.configuration)
        self.zfs = zfs.ZfsHost(self.runner, self.configuration.zol_dataset)
        self.target = targets.get_target(self.configuration, self.runner)

    def check_for_setup_error(self):
        super().check_for_setup_error()
        parent = self.zfs.parent
        try:
            kind = self.zfs.check_parent()
        except exception.ZfsNotFound:
            raise cinder_exception.VolumeBackendAPIException(data=_(
                'Parent dataset %(p)s does not exist on %(h)s: create it '
                'with "zfs create %(p)s" or fix zol_dataset.')
                % {'p': parent, 'h': self.runner.host})
        if kind != 'filesystem':
            raise cinder_exception.VolumeBackendAPIException(data=_(
                'zol_dataset %(p)s is a %(k)s, not a filesystem dataset: '
                'point zol_dataset at a filesystem such as tank/cinder.')
                % {'p': parent, 'k': kind})
        fixed = dependents.sweep(self.zfs)
        if fixed:
            LOG.info('Cleaned up %d leftovers of interrupted operations '
                     'under %s.', fixed, parent)

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

    def _zvol_props(self, volume, clone=False):
        """ZFS properties a new zvol of this volume's type gets."""
        props = dict(self.configuration.zol_zvol_properties or {})
        for key, value in self._extra_specs(volume).items():
            if key.startswith(ZFS_SPEC_PREFIX):
                props[key[len(ZFS_SPEC_PREFIX):]] = value
        if self.configuration.zol_volblocksize and not clone:
            props['volblocksize'] = self.configuration.zol_volblocksize
        if clone:
            props.pop('volblocksize', None)  # inherited from the origin
            if not self._is_thin(volume):
                props['refreservation'] = 'auto'
        return props

    def _grow(self, volume, from_gib):
        """Resize a fresh clone; destroy it if that fails."""
        if volume.size <= from_gib:
            return
        try:
            self.zfs.set_volsize(volume.name, volume.size * units.Gi)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.error('Growing %s failed; removing it again.',
                          volume.name)
                self.zfs.destroy(volume.name)

    # -- volumes and snapshots ------------------------------------------

    def create_volume(self, volume):
        self.zfs.create_volume(volume.name, volume.size * units.Gi,
                               sparse=self._is_thin(volume),
                               props=self._zvol_props(volume))

    def delete_volume(self, volume):
        try:
            if not dependents.delete_volume(self.zfs, volume.name):
                LOG.info('Volume %s was not on the storage host; treating '
                         'the delete as done.', volume.name)
        except exception.ZfsBusy:
            raise cinder_exception.VolumeIsBusy(volume_name=volume.name)

    def create_snapshot(self, snapshot):
        self.zfs.snapshot(snapshot.volume_name, snapshot.name)

    def delete_snapshot(self, snapshot):
        try:
            dependents.delete_snapshot(self.zfs, snapshot.volume_name,
                                       snapshot.name)
        except exception.ZfsBusy:
            raise cinder_exception.SnapshotIsBusy(snapshot_name=snapshot.name)

    def create_volume_from_snapshot(self, volume, snapshot):
        self.zfs.clone(snapshot.volume_name, snapshot.name, volume.name,
                       self._zvol_props(volume, clone=True))
        self._grow(volume, snapshot.volume_size)

    def create_cloned_volume(self, volume, src_vref):
        dependents.clone_volume(self.zfs, src_vref.name, volume.name,
                                self._zvol_props(volume, clone=True))
        self._grow(volume, src_vref.size)

    def extend_volume(self, volume, new_size):
        self.zfs.set_volsize(volume.name, new_size * units.Gi)
        if volume.provider_location:
            self.target.refresh_size(volume, self.zfs.device(volume.name))

    def revert_to_snapshot(self, context, volume, snapshot):
        dependents.revert(self.zfs, volume.name, snapshot.name,
                          self._zvol_props(volume, clone=True))
        # Rolling back restores the snapshot's volsize; Cinder keeps the
        # volume's current size, so grow back after a revert past an extend.
        if volume.size != snapshot.volume_size:
            self.zfs.set_volsize(volume.name, volume.size * units.Gi)

    def snapshot_revert_use_temp_snapshot(self):
        # zfs rollback is atomic: no backup snapshot is needed, and one
        # newer than the target would have to be destroyed by the revert.
        return False

    # -- export ----------------------------------------------------------

    def create_export(self, context, volume, connector):
        return self.target.create_export(volume,
                                         self.zfs.device(volume.name))

    def ensure_export(self, context, volume):
        self.target.ensure_export(volume, self.zfs.device(volume.name))

    def remove_export(self, context, volume):
        self.target.remove_export(volume)

    def initialize_connection(self, volume, connector, initiator_data=None):
        return self.target.initialize_connection(volume, connector)

    def terminate_connection(self, volume, connector, **kwargs):
        self.target.terminate_connection(volume, connector)

    # -- stats -----------------------------------------------------------

    def get_volume_stats(self, refresh=False):
        if refresh or not self._stats:
            self._update_volume_stats()
        return self._stats

    def _update_volume_stats(self):
        """Capacity from one zfs list of the parent and its zvols."""
        rows = self.zfs.list(types='filesystem,volume')
        parent, children = rows[0], rows[1:]
        visible = [r for r in children if r['type'] == 'volume' and
                   r.managed and not dependents.is_hidden(
                       self.zfs.child_name(r.name))]
        conf = self.configuration
        backend = conf.safe_get('volume_backend_name') or 'ZFSonLinux'
        self._stats = {
            'volume_backend_name': backend,
            'vendor_name': self.VENDOR,
            'driver_version': self.VERSION,
            'storage_protocol': constants.ISCSI,
            'total_capacity_gb': round(
                (parent['used'] + parent['available']) / units.Gi, 2),
            'free_capacity_gb': round(parent['available'] / units.Gi, 2),
            'provisioned_capacity_gb': round(
                sum(r['volsize'] or 0 for r in visible) / units.Gi, 2),
            'total_volumes': len(visible),
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
        }
