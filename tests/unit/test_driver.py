"""Driver lifecycle against the fake ZFS host, error paths included."""

from unittest import mock

import ddt
from oslo_utils import units

from cinder import context
from cinder import exception as cinder_exception
from cinder.tests.unit import fake_volume
from cinder.tests.unit import test
from cinder.volume import configuration as conf

from cinder_zol import driver as driver_mod
from cinder_zol import exception
from cinder_zol import options
from cinder_zol import zfs
from tests import scenarios
from tests.unit import fake_zfs

PARENT = 'tank/cinder'

# Methods Cinder's interface check does not enforce (it accepts any class),
# so we check them ourselves: each must be defined by our class, not
# inherited from BaseVD/SanDriver no-ops.
REQUIRED = ('do_setup', 'check_for_setup_error', 'get_volume_stats',
            'create_volume', 'delete_volume', 'create_snapshot',
            'delete_snapshot', 'create_volume_from_snapshot',
            'create_cloned_volume', 'extend_volume', 'revert_to_snapshot',
            'create_export', 'ensure_export', 'remove_export',
            'initialize_connection', 'terminate_connection',
            'get_driver_options', 'snapshot_revert_use_temp_snapshot')


class DriverTestBase(test.TestCase):

    def setUp(self):
        super().setUp()
        self.ctxt = context.get_admin_context()
        self.configuration = conf.Configuration(options.ALL_OPTS,
                                                config_group='zol')
        self.host = fake_zfs.FakeZfsHost(PARENT)
        self.target = mock.Mock()
        self.mock_object(driver_mod.runner_mod, 'from_configuration',
                         return_value=self.host)
        self.mock_object(driver_mod.targets, 'get_target',
                         return_value=self.target)
        self.driver = driver_mod.ZFSonLinuxISCSIDriver(
            configuration=self.configuration)
        self.set_conf(zol_dataset=PARENT, san_ip='192.0.2.10',
                      san_login='root',
                      san_private_key='/etc/cinder/zol_ed25519',
                      volume_backend_name='zol')
        self.driver.do_setup(self.ctxt)

    def set_conf(self, **kwargs):
        for key, value in kwargs.items():
            self.override_config(key, value, 'zol')

    def volume(self, size=1, **kwargs):
        return scenarios.make_volume(self.ctxt, size, **kwargs)

    def snapshot(self, vol):
        return scenarios.make_snapshot(self.ctxt, vol)

    def typed_volume(self, size=1, **extra_specs):
        vtype = fake_volume.fake_volume_type_obj(
            self.ctxt, extra_specs=extra_specs)
        vol = self.volume(size, volume_type_id=vtype.id)
        vol.volume_type = vtype
        return vol

    def ds(self, name, snapshot=None):
        return self.host.datasets.get(self.driver.zfs.path(name, snapshot))

    def assert_only_parent_left(self):
        self.assertEqual(['tank', PARENT], self.host.names())


@ddt.ddt
class DependencyScenarioTestCase(DriverTestBase):

    def check_alive(self, name, size):
        ds = self.ds(name)
        self.assertIsNotNone(ds, '%s is gone' % name)
        self.assertEqual(size, ds['volsize'])

    @ddt.data(*sorted(scenarios.SCENARIOS))
    def test_scenario(self, name):
        runner = scenarios.ScenarioRunner(self.driver, self.check_alive)
        runner.play(scenarios.SCENARIOS[name])
        self.assert_only_parent_left()


class InterfaceTestCase(test.TestCase):

    def test_required_methods_are_ours(self):
        cls = driver_mod.ZFSonLinuxISCSIDriver
        missing = [m for m in REQUIRED if m not in vars(cls)]
        self.assertEqual([], missing)

    def test_exported_name(self):
        import cinder_zol
        self.assertIs(driver_mod.ZFSonLinuxISCSIDriver,
                      cinder_zol.ZFSonLinuxISCSIDriver)


