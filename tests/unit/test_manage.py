"""Manage, unmanage and retype, through the driver and the real agent."""

import ddt
from oslo_utils import units

from cinder import exception as cinder_exception

from cinder_zol import exception
from cinder_zol.host import errors as host_errors
from cinder_zol.host import grammar
from cinder_zol.host import props
from tests.unit import fake_zfs
from tests.unit import test_driver

GiB = units.Gi
MANAGED = props.MANAGED


@ddt.ddt
class ManageVolumeTestCase(test_driver.DriverTestBase):

    def foreign(self, name, size=GiB, **props):
        """A zvol someone made by hand under the parent."""
        return self.zfs._add(self.path(name), 'volume', volsize=size,
                             **props)

    def test_manage_renames_marks_and_keeps_data_identity(self):
        self.foreign('legacy-db', 3 * GiB)
        vol = self.volume(3)
        ref = {'source-name': 'legacy-db'}
        self.assertEqual(3, self.driver.manage_existing_get_size(vol, ref))

        self.assertIsNone(self.driver.manage_existing(vol, ref))

        self.assertIsNone(self.ds('legacy-db'))
        ds = self.ds(vol.name)
        self.assertEqual('yes', ds['props'][MANAGED])
        self.assertEqual(3 * GiB, ds['volsize'])
        # now an ordinary volume: snapshots, clones, delete
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)
        self.assert_only_parent_left()

    def test_partial_gib_is_rounded_up_by_growing(self):
        self.foreign('odd', GiB + 12345)
        vol = self.volume(2)
        ref = {'source-name': 'odd'}
        self.assertEqual(2, self.driver.manage_existing_get_size(vol, ref))
        self.driver.manage_existing(vol, ref)
        self.assertEqual(2 * GiB, self.ds(vol.name)['volsize'])
        self.assertEqual([], getattr(self.zfs, 'shrunk', []))

    @ddt.data({'source-name': '../other'},
              {'source-name': 'x; rm -rf /'},
              {'source-name': 'tank/cinder/x'},
              {'source-name': '-R'},
              {'source-name': ''},
              {'source-id': 'abc'},
              'legacy-db')
    def test_hostile_or_malformed_reference(self, ref):
        self.foreign('legacy-db')
        before = self.zfs.names()
        vol = self.volume(1)
        for call in (self.driver.manage_existing_get_size,
                     self.driver.manage_existing):
            self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                              call, vol, ref)
        self.assertEqual(before, self.zfs.names())
        self.assertEqual([], self.zfs.zfs_calls('rename'))

    def test_missing_zvol(self):
        e = self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                              self.driver.manage_existing_get_size,
                              self.volume(1), {'source-name': 'nope'})
        self.assertIn('no zvol nope', str(e))

    def unsafe(self):
        """{name: reason_not_safe} of get_manageable_volumes."""
        entries = self.driver.get_manageable_volumes(
            [], None, 1000, 0, ['reference'], ['asc'])
        return {e['reference']['source-name']: e['reason_not_safe']
                for e in entries}

    def test_what_is_not_safe_and_why(self):
        self.foreign('plain')
        self.foreign('with-clone')
        self.zfs.run(['zfs', 'snapshot', self.path('with-clone') + '@s'])
        self.zfs.run(['zfs', 'clone', self.path('with-clone') + '@s',
                      self.path('its-clone')])
        self.zfs._add(self.path('a-filesystem'), 'filesystem')
        cinder_vol = self.volume(1)
        self.driver.create_volume(cinder_vol)
        hidden_src = self.volume(1)
        self.driver.create_volume(hidden_src)
        clone = self.volume(1)
        self.driver.create_cloned_volume(clone, hidden_src)
        self.driver.delete_volume(hidden_src)       # hidden: deleted-...

        unsafe = self.unsafe()

        self.assertIsNone(unsafe['plain'])
        self.assertIn('has a clone', unsafe['with-clone'])
        self.assertIn('does not manage', unsafe['its-clone'])
        self.assertIn('already managed', unsafe[cinder_vol.name])
        self.assertNotIn('a-filesystem', unsafe)
        self.assertEqual([], [n for n in unsafe if n.startswith('deleted-')])
        for name in ('with-clone', 'its-clone', cinder_vol.name):
            self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                              self.driver.manage_existing, self.volume(1),
                              {'source-name': name})

    def test_manageable_volumes_name_their_cinder_ids(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        entries = self.driver.get_manageable_volumes(
            [vol], None, 1000, 0, ['reference'], ['asc'])
        self.assertEqual([{'reference': {'source-name': vol.name},
                           'size': 1, 'safe_to_manage': False,
                           'reason_not_safe': 'already managed',
                           'cinder_id': vol.id, 'extra_info': None}],
                         entries)

    def test_name_taken_refused_before_anything_changes(self):
        self.foreign('legacy')
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                          self.driver.manage_existing, vol,
                          {'source-name': 'legacy'})
        self.assertIsNotNone(self.ds('legacy'))
        self.assertNotIn(MANAGED, self.ds('legacy')['props'])

    def test_failed_marking_renames_back(self):
        self.foreign('legacy')
        vol = self.volume(1)
        self.zfs.fail['set'] = "cannot set property for 'x': permission denied"
        self.assertRaises(exception.HostOperationFailed,
                          self.driver.manage_existing, vol,
                          {'source-name': 'legacy'})
        self.assertIsNotNone(self.ds('legacy'))
        self.assertIsNone(self.ds(vol.name))

    def test_unmanage_leaves_data_and_drops_marker(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.driver.unmanage(vol)
        self.assertNotIn(MANAGED, self.ds(vol.name)['props'])
        # the driver no longer touches it
        self.assertRaises(exception.NotOwned, self.driver.delete_volume, vol)
        self.assertIsNotNone(self.ds(vol.name))
        # and it can be managed again
        self.assertIsNone(self.unsafe()[vol.name])


class ManageSnapshotTestCase(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.vol = self.volume(1)
        self.driver.create_volume(self.vol)
        self.zfs.run(['zfs', 'snapshot', self.path(self.vol.name) + '@mine'])

    def test_manage_snapshot_renames_it(self):
        snap = self.snapshot(self.vol)
        ref = {'source-name': 'mine'}
        self.assertEqual(
            1, self.driver.manage_existing_snapshot_get_size(snap, ref))
        self.driver.manage_existing_snapshot(snap, ref)
        self.assertIsNone(self.ds(self.vol.name, 'mine'))
        self.assertIsNotNone(self.ds(self.vol.name, snap.name))
        # then it is an ordinary snapshot
        clone = self.volume(1)
        self.driver.create_volume_from_snapshot(clone, snap)
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(clone)
        self.driver.delete_volume(self.vol)
        self.assert_only_parent_left()

    def test_listed_with_cinder_ids(self):
        snap = self.snapshot(self.vol)
        self.driver.create_snapshot(snap)
        entries = self.driver.get_manageable_snapshots(
            [snap], None, 1000, 0, ['reference'], ['asc'])
        by_name = {e['reference']['source-name']: e for e in entries}
        self.assertTrue(by_name['mine']['safe_to_manage'])
        self.assertEqual({'source-name': self.vol.name},
                         by_name['mine']['source_reference'])
        self.assertEqual(snap.id, by_name[snap.name]['cinder_id'])
        self.assertFalse(by_name[snap.name]['safe_to_manage'])

    def test_hostile_snapshot_references(self):
        snap = self.snapshot(self.vol)
        for ref in ({'source-name': 'mine@x'}, {'source-name': '../mine'},
                    {'source-name': 'nope'}, {}):
            self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                              self.driver.manage_existing_snapshot, snap, ref)
        self.assertIsNotNone(self.ds(self.vol.name, 'mine'))

    def test_snapshot_with_clone_refused(self):
        self.zfs.run(['zfs', 'clone', self.path(self.vol.name) + '@mine',
                      self.path('other')])
        self.assertRaises(cinder_exception.ManageExistingInvalidReference,
                          self.driver.manage_existing_snapshot,
                          self.snapshot(self.vol), {'source-name': 'mine'})


class RetypeTestCase(test_driver.DriverTestBase):

    def retype(self, vol, diff, host=None):
        vol.host = 'cv1@zol#zol'
        host = host or {'host': 'cv1@zol#zol'}
        return self.driver.retype(self.ctxt, vol, {'extra_specs': {}},
                                  {'extra_specs': diff}, host)

    def test_properties_changed_and_dropped_in_place(self):
        vol = self.typed_volume(1, **{'zfs:compression': 'lz4',
                                      'zfs:logbias': 'throughput'})
        self.driver.create_volume(vol)
        result = self.retype(vol, {'zfs:compression': ('lz4', 'gzip'),
                                   'zfs:logbias': ('throughput', None),
                                   'zfs:sync': (None, 'always')})
        self.assertEqual((True, None), result)
        props = self.ds(vol.name)['props']
        self.assertEqual('gzip', props['compression'])
        self.assertEqual('always', props['sync'])
        self.assertNotIn('logbias', props)

    def test_dropped_property_gets_the_backend_default(self):
        # as a new volume of the new type would, not the parent's value
        self.set_conf(zol_zvol_properties={'compression': 'lz4'},
                      zol_volblocksize='16K')
        vol = self.typed_volume(**{'zfs:compression': 'gzip',
                                   'zfs:logbias': 'throughput',
                                   'zfs:volblocksize': '16K'})
        self.driver.create_volume(vol)
        self.assertEqual((True, None), self.retype(
            vol, {'zfs:compression': ('gzip', None),
                  'zfs:logbias': ('throughput', None),
                  'zfs:volblocksize': ('16K', None)}))
        props = self.ds(vol.name)['props']
        self.assertEqual('lz4', props['compression'])
        self.assertNotIn('logbias', props)   # no default: inherited
        self.assertEqual('16K', props['volblocksize'])
        new = self.volume(1)
        self.driver.create_volume(new)
        self.assertEqual(self.ds(new.name)['props'], props)

    def test_dropped_volblocksize_unlike_the_default_needs_migration(self):
        self.set_conf(zol_volblocksize='16K')
        vol = self.typed_volume(**{'zfs:volblocksize': '64K'})
        self.driver.create_volume(vol)
        self.assertEqual((False, None), self.retype(
            vol, {'zfs:volblocksize': ('64K', None)}))
        self.assertEqual('64K', self.ds(vol.name)['props']['volblocksize'])

    def test_thin_to_thick_and_back(self):
        vol = self.volume(2)
        self.driver.create_volume(vol)
        self.assertEqual(0, self.ds(vol.name)['refreservation'])
        self.assertEqual((True, None), self.retype(
            vol, {'provisioning:type': ('thin', 'thick')}))
        self.assertEqual(2 * GiB, self.ds(vol.name)['refreservation'])
        self.assertEqual((True, None), self.retype(
            vol, {'provisioning:type': ('thick', 'thin')}))
        self.assertEqual(0, self.ds(vol.name)['refreservation'])

    def test_thick_without_space_fails_clearly(self):
        vol = self.volume(2)
        self.driver.create_volume(vol)
        self.zfs.free = GiB
        e = self.assertRaises(exception.ZfsOutOfSpace, self.retype, vol,
                              {'provisioning:type': ('thin', 'thick')})
        self.assertIn('greater than available space', str(e))
        self.assertEqual(0, self.ds(vol.name)['refreservation'])

    def test_volblocksize_and_other_backend_need_migration(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.assertEqual((False, None), self.retype(
            vol, {'zfs:volblocksize': ('16K', '64K')}))
        self.assertEqual((False, None), self.retype(
            vol, {'zfs:compression': (None, 'lz4')},
            host={'host': 'other@backend#pool'}))
        self.assertNotIn('compression', self.ds(vol.name)['props'])

    def test_unknown_property_refused_by_the_host(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.assertRaises(exception.HostOperationFailed, self.retype, vol,
                          {'zfs:mountpoint': (None, '/etc')})
        self.assertNotIn('mountpoint', self.ds(vol.name)['props'])

    def test_nothing_zfs_changes_nothing(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        del self.runner.requests[:]
        self.assertEqual((True, None), self.retype(
            vol, {'volume_backend_name': ('zol', 'zol')}))
        self.assertEqual([], self.runner.ops())


class FakeZfsRefreservationTestCase(test_driver.DriverTestBase):
    """The fake's refreservation=auto accounting the retype tests rely on."""

    def test_auto_takes_volsize_from_free(self):
        zfs = fake_zfs.FakeZfsHost()
        zfs._add('tank/cinder/v', 'volume', volsize=GiB)
        free = zfs.free
        zfs.run(['zfs', 'set', 'refreservation=auto', 'tank/cinder/v'])
        self.assertEqual(free - GiB, zfs.free)


class GrammarTestCase(test_driver.DriverTestBase):
    """What manage and retype added to the zfs grammar, and no more."""

    def check(self, *argv):
        return grammar.check_zfs(['zfs'] + list(argv), ['tank/cinder'])

    def test_snapshot_rename_only_within_its_zvol(self):
        self.check('rename', 'tank/cinder/v@a', 'tank/cinder/v@b')
        for new in ('tank/cinder/w@b', 'tank/other@b', 'tank/cinder/w'):
            self.assertRaises(host_errors.Refused, self.check, 'rename',
                              'tank/cinder/v@a', new)

    def test_inherit_only_what_a_volume_type_may_set(self):
        self.check('inherit', 'compression', 'tank/cinder/v')
        for prop in ('volsize', 'refreservation', 'volblocksize',
                     'mountpoint', 'readonly'):
            self.assertRaises(host_errors.Refused, self.check, 'inherit',
                              prop, 'tank/cinder/v')
        self.assertRaises(host_errors.Refused, self.check, 'inherit',
                          'compression', 'tank/cinder')
