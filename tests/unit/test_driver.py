"""The driver against an in-process storage host: Cinder semantics, one
request per operation, error paths."""

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
from cinder_zol.host import props
from cinder_zol.host import wire
from cinder_zol.host import zfs
from cinder_zol import options
from tests import scenarios
from tests.unit import fake_zfs
from tests.unit import host_fixture

PARENT = host_fixture.PARENT
INITIATOR = 'iqn.1993-08.org.debian:01:compute1'

# Methods Cinder's interface check does not enforce (it accepts any class),
# so we check them ourselves: each must be defined by our class, not
# inherited from BaseVD/SanDriver no-ops.
REQUIRED = ('do_setup', 'check_for_setup_error', 'get_volume_stats',
            'create_volume', 'delete_volume', 'create_snapshot',
            'delete_snapshot', 'create_volume_from_snapshot',
            'create_cloned_volume', 'extend_volume', 'revert_to_snapshot',
            'create_export', 'ensure_export', 'remove_export',
            'initialize_connection', 'terminate_connection',
            'get_driver_options', 'snapshot_revert_use_temp_snapshot',
            'update_migrated_volume', 'validate_connector')


class DriverTestBase(test.TestCase):

    def setUp(self):
        super().setUp()
        self.ctxt = context.get_admin_context()
        self.configuration = conf.Configuration(options.ALL_OPTS,
                                                config_group='zol')
        self.zfs = fake_zfs.FakeZfsHost(PARENT)
        self.host = host_fixture.make_host(self.zfs)
        self.backend = host_fixture.RecordingTargetBackend()
        self.host.target_backends['tgtadm'] = self.backend
        self.runner = host_fixture.InProcessRunner(self.host)
        self.mock_object(driver_mod.runner_mod, 'from_configuration',
                         return_value=self.runner)
        self.driver = driver_mod.ZFSonLinuxISCSIDriver(
            configuration=self.configuration)
        self.set_conf(zol_dataset=PARENT, san_ip='192.0.2.10',
                      san_login='cinder-zol',
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

    def path(self, name, snapshot=None):
        return PARENT + '/' + name + ('@' + snapshot if snapshot else '')

    def ds(self, name, snapshot=None):
        return self.zfs.datasets.get(self.path(name, snapshot))

    def assert_only_parent_left(self):
        self.assertEqual(['tank', PARENT], self.zfs.names())

    def requests_during(self, func, *args):
        """The host operations one driver call sent."""
        del self.runner.requests[:]
        func(*args)
        return self.runner.ops()


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
        self.assertEqual([], getattr(self.zfs, 'shrunk', []))


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
        self.assertEqual(['create'], self.requests_during(
            self.driver.create_volume, vol))
        ds = self.ds(vol.name)
        self.assertEqual(2 * units.Gi, ds['volsize'])
        self.assertEqual(0, ds['refreservation'])
        self.assertIn('-s', self.zfs.calls[-1])
        self.assertEqual('yes', ds['props'][props.MANAGED])

    def test_thick_from_san_thin_provision(self):
        self.set_conf(san_thin_provision=False)
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.assertNotIn('-s', self.zfs.calls[-1])
        self.assertEqual(units.Gi, self.ds(vol.name)['refreservation'])

    @ddt.data(('thick', False), ('thin', True))
    @ddt.unpack
    def test_provisioning_type_extra_spec(self, kind, sparse):
        self.set_conf(san_thin_provision=not sparse)
        vol = self.typed_volume(**{'provisioning:type': kind})
        self.driver.create_volume(vol)
        self.assertEqual(sparse, '-s' in self.zfs.calls[-1])

    def test_property_precedence(self):
        """zol_zvol_properties < zol_volblocksize < the type's zfs:*."""
        self.set_conf(zol_zvol_properties={'compression': 'lz4',
                                           'logbias': 'latency',
                                           'volblocksize': '8K'})
        self.set_conf(zol_volblocksize='16K')
        vol = self.typed_volume(**{'zfs:logbias': 'throughput'})
        self.driver.create_volume(vol)
        self.assertEqual({'compression': 'lz4', 'logbias': 'throughput',
                          'volblocksize': '16K', props.MANAGED: 'yes',
                          'volmode': 'dev'},
                         self.ds(vol.name)['props'])
        typed = self.typed_volume(**{'zfs:volblocksize': '64K'})
        self.driver.create_volume(typed)
        self.assertEqual('64K', self.ds(typed.name)['props']['volblocksize'])

    def test_unknown_zfs_property_is_refused_by_the_host(self):
        vol = self.typed_volume(**{'zfs:bogus': 'on'})
        e = self.assertRaises(exception.HostRefused,
                              self.driver.create_volume, vol)
        self.assertIn('bogus', str(e))
        self.assertEqual([], self.zfs.calls)
        self.assert_only_parent_left()

    @ddt.data(('zfs:refreservation', 'none', 'provisioning:type'),
              ('zfs:volsize', '1', 'size is the volume'),
              ('zfs:cinder_zol:managed', 'no', 'ownership'))
    @ddt.unpack
    def test_driver_own_property_is_refused(self, spec, value, hint):
        """A type cannot make a thick volume thin behind provisioning:type."""
        self.set_conf(san_thin_provision=False)
        vol = self.typed_volume(**{spec: value})
        e = self.assertRaises(exception.HostRefused,
                              self.driver.create_volume, vol)
        self.assertIn(hint, str(e))
        self.assertEqual([], self.zfs.calls)
        self.assert_only_parent_left()

    def test_property_zfs_rejects_is_reported(self):
        vol = self.typed_volume(**{'zfs:compression': 'nonsense'})
        self.zfs.fail['create'] = ("cannot create 'tank/cinder/x': 'compress"
                                   "ion' must be one of 'on | off | lz4'")
        e = self.assertRaises(exception.ZfsInvalid,
                              self.driver.create_volume, vol)
        self.assertIn('must be one of', str(e))
        self.assertIn('zfs:<property>', str(e))

    @ddt.data('lz4;reboot', 'a b', '$(id)', '-o')
    def test_unsafe_property_value_refused(self, value):
        vol = self.typed_volume(**{'zfs:compression': value})
        self.assertRaises(exception.HostRefused, self.driver.create_volume,
                          vol)
        self.assertEqual([], self.zfs.calls)

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

    def test_clone_drops_volblocksize(self):
        self.set_conf(zol_volblocksize='16K')
        src = self.volume()
        self.driver.create_volume(src)
        clone = self.volume()
        self.driver.create_cloned_volume(clone, src)
        self.assertEqual('16K', self.ds(clone.name)['props']['volblocksize'])
        clone_argv = self.zfs.zfs_calls('clone')[-1]
        self.assertNotIn('volblocksize=16K', clone_argv)

    def snapshotted(self, size):
        """A volume of ``size`` GiB with one snapshot: (volume, snapshot)."""
        src = self.volume(size)
        self.driver.create_volume(src)
        snap = self.snapshot(src)
        self.driver.create_snapshot(snap)
        return src, snap

    def test_from_snapshot_grows_larger_volume(self):
        src, snap = self.snapshotted(1)
        vol = self.volume(3)
        self.assertEqual(['clone-snapshot'], self.requests_during(
            self.driver.create_volume_from_snapshot, vol, snap))
        self.assertEqual(3 * units.Gi, self.ds(vol.name)['volsize'])
        self.assertEqual(self.path(src.name, snap.name),
                         self.ds(vol.name)['origin'])

    def test_from_snapshot_is_one_read_and_one_zfs_clone(self):
        """The source's ownership read, then the clone made at its size."""
        src, snap = self.snapshotted(1)
        del self.zfs.calls[:]
        vol = self.volume(2)
        self.driver.create_volume_from_snapshot(vol, snap)
        calls = self.zfs.zfs_calls()
        self.assertEqual(['list', 'clone'], [c[0] for c in calls], calls)
        self.assertIn('volsize=%d' % (2 * units.Gi), calls[1])

    def test_from_snapshot_thick_reserves_its_size(self):
        self.set_conf(san_thin_provision=False)
        src, snap = self.snapshotted(1)
        vol = self.volume(2)
        self.driver.create_volume_from_snapshot(vol, snap)
        self.assertEqual(2 * units.Gi, self.ds(vol.name)['volsize'])
        self.assertEqual(2 * units.Gi, self.ds(vol.name)['refreservation'])

    def test_from_snapshot_out_of_space_leaves_nothing(self):
        src, snap = self.snapshotted(1)
        vol = self.volume(3)
        self.zfs.fail['clone'] = "cannot create 'x': out of space"
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_volume_from_snapshot, vol,
                              snap)
        self.assertIn('out of space', str(e))
        self.assertIsNone(self.ds(vol.name))

    def test_from_snapshot_never_smaller_than_the_snapshot(self):
        src, snap = self.snapshotted(2)
        vol = self.volume(1)
        e = self.assertRaises(exception.ZfsInvalid,
                              self.driver.create_volume_from_snapshot, vol,
                              snap)
        self.assertIn('refusing to make', str(e))
        self.assertIsNone(self.ds(vol.name))
        self.assertEqual([], self.zfs.zfs_calls('clone'))

    def test_from_missing_snapshot(self):
        src = self.volume(1)
        self.driver.create_volume(src)
        e = self.assertRaises(exception.ZfsNotFound,
                              self.driver.create_volume_from_snapshot,
                              self.volume(), self.snapshot(src))
        self.assertIn('does not exist', str(e))
        self.assertIn('clone', str(e))

    def test_clone_failure_removes_temporary_snapshot(self):
        src = self.volume()
        self.driver.create_volume(src)
        self.zfs.fail['clone'] = "cannot create 'x': out of space"
        self.assertRaises(exception.ZfsOutOfSpace,
                          self.driver.create_cloned_volume, self.volume(),
                          src)
        self.assertEqual([], self.zfs.snapshots(self.path(src.name)))

    def test_clone_is_constant_in_size(self):
        src = self.volume(1024)
        self.driver.create_volume(src)
        del self.zfs.calls[:]
        self.assertEqual(['clone'], self.requests_during(
            self.driver.create_cloned_volume, self.volume(1024), src))
        verbs = [c[1] for c in self.zfs.calls]
        self.assertEqual(['list', 'snapshot', 'clone', 'destroy'], verbs)

    def test_clone_never_shrinks(self):
        src = self.volume(2)
        self.driver.create_volume(src)
        e = self.assertRaises(exception.ZfsInvalid,
                              self.driver.create_cloned_volume,
                              self.volume(1), src)
        self.assertIn('refusing to shrink', str(e))
        self.assertEqual([], getattr(self.zfs, 'shrunk', []))