@ddt.ddt
class CreateTestCase(DriverTestBase):

    def test_sparse_by_default(self):
        vol = self.volume(2)
        self.driver.create_volume(vol)
        ds = self.ds(vol.name)
        self.assertEqual(2 * units.Gi, ds['volsize'])
        self.assertEqual(0, ds['refreservation'])
        self.assertIn('-s', self.host.calls[-1])
        self.assertEqual('yes', ds['props'][zfs.MANAGED_PROP])

    def test_thick_from_san_thin_provision(self):
        self.set_conf(san_thin_provision=False)
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.assertNotIn('-s', self.host.calls[-1])
        self.assertEqual(units.Gi, self.ds(vol.name)['refreservation'])

    @ddt.data(('thick', False), ('thin', True))
    @ddt.unpack
    def test_provisioning_type_extra_spec(self, kind, sparse):
        self.set_conf(san_thin_provision=not sparse)
        vol = self.typed_volume(**{'provisioning:type': kind})
        self.driver.create_volume(vol)
        self.assertEqual(sparse, '-s' in self.host.calls[-1])

    def test_zfs_properties_from_config_and_type(self):
        self.set_conf(zol_zvol_properties={'compression': 'lz4',
                                           'logbias': 'latency'})
        self.set_conf(zol_volblocksize='16K')
        vol = self.typed_volume(**{'zfs:logbias': 'throughput'})
        self.driver.create_volume(vol)
        self.assertEqual({'compression': 'lz4', 'logbias': 'throughput',
                          'volblocksize': '16K', zfs.MANAGED_PROP: 'yes'},
                         self.ds(vol.name)['props'])

    def test_unknown_zfs_property_is_reported(self):
        vol = self.typed_volume(**{'zfs:bogus': 'on'})
        e = self.assertRaises(exception.ZfsInvalid,
                              self.driver.create_volume, vol)
        self.assertIn("invalid property 'bogus'", str(e))
        self.assert_only_parent_left()

    @ddt.data('lz4;reboot', 'a b', '$(id)', '-o')
    def test_unsafe_property_value_refused(self, value):
        vol = self.typed_volume(**{'zfs:compression': value})
        self.assertRaises(exception.UnsafeName, self.driver.create_volume,
                          vol)
        self.assertEqual([], self.host.calls)

    def test_out_of_space_carries_zfs_stderr(self):
        self.set_conf(san_thin_provision=False)
        vol = self.volume(1000)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_volume, vol)
        self.assertIn('out of space', str(e))
        self.assertIn('Free space in the pool', str(e))
        self.assertIsInstance(e, cinder_exception.VolumeBackendAPIException)

    def test_existing_dataset_not_overwritten(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.assertRaises(exception.ZfsExists, self.driver.create_volume,
                          vol)

    def test_clone_thick_reserves(self):
        src = self.volume()
        self.driver.create_volume(src)
        clone = self.typed_volume(**{'provisioning:type': 'thick'})
        self.driver.create_cloned_volume(clone, src)
        self.assertEqual(units.Gi, self.ds(clone.name)['refreservation'])

    def test_from_snapshot_grows_larger_volume(self):
        src = self.volume(1)
        self.driver.create_volume(src)
        snap = self.snapshot(src)
        self.driver.create_snapshot(snap)
        vol = self.volume(3)
        self.driver.create_volume_from_snapshot(vol, snap)
        self.assertEqual(3 * units.Gi, self.ds(vol.name)['volsize'])
        self.assertEqual(self.driver.zfs.path(src.name, snap.name),
                         self.ds(vol.name)['origin'])

    def test_from_snapshot_grow_failure_removes_clone(self):
        src = self.volume(1)
        self.driver.create_volume(src)
        snap = self.snapshot(src)
        self.driver.create_snapshot(snap)
        vol = self.volume(3)
        self.host.fail['set'] = "cannot set property: out of space"
        self.assertRaises(exception.ZfsOutOfSpace,
                          self.driver.create_volume_from_snapshot, vol, snap)
        self.assertIsNone(self.ds(vol.name))

    def test_clone_failure_removes_temporary_snapshot(self):
        src = self.volume()
        self.driver.create_volume(src)
        self.host.fail['clone'] = "cannot create 'x': out of space"
        self.assertRaises(exception.ZfsOutOfSpace,
                          self.driver.create_cloned_volume, self.volume(),
                          src)
        self.assertEqual([], self.host.snapshots(
            self.driver.zfs.path(src.name)))

    def test_clone_is_constant_in_size(self):
        src = self.volume(1024)
        self.driver.create_volume(src)
        del self.host.calls[:]
        self.driver.create_cloned_volume(self.volume(1024), src)
        verbs = [c[1] for c in self.host.calls]
        self.assertEqual(['snapshot', 'clone', 'destroy'], verbs)


class DeleteTestCase(DriverTestBase):

    def test_missing_volume_is_deleted(self):
        self.driver.delete_volume(self.volume())
        self.assert_only_parent_left()

    def test_busy_volume(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.host.busy.add(self.driver.zfs.path(vol.name))
        self.assertRaises(cinder_exception.VolumeIsBusy,
                          self.driver.delete_volume, vol)
        self.assertIsNotNone(self.ds(vol.name))

    def test_foreign_dataset_never_touched(self):
        vol = self.volume()
        self.host._add(self.driver.zfs.path(vol.name), 'volume',
                       volsize=units.Gi)
        self.assertRaises(exception.NotOwned, self.driver.delete_volume, vol)
        self.assertIsNotNone(self.ds(vol.name))

    def test_missing_snapshot_is_deleted(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.driver.delete_snapshot(self.snapshot(vol))

    def test_deleted_source_hidden_from_stats(self):
        src = self.volume(4)
        self.driver.create_volume(src)
        clone = self.volume(1)
        self.driver.create_cloned_volume(clone, src)
        self.driver.delete_volume(src)
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual(1, stats['total_volumes'])
        self.assertEqual(4, stats['provisioned_capacity_gb'])
        hidden = [n for n in self.host.names()
                  if 'deleted-' in n and '@' not in n]
        self.assertEqual(1, len(hidden))


class ResizeRevertTestCase(DriverTestBase):

    def test_extend(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.driver.extend_volume(vol, 5)
        self.assertEqual(5 * units.Gi, self.ds(vol.name)['volsize'])
        self.target.refresh_size.assert_not_called()

    def test_extend_exported_volume_refreshes_target(self):
        vol = self.volume(1, provider_location='127.0.0.1:3260,1 iqn 1')
        self.driver.create_volume(vol)
        self.driver.extend_volume(vol, 2)
        self.target.refresh_size.assert_called_once_with(
            vol, '/dev/zvol/tank/cinder/' + vol.name)

    def test_extend_missing_volume(self):
        self.assertRaises(exception.ZfsNotFound, self.driver.extend_volume,
                          self.volume(), 2)

    def test_revert_simple_rollback(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.driver.revert_to_snapshot(self.ctxt, vol, snap)
        self.assertIn(['zfs', 'rollback', self.driver.zfs.path(
            vol.name, snap.name)], self.host.calls)
        self.assertFalse(self.driver.snapshot_revert_use_temp_snapshot())

    def test_revert_refuses_to_destroy_newer_cinder_snapshot(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        old, new = self.snapshot(vol), self.snapshot(vol)
        self.driver.create_snapshot(old)
        self.driver.create_snapshot(new)
        e = self.assertRaises(exception.ZfsHasDependents,
                              self.driver.revert_to_snapshot, self.ctxt, vol,
                              old)
        self.assertIn(new.name, str(e))
        self.assertIsNotNone(self.ds(vol.name, new.name))

    def test_revert_swap_failure_restores_volume(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.driver.create_cloned_volume(self.volume(), vol)
        self.host.fail['promote'] = "cannot promote: out of space"
        self.assertRaises(exception.ZfsOutOfSpace,
                          self.driver.revert_to_snapshot, self.ctxt, vol,
                          snap)
        self.assertIsNotNone(self.ds(vol.name, snap.name))
        self.assertEqual([], [n for n in self.host.names()
                              if 'deleted-' in n or 'reverting-' in n])


class SetupTestCase(DriverTestBase):

    def test_ok(self):
        self.driver.check_for_setup_error()

    def test_parent_missing(self):
        del self.host.datasets[PARENT]
        e = self.assertRaises(cinder_exception.VolumeBackendAPIException,
                              self.driver.check_for_setup_error)
        self.assertIn('zfs create tank/cinder', str(e))

    def test_parent_not_filesystem(self):
        self.host.datasets[PARENT]['type'] = 'volume'
        e = self.assertRaises(cinder_exception.VolumeBackendAPIException,
                              self.driver.check_for_setup_error)
        self.assertIn('not a filesystem', str(e))

    def test_zfs_not_installed(self):
        self.host.fail['get'] = 'sh: 1: zfs: not found'
        e = self.assertRaises(exception.ZfsError,
                              self.driver.check_for_setup_error)
        self.assertIn('zfsutils-linux', str(e))

    def test_credentials_required(self):
        self.set_conf(san_private_key='')
        self.assertRaises(cinder_exception.InvalidInput,
                          self.driver.check_for_setup_error)

    def test_unsafe_parent_refused(self):
        self.set_conf(zol_dataset='tank/../etc')
        self.assertRaises(exception.UnsafeName, self.driver.do_setup,
                          self.ctxt)


class StatsTestCase(DriverTestBase):

    def test_capacity(self):
        self.set_conf(max_over_subscription_ratio='20.0')
        self.set_conf(reserved_percentage=5)
        self.set_conf(san_thin_provision=False)
        self.driver.create_volume(self.volume(10))
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual(100, stats['total_capacity_gb'])
        self.assertEqual(90, stats['free_capacity_gb'])
        self.assertEqual(10, stats['provisioned_capacity_gb'])
        self.assertEqual(20.0, stats['max_over_subscription_ratio'])
        self.assertEqual(5, stats['reserved_percentage'])
        self.assertEqual('zol', stats['volume_backend_name'])
        self.assertEqual('iSCSI', stats['storage_protocol'])
        self.assertTrue(stats['thin_provisioning_support'])
        self.assertTrue(stats['online_extend_support'])
        self.assertEqual(driver_mod.ZFSonLinuxISCSIDriver.VERSION,
                         stats['driver_version'])
        # one remote call
        self.assertEqual(1, sum(1 for c in self.host.calls
                                if c[1] == 'list'))

    def test_cached_until_refresh(self):
        self.driver.get_volume_stats(refresh=True)
        calls = len(self.host.calls)
        self.driver.get_volume_stats()
        self.assertEqual(calls, len(self.host.calls))


class ExportDelegationTestCase(DriverTestBase):

    def test_delegates_with_zvol_device(self):
        vol = self.volume()
        connector = {'initiator': 'iqn.1993-08.org.debian:01:abc'}
        self.target.create_export.return_value = {'provider_location': 'x'}
        self.assertEqual({'provider_location': 'x'},
                         self.driver.create_export(self.ctxt, vol, connector))
        device = '/dev/zvol/tank/cinder/' + vol.name
        self.target.create_export.assert_called_once_with(vol, device)
        self.driver.ensure_export(self.ctxt, vol)
        self.target.ensure_export.assert_called_once_with(vol, device)
        self.driver.initialize_connection(vol, connector)
        self.target.initialize_connection.assert_called_once_with(
            vol, connector)
        self.driver.terminate_connection(vol, connector, force=True)
        self.target.terminate_connection.assert_called_once_with(
            vol, connector)
        self.driver.remove_export(self.ctxt, vol)
        self.target.remove_export.assert_called_once_with(vol)