class DeleteTestCase(DriverTestBase):

    def test_one_request(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.assertEqual(['delete'], self.requests_during(
            self.driver.delete_volume, vol))
        self.assert_only_parent_left()

    def test_missing_volume_is_deleted(self):
        self.driver.delete_volume(self.volume())
        self.assert_only_parent_left()

    def test_busy_volume(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.zfs.busy.add(self.path(vol.name))
        with mock.patch.object(zfs, 'BUSY_WAIT', 0.3):
            self.assertRaises(cinder_exception.VolumeIsBusy,
                              self.driver.delete_volume, vol)
        # it looked for a leftover export (none) before giving up
        self.assertEqual(['remove'], [c[0] for c in self.backend.calls])
        self.assertIsNotNone(self.ds(vol.name))

    def test_leftover_export_released_by_delete(self):
        # an export whose request was lost completed on the host anyway:
        # no provider_location, so Cinder never calls remove_export for it
        vol = self.volume()
        self.driver.create_volume(vol)
        connector = {'initiator': INITIATOR, 'host': 'compute1'}
        self.driver.create_export(self.ctxt, vol, connector)
        vol.provider_location = vol.provider_auth = None
        self.driver.remove_export(self.ctxt, vol)      # a no-op
        self.zfs.busy.add(self.path(vol.name))         # the target holds it
        real_remove = self.backend.remove

        def remove(name, iqn):
            self.zfs.busy.discard(self.path(vol.name))
            return real_remove(name, iqn)
        self.backend.remove = remove
        with mock.patch.object(zfs, 'BUSY_WAIT', 0.3):
            self.driver.delete_volume(vol)
        self.assert_only_parent_left()
        self.assertEqual({}, self.backend.exports)

    def test_hiding_a_source_skips_snapshots_already_deferred(self):
        # the clone's own snapshot was deferred-destroyed when it was made:
        # hiding the source is a list and a rename, no destroy
        src = self.volume()
        self.driver.create_volume(src)
        clone = self.volume()
        self.driver.create_cloned_volume(clone, src)
        del self.zfs.calls[:]
        self.driver.delete_volume(src)
        self.assertEqual(['list', 'rename'],
                         [c[0] for c in self.zfs.zfs_calls()])
        self.driver.delete_volume(clone)
        self.assert_only_parent_left()

    def test_busy_for_a_moment_is_retried(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.zfs.busy.add(self.path(vol.name))
        tries = []

        def release(argv):
            if argv[1] == 'destroy':
                tries.append(argv)
                if len(tries) == 3:
                    self.zfs.busy.clear()
        self.zfs.before = release
        self.driver.delete_volume(vol)
        self.assert_only_parent_left()
        self.assertEqual(3, len(tries))

    def test_foreign_dataset_never_touched(self):
        vol = self.volume()
        self.zfs._add(self.path(vol.name), 'volume', volsize=units.Gi)
        e = self.assertRaises(exception.NotOwned, self.driver.delete_volume,
                              vol)
        self.assertIn('cinder_zol:managed', str(e))
        self.assertIsNotNone(self.ds(vol.name))

    def test_missing_snapshot_is_deleted(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        self.driver.delete_snapshot(self.snapshot(vol))

    def test_hidden_source_keeps_data_for_clone(self):
        src = self.volume(4)
        self.driver.create_volume(src)
        clone = self.volume(4)
        self.driver.create_cloned_volume(clone, src)
        self.driver.delete_volume(src)
        hidden = [n for n in self.zfs.names()
                  if 'deleted-' in n and '@' not in n]
        self.assertEqual(1, len(hidden))
        self.driver.delete_volume(clone)
        self.assert_only_parent_left()


class ResizeRevertTestCase(DriverTestBase):

    def test_extend(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.assertEqual(['extend'], self.requests_during(
            self.driver.extend_volume, vol, 5))
        self.assertEqual(5 * units.Gi, self.ds(vol.name)['volsize'])

    def test_extend_exported_volume_resizes_target(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        vol.update(self.driver.create_export(self.ctxt, vol,
                                             {'initiator': INITIATOR}))
        self.assertEqual(['extend', 'target-resize'], self.requests_during(
            self.driver.extend_volume, vol, 2))
        self.assertIn(('resize', vol.name), self.backend.calls)

    def test_extend_missing_volume(self):
        self.assertRaises(exception.ZfsNotFound, self.driver.extend_volume,
                          self.volume(), 2)

    def test_revert_simple_rollback(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.assertEqual(['revert'], self.requests_during(
            self.driver.revert_to_snapshot, self.ctxt, vol, snap))
        self.assertIn(['rollback', self.path(vol.name, snap.name)],
                      self.zfs.zfs_calls('rollback'))
        self.assertFalse(self.driver.snapshot_revert_use_temp_snapshot())

    def test_revert_after_extend_grows_back(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.driver.extend_volume(vol, 3)
        vol.size = 3
        self.driver.revert_to_snapshot(self.ctxt, vol, snap)
        self.assertEqual(3 * units.Gi, self.ds(vol.name)['volsize'])

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
        self.zfs.fail['promote'] = "cannot promote: out of space"
        self.assertRaises(exception.ZfsOutOfSpace,
                          self.driver.revert_to_snapshot, self.ctxt, vol,
                          snap)
        self.assertIsNotNone(self.ds(vol.name, snap.name))
        self.assertEqual([], [n for n in self.zfs.names()
                              if 'deleted-' in n or 'reverting-' in n])


class MigrationTestCase(DriverTestBase):

    def _migrated(self, status):
        original = self.volume(1)
        new = self.volume(1)
        self.driver.create_volume(new)
        new.update(self.driver.create_export(self.ctxt, new,
                                             {'initiator': INITIATOR}))
        return original, new, self.driver.update_migrated_volume(
            self.ctxt, original, new, status)

    def test_available_volume_gets_its_name_back(self):
        original, new, update = self._migrated('available')
        self.assertEqual({'_name_id': None, 'provider_location': None,
                          'provider_auth': None}, update)
        self.assertIsNotNone(self.ds('volume-%s' % original.id))
        self.assertIsNone(self.ds(new.name))

    def test_in_use_volume_keeps_export_and_chap(self):
        original, new, update = self._migrated('in-use')
        self.assertEqual(new.id, update['_name_id'])
        self.assertEqual(new.provider_location, update['provider_location'])
        self.assertEqual(new.provider_auth, update['provider_auth'])
        self.assertTrue(update['provider_auth'].startswith('CHAP '))

    def test_original_name_taken(self):
        original = self.volume(1)
        self.driver.create_volume(original)
        new = self.volume(1)
        self.driver.create_volume(new)
        update = self.driver.update_migrated_volume(self.ctxt, original, new,
                                                    'available')
        self.assertEqual(new.id, update['_name_id'])
        self.assertIsNotNone(self.ds(new.name))


@ddt.ddt
class SetupTestCase(DriverTestBase):

    def test_ok(self):
        self.driver.check_for_setup_error()
        self.assertIn('sweep', self.runner.ops())

    def test_protocol_mismatch(self):
        with mock.patch.object(self.driver.storage, 'version',
                               return_value={'protocol': wire.PROTOCOL + 1}):
            e = self.assertRaises(
                cinder_exception.VolumeBackendAPIException,
                self.driver.check_for_setup_error)
        self.assertIn('setup-storage-host.sh', str(e))

    @ddt.data(({'refreservation': 'none'}, None, 'provisioning:type'),
              ({'mountpoint': '/x'}, None, 'mountpoint'),
              ({}, '16K;id', 'not allowed'))
    @ddt.unpack
    def test_backend_properties_checked_at_start(self, defaults, vbs, why):
        self.set_conf(zol_zvol_properties=defaults, zol_volblocksize=vbs)
        e = self.assertRaises(cinder_exception.VolumeBackendAPIException,
                              self.driver.check_for_setup_error)
        self.assertIn(why, str(e))
        self.assertIn('backend section', str(e))

    def test_parent_missing(self):
        del self.zfs.datasets[PARENT]
        e = self.assertRaises(cinder_exception.VolumeBackendAPIException,
                              self.driver.check_for_setup_error)
        self.assertIn('zfs create tank/cinder', str(e))

    def test_parent_not_filesystem(self):
        self.zfs.datasets[PARENT]['type'] = 'volume'
        e = self.assertRaises(cinder_exception.VolumeBackendAPIException,
                              self.driver.check_for_setup_error)
        self.assertIn('not a filesystem', str(e))

    def test_parent_volmode_other_than_dev_is_warned(self):
        with mock.patch.object(driver_mod.LOG, "warning") as warning:
            self.driver.check_for_setup_error()
            warning.assert_not_called()
            del self.zfs.datasets[PARENT]['props']['volmode']
            self.driver.check_for_setup_error()
        message = warning.call_args[0][0] % warning.call_args[0][1]
        self.assertIn('volmode=default', message)
        self.assertIn('zfs set volmode=dev tank/cinder', message)

    def test_parent_not_configured_on_host(self):
        self.set_conf(zol_dataset='tank/other')
        self.driver.do_setup(self.ctxt)
        e = self.assertRaises(exception.HostRefused,
                              self.driver.check_for_setup_error)
        self.assertIn('host.conf', str(e))

    def test_zfs_not_installed(self):
        del self.host.executor.tools['zfs']
        e = self.assertRaises(exception.HostSetupError,
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

    def test_bad_secondary_portal_refused_at_setup(self):
        self.set_conf(target_secondary_ip_addresses=['192.0.2.11:99999'])
        e = self.assertRaises(cinder_exception.InvalidConfigurationValue,
                              self.driver.do_setup, self.ctxt)
        self.assertIn("'192.0.2.11:99999'", str(e))
        self.assertIn('ADDRESS:PORT', str(e))

    def test_shared_chap_options_ignored_with_a_warning(self):
        self.set_conf(chap_username='shared', chap_password='sharedsecret1')
        with mock.patch.object(driver_mod.LOG, 'warning') as warn:
            self.driver.do_setup(self.ctxt)
        self.assertIn('ignored', warn.call_args[0][0])


class StatsTestCase(DriverTestBase):

    def test_capacity(self):
        self.set_conf(max_over_subscription_ratio='20.0')
        self.set_conf(reserved_percentage=5)
        self.set_conf(san_thin_provision=False)
        self.driver.create_volume(self.volume(10))
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual(100, stats['total_capacity_gb'])
        self.assertEqual(90, stats['free_capacity_gb'])
        self.assertNotIn('provisioned_capacity_gb', stats)
        self.assertEqual(20.0, stats['max_over_subscription_ratio'])
        self.assertEqual(5, stats['reserved_percentage'])
        self.assertEqual('zol', stats['volume_backend_name'])
        self.assertEqual('iSCSI', stats['storage_protocol'])
        self.assertTrue(stats['thin_provisioning_support'])
        self.assertTrue(stats['online_extend_support'])
        self.assertTrue(stats['multiattach'])
        self.assertEqual(driver_mod.ZFSonLinuxISCSIDriver.VERSION,
                         stats['driver_version'])

    def test_protocol_is_the_targets(self):
        self.set_conf(zol_target_helper='nvmet', target_protocol='nvmet_tcp')
        self.driver.do_setup(self.ctxt)
        stats = self.driver.get_volume_stats(refresh=True)
        self.assertEqual('NVMe-TCP', stats['storage_protocol'])

    def test_independent_of_the_number_of_volumes(self):
        for _ in range(20):
            self.driver.create_volume(self.volume())
        # as Cinder does first: this boot's sweep is then done
        self.driver.check_for_setup_error()
        del self.zfs.calls[:]
        self.assertEqual(['stats'], self.requests_during(
            self.driver.get_volume_stats, True))
        self.assertEqual([['get', '-H', '-p', '-o', 'value',
                           'used,available', PARENT]], self.zfs.zfs_calls())

    def test_cached_until_refresh(self):
        self.driver.get_volume_stats(refresh=True)
        self.assertEqual([], self.requests_during(
            self.driver.get_volume_stats))


class StartUpSweepTestCase(DriverTestBase):
    """Garbage collection never keeps the backend from starting."""

    def test_stuck_leftover(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        hidden = 'deleted-%s-0001' % vol.name
        self.zfs._zfs_rename([self.path(vol.name), self.path(hidden)])
        self.zfs.busy.add(self.path(hidden))     # e.g. a leftover export
        with mock.patch.object(zfs.ZfsHost.destroy, '__defaults__', (0,)), \
                mock.patch.object(driver_mod.storage.LOG, 'info') as info:
            self.driver.check_for_setup_error()
        self.assertIsNotNone(self.ds(hidden))
        logged = str(info.call_args_list)
        self.assertIn(self.path(hidden), logged)
        self.assertIn('is busy', logged)

    def test_sweep_request_fails(self):
        with mock.patch.object(
                self.driver.storage, 'sweep',
                side_effect=exception.HostTimeout(what='lock held')), \
                mock.patch.object(driver_mod.LOG, 'warning') as warn:
            self.driver.check_for_setup_error()
        self.assertIn('lock held', str(warn.call_args))


class RevertCrashTestCase(DriverTestBase):
    """A storage-host power loss between the renames of a swap-revert.

    cinder-volume keeps running, the user deletes what Cinder shows, and
    cinder-volume restarts much later: nothing deleted comes back.
    """

    def test_nothing_deleted_comes_back(self):
        vol = self.volume()
        self.driver.create_volume(vol)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        clone = self.volume()
        self.driver.create_cloned_volume(clone, vol)

        class PowerLoss(Exception):
            pass

        def power_loss(argv):
            if argv[1:3] == ['rename', self.path('reverting-' + vol.name)]:
                raise PowerLoss()
        self.zfs.before = power_loss
        self.assertRaises(PowerLoss, self.driver.revert_to_snapshot,
                          self.ctxt, vol, snap)
        self.zfs.before = None
        self.assertIsNone(self.ds(vol.name))
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)
        self.driver.delete_volume(clone)
        self.driver.check_for_setup_error()     # cinder-volume restarts
        self.assert_only_parent_left()
