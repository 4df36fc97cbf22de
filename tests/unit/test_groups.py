"""Generic volume groups: consistent group snapshots, groups of clones,
their grammar on the storage host, and Cinder's manager around them."""

from unittest import mock

import ddt
from oslo_utils import units

from cinder.db import api as db
from cinder import exception as cinder_exception
from cinder import objects
from cinder.objects import fields
from cinder.tests.unit import utils as cinder_utils
from cinder.volume import group_types
from cinder.volume import manager
from cinder.volume import volume_types

from cinder_zol import exception
from cinder_zol.host import errors
from cinder_zol.host import grammar
from cinder_zol.host import wire
from cinder_zol.host import zfs
from tests.unit import host_fixture
from tests.unit import test_driver

PARENT = host_fixture.PARENT
CG_SPECS = {'consistent_group_snapshot_enabled': '<is> True'}


class GroupTestBase(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.vtype = volume_types.create(self.ctxt, 'zol', {})
        self.cg_type = group_types.create(self.ctxt, 'cg', CG_SPECS)
        self.plain_type = group_types.create(self.ctxt, 'plain', {})

    def group(self, gtype=None, count=0, size=1, **kwargs):
        """A group in Cinder's database and its zvols on the host."""
        group = cinder_utils.create_group(
            self.ctxt, group_type_id=(gtype or self.cg_type)['id'],
            volume_type_ids=[self.vtype['id']], **kwargs)
        volumes = [self.group_volume(group, size) for _ in range(count)]
        return group, volumes

    def group_volume(self, group, size=1, create=True, **kwargs):
        kwargs.setdefault('volume_type_id', self.vtype['id'])
        vol = cinder_utils.create_volume(self.ctxt, size=size,
                                         group_id=group.id, **kwargs)
        if create:
            self.driver.create_volume(vol)
        return vol

    def group_snapshot(self, group, volumes):
        gsnap = cinder_utils.create_group_snapshot(
            self.ctxt, group.id, group_type_id=group.group_type_id)
        snaps = [cinder_utils.create_snapshot(
            self.ctxt, v.id, group_snapshot_id=gsnap.id) for v in volumes]
        return gsnap, snaps

    def txgs(self, snaps):
        return {self.ds(s.volume_name, s.name)['createtxg'] for s in snaps}


@ddt.ddt
class GroupSnapshotTestCase(GroupTestBase):

    def test_stats_announce_consistent_group_snapshots(self):
        self.assertIs(True, self.driver.get_volume_stats(True)[
            'consistent_group_snapshot_enabled'])

    def test_one_zfs_command_one_instant(self):
        group, vols = self.group(count=3)
        gsnap, snaps = self.group_snapshot(group, vols)
        del self.zfs.calls[:]

        self.assertEqual(['group-snapshot'], self.requests_during(
            self.driver.create_group_snapshot, self.ctxt, gsnap, snaps))

        snapshot_calls = self.zfs.zfs_calls('snapshot')
        self.assertEqual([['snapshot'] + sorted(
            self.path(s.volume_name, s.name) for s in snaps)],
            [c[:1] + sorted(c[1:]) for c in snapshot_calls])
        self.assertEqual(1, len(self.txgs(snaps)))

    def test_model_update_is_what_the_manager_expects(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        model, snap_updates = self.driver.create_group_snapshot(
            self.ctxt, gsnap, snaps)
        self.assertEqual({'status': fields.GroupSnapshotStatus.AVAILABLE},
                         model)
        self.assertEqual(sorted([{'id': s.id, 'status': 'available'}
                                 for s in snaps], key=lambda u: u['id']),
                         sorted(snap_updates, key=lambda u: u['id']))

    def test_missing_volume_fails_and_creates_nothing(self):
        group, vols = self.group(count=3)
        gsnap, snaps = self.group_snapshot(group, vols)
        # removed behind Cinder's back
        self.zfs.run(['zfs', 'destroy', self.path(vols[1].name)])
        before = self.zfs.names()
        e = self.assertRaises(exception.ZfsNotFound,
                              self.driver.create_group_snapshot, self.ctxt,
                              gsnap, snaps)
        self.assertIn(vols[1].name, str(e))
        self.assertIn('missing on the storage host', str(e))
        self.assertEqual(before, self.zfs.names())
        self.assertEqual([], self.zfs.zfs_calls('snapshot'))

    def test_zfs_failure_is_all_or_nothing(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        before = self.zfs.names()
        self.zfs.fail['snapshot'] = ("cannot create snapshots : out of "
                                     "space")
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_group_snapshot, self.ctxt,
                              gsnap, snaps)
        self.assertIn('out of space', str(e))
        self.assertEqual(before, self.zfs.names())

    def test_foreign_zvol_is_refused(self):
        group, vols = self.group(count=1)
        foreign = self.group_volume(group, create=False)
        self.zfs._add(self.path(foreign.name), 'volume', volsize=units.Gi)
        gsnap, snaps = self.group_snapshot(group, vols + [foreign])
        before = self.zfs.names()
        self.assertRaises(exception.NotOwned,
                          self.driver.create_group_snapshot, self.ctxt,
                          gsnap, snaps)
        self.assertEqual(before, self.zfs.names())

    def test_more_volumes_than_one_command_takes(self):
        group, vols = self.group(count=1)
        gsnap, snaps = self.group_snapshot(group, vols)
        del self.runner.requests[:]
        e = self.assertRaises(
            cinder_exception.InvalidGroup, self.driver.create_group_snapshot,
            self.ctxt, gsnap, snaps * (wire.MAX_SNAPSHOTS + 1))
        self.assertIn('at most %d' % wire.MAX_SNAPSHOTS, str(e))
        self.assertEqual([], self.runner.requests)

    def test_other_group_types_take_cinders_generic_path(self):
        group, vols = self.group(self.plain_type, count=1)
        gsnap, snaps = self.group_snapshot(group, vols)
        del self.runner.requests[:]
        for call, args in (
                (self.driver.create_group, (group,)),
                (self.driver.update_group, (group, vols, [])),
                (self.driver.delete_group, (group, vols)),
                (self.driver.create_group_snapshot, (gsnap, snaps)),
                (self.driver.delete_group_snapshot, (gsnap, snaps)),
                (self.driver.create_group_from_src, (group, vols, gsnap,
                                                     snaps))):
            self.assertRaises(NotImplementedError, call, self.ctxt, *args)
        self.assertEqual([], self.runner.requests)

    def test_delete_group_snapshot_with_clones_defers(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)
        group2, _ = self.group()
        new = [self.group_volume(group2, create=False, snapshot_id=s.id)
               for s in snaps]
        self.driver.create_group_from_src(self.ctxt, group2, new, gsnap,
                                          snaps)

        model, updates = self.driver.delete_group_snapshot(self.ctxt, gsnap,
                                                           snaps)

        self.assertEqual({'status': 'deleted'}, model)
        self.assertEqual({'deleted'}, {u['status'] for u in updates})
        for s in snaps:    # kept by zfs for the clones, gone with them
            self.assertEqual('on', self.ds(s.volume_name,
                                           s.name)['defer_destroy'])
        self.driver.delete_group(self.ctxt, group, vols)
        for v in new:
            self.check_usable(v)
        model, updates = self.driver.delete_group(self.ctxt, group2, new)
        self.assertEqual({'status': 'deleted'}, model)
        self.assert_only_parent_left()

    def check_usable(self, vol):
        self.assertIsNotNone(self.ds(vol.name), vol.name)

    def test_delete_group_snapshot_reports_each_failure(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)
        self.zfs.fail['destroy'] = 'cannot destroy snapshot: I/O error'
        model, updates = self.driver.delete_group_snapshot(self.ctxt, gsnap,
                                                           snaps)
        self.assertEqual({'status': 'error_deleting'}, model)
        self.assertEqual(['error_deleting', 'deleted'],
                         [u['status'] for u in updates])
        self.assertIsNotNone(self.ds(snaps[0].volume_name, snaps[0].name))
        self.assertIsNone(self.ds(snaps[1].volume_name, snaps[1].name))


class GroupLifecycleTestCase(GroupTestBase):

    def test_create_and_update_change_nothing_on_the_host(self):
        group, vols = self.group(count=2)
        before = self.zfs.names()
        self.assertEqual({'status': 'available'},
                         self.driver.create_group(self.ctxt, group))
        self.assertEqual(['group-check'], self.requests_during(
            self.driver.update_group, self.ctxt, group, vols[:1], vols[1:]))
        self.assertEqual((None, None, None), self.driver.update_group(
            self.ctxt, group, [], vols))
        self.assertEqual(before, self.zfs.names())

    def test_adding_a_volume_without_zvol_is_refused(self):
        group, vols = self.group(count=1)
        ghost = self.group_volume(group, create=False)
        e = self.assertRaises(exception.ZfsNotFound,
                              self.driver.update_group, self.ctxt, group,
                              vols + [ghost], None)
        self.assertIn(ghost.name, str(e))

    def test_delete_group_keeps_what_clones_need(self):
        group, vols = self.group(count=2)
        clone = self.volume(1)
        self.driver.create_cloned_volume(clone, vols[0])
        model, updates = self.driver.delete_group(self.ctxt, group, vols)
        self.assertEqual({'status': 'deleted'}, model)
        self.assertEqual({'deleted'}, {u['status'] for u in updates})
        self.assertIsNone(self.ds(vols[0].name))
        self.assertIsNotNone(self.ds(clone.name))
        self.driver.delete_volume(clone)
        self.assert_only_parent_left()

    def test_delete_group_partial_failure_then_retry(self):
        group, vols = self.group(count=3)
        busy = vols[1]
        busy.provider_location = 'exported'     # an export Cinder still has
        self.mock_object(self.driver, 'remove_export')
        self.zfs.busy.add(self.path(busy.name))

        with mock.patch.object(zfs, 'BUSY_WAIT', 0):
            model, updates = self.driver.delete_group(self.ctxt, group, vols)

        self.assertEqual({'status': 'error_deleting'}, model)
        self.assertEqual([(v.id, s) for v, s in zip(
            vols, ('deleted', 'error_deleting', 'deleted'))],
            [(u['id'], u['status']) for u in updates])
        self.assertIsNotNone(self.ds(busy.name))
        # deleting the group again, once the volume is free, finishes it
        self.zfs.busy.clear()
        model, updates = self.driver.delete_group(self.ctxt, group, vols)
        self.assertEqual({'status': 'deleted'}, model)
        self.assert_only_parent_left()


class GroupFromSourceTestCase(GroupTestBase):

    def test_from_source_group_is_one_instant(self):
        group, vols = self.group(count=3, size=1)
        group2, _ = self.group()
        new = [self.group_volume(group2, size=2, create=False,
                                 source_volid=v.id) for v in vols]

        self.assertEqual(['clone-group'], self.requests_during(
            self.driver.create_group_from_src, self.ctxt, group2, new, None,
            None, group, vols))

        by_source = {v.id: v for v in vols}
        origins = []
        for v in new:
            ds = self.ds(v.name)
            self.assertEqual(2 * units.Gi, ds['volsize'])
            origin = ds['origin']
            self.assertEqual(
                self.path(by_source[v.source_volid].name, 'clone-' + v.name),
                origin)
            # the temporary snapshot goes with the clone
            self.assertEqual('on', self.zfs.datasets[origin]['defer_destroy'])
            origins.append(self.zfs.datasets[origin])
        self.assertEqual(1, len({o['createtxg'] for o in origins}))
        self.assertEqual(1, len(self.zfs.zfs_calls('snapshot')))
        self.driver.delete_group(self.ctxt, group, vols)
        self.driver.delete_group(self.ctxt, group2, new)
        self.assert_only_parent_left()

    def test_from_group_snapshot_keeps_each_volume_type(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)
        group2, _ = self.group()
        thick = volume_types.create(self.ctxt, 'thick', {
            'provisioning:type': 'thick', 'zfs:compression': 'lz4'})
        new = [self.group_volume(group2, create=False, snapshot_id=s.id,
                                 volume_type_id=thick['id'])
               for s in snaps]
        model, updates = self.driver.create_group_from_src(
            self.ctxt, group2, new, gsnap, list(reversed(snaps)))
        self.assertEqual({'status': 'available'}, model)
        self.assertEqual([{'id': v.id, 'status': 'available'} for v in new],
                         updates)
        for v, s in zip(new, snaps):
            ds = self.ds(v.name)
            self.assertEqual(self.path(s.volume_name, s.name), ds['origin'])
            self.assertEqual(units.Gi, ds['refreservation'])
            self.assertEqual('lz4', ds['props']['compression'])

    def rolled_back(self, call, *args):
        before = self.zfs.names()
        e = self.assertRaises(exception.HostOperationFailed, call, *args)
        self.assertEqual(before, self.zfs.names())
        self.assertIn('all removed again', str(e))
        return e

    def test_failed_clone_removes_the_others(self):
        group, vols = self.group(count=3)
        group2, _ = self.group()
        new = [self.group_volume(group2, create=False, source_volid=v.id)
               for v in vols]
        clones = []

        def third_clone_fails(argv):
            if argv[1] == 'clone':
                clones.append(argv)
                if len(clones) == 3:
                    self.zfs.fail['clone'] = 'cannot create: I/O error'
        self.zfs.before = third_clone_fails

        e = self.rolled_back(self.driver.create_group_from_src, self.ctxt,
                             group2, new, None, None, group, vols)
        self.assertIn('2 of 3 made', str(e))
        self.assertIn('I/O error', str(e))
        # no temporary snapshot left on the sources either
        self.assertEqual([], [n for n in self.zfs.names() if '@' in n])

    def test_failed_resize_removes_every_clone(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)
        group2, _ = self.group()
        huge = volume_types.create(self.ctxt, 'huge', {
            'provisioning:type': 'thick'})
        new = [self.group_volume(group2, size=500, create=False,
                                 snapshot_id=s.id, volume_type_id=huge['id'])
               for s in snaps]
        e = self.rolled_back(self.driver.create_group_from_src, self.ctxt,
                             group2, new, gsnap, snaps)
        self.assertIsInstance(e, exception.ZfsOutOfSpace)

    def test_missing_source_snapshot(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)
        self.driver.delete_snapshot(snaps[1])
        group2, _ = self.group()
        new = [self.group_volume(group2, create=False, snapshot_id=s.id)
               for s in snaps]
        before = self.zfs.names()
        e = self.assertRaises(exception.ZfsNotFound,
                              self.driver.create_group_from_src, self.ctxt,
                              group2, new, gsnap, snaps)
        self.assertIn(snaps[1].name, str(e))
        self.assertEqual(before, self.zfs.names())

    def test_volume_without_source_is_refused(self):
        group, vols = self.group(count=1)
        group2, _ = self.group()
        orphan = self.group_volume(group2, create=False)
        self.assertRaises(cinder_exception.InvalidInput,
                          self.driver.create_group_from_src, self.ctxt,
                          group2, [orphan], None, None, group, vols)


@ddt.ddt
class GroupGrammarTestCase(GroupTestBase):
    """What groups added to the request and zfs grammars, hostile first."""

    def check(self, *argv, parents=(PARENT,)):
        return grammar.check_zfs(['zfs'] + list(argv), list(parents))

    def test_one_command_several_zvols(self):
        self.check('snapshot', PARENT + '/volume-a@s1',
                   PARENT + '/volume-b@s2')

    @ddt.data(
        # a snapshot outside the parent
        ['tank/volume-a@s'], ['tank/other/volume-a@s'], [PARENT + '@s'],
        [PARENT + '/a/b@s'], [PARENT + '-evil/volume-a@s'],
        [PARENT + '/volume-a@s', 'tank/other/volume-b@s'],
        # not a snapshot, or a recursive one
        [PARENT + '/volume-a'], ['-r', PARENT + '/volume-a@s'],
        [PARENT + '/volume-a@s', '-r'], ['-o', 'x=y', PARENT + '/volume-a@s'],
        # shell and option characters
        [PARENT + '/volume-a@s;id'], [PARENT + '/volume-a@$(id)'],
        [PARENT + '/volume-a@s b'], [PARENT + '/volume-a@-R'],
        [PARENT + '/volume-a@../s'], [PARENT + '/volume-a@s@t'],
        # twice the same zvol; nothing at all
        [PARENT + '/volume-a@s1', PARENT + '/volume-a@s2'], [])
    def test_refused_snapshot(self, args):
        self.assertRaises(errors.Refused, self.check, 'snapshot', *args)

    def test_mixed_parents_refused(self):
        other = 'tank/cinder2'
        both = (PARENT, other)
        self.check('snapshot', other + '/volume-a@s', parents=both)
        self.assertRaises(errors.Refused, self.check, 'snapshot',
                          PARENT + '/volume-a@s', other + '/volume-b@s',
                          parents=both)

    def test_too_many_snapshots_refused(self):
        args = [PARENT + '/volume-%d@s' % i
                for i in range(wire.MAX_SNAPSHOTS + 1)]
        self.check('snapshot', *args[:-1])
        self.assertRaises(errors.Refused, self.check, 'snapshot', *args)

    def parse(self, *argv):
        return wire.parse(list(argv), self.host.config)

    def test_requests_allowed(self):
        self.parse('group-snapshot', PARENT, 'volume-a@s1', 'volume-b@s2')
        self.parse('group-check', PARENT, 'volume-a')
        self.parse('clone-group', PARENT, 'volume-a', 'volume-b')

    @ddt.data(['group-snapshot', PARENT],
              ['group-snapshot', PARENT, 'volume-a'],
              ['group-snapshot', PARENT, 'volume-a@'],
              ['group-snapshot', PARENT, '@s'],
              ['group-snapshot', PARENT, '../x@s'],
              ['group-snapshot', PARENT, 'volume-a@s@t'],
              ['group-snapshot', PARENT, 'volume-a@s;id'],
              ['group-snapshot', PARENT, 'a/b@s'],
              ['group-snapshot', 'tank/other', 'volume-a@s'],
              ['group-snapshot', 'tank', 'cinder/volume-a@s'],
              ['clone-group', PARENT],
              ['clone-group', PARENT, 'volume-a@s'],
              ['group-check', PARENT, '-R'])
    def test_requests_refused(self, argv):
        self.assertRaises(errors.Refused, self.parse, *argv)

    def test_too_many_in_one_request_refused(self):
        many = ['volume-%d@s' % i for i in range(wire.MAX_SNAPSHOTS + 1)]
        self.assertRaises(errors.Refused, self.parse, 'group-snapshot',
                          PARENT, *many)

    def test_same_zvol_twice_refused_before_zfs_runs(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        del self.zfs.calls[:]
        self.assertRaises(exception.HostRefused, self.driver.storage.call,
                          'group-snapshot', PARENT, vol.name + '@a',
                          vol.name + '@b')
        self.assertEqual([], self.zfs.calls)

    def test_clone_group_payload_is_checked(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        for clones in ({},
                       {'volume-new': {'source': '../x', 'size': units.Gi}},
                       {'volume-new': {'source': vol.name, 'size': '1G'}},
                       {'volume-new': {'source': vol.name, 'size': units.Gi,
                                       'snapshot': 's;id'}},
                       {'volume-new': {'source': vol.name, 'size': units.Gi,
                                       'props': {'mountpoint': '/x y'}}},
                       {'volume-new': 'x'},
                       {'other': {'source': vol.name, 'size': units.Gi}}):
            del self.zfs.calls[:]
            self.assertRaises(exception.HostRefused, self.driver.storage.call,
                              'clone-group', PARENT, 'volume-new',
                              payload={'clones': clones})
            self.assertEqual([], self.zfs.calls, clones)

    def test_every_group_command_is_in_the_grammar(self):
        """Drift guard: what the group paths ran passed the grammar."""
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)
        group2, _ = self.group()
        new = [self.group_volume(group2, create=False, source_volid=v.id)
               for v in vols]
        self.driver.create_group_from_src(self.ctxt, group2, new, None, None,
                                          group, vols)
        self.driver.delete_group_snapshot(self.ctxt, gsnap, snaps)
        self.driver.delete_group(self.ctxt, group, vols)
        self.driver.delete_group(self.ctxt, group2, new)
        for argv in self.zfs.calls:
            grammar.check_zfs(argv, [PARENT])
        self.assert_only_parent_left()


class ManagerGroupContractTestCase(GroupTestBase):
    """Cinder 29's VolumeManager group methods over the real driver."""

    def setUp(self):
        super().setUp()
        self.driver._initialized = True
        self.manager = manager.VolumeManager.__new__(manager.VolumeManager)
        self.manager.driver = self.driver
        self.manager.db = db
        self.manager.host = 'test_host'
        self.manager.cluster = None
        self.manager.stats = {'allocated_capacity_gb': 0, 'pools': {}}
        for name in ('_notify_about_group_usage',
                     '_notify_about_group_snapshot_usage',
                     '_notify_about_snapshot_usage',
                     'publish_service_capabilities'):
            self.mock_object(self.manager, name)
        self.mock_object(manager.volume_utils, 'require_driver_initialized')

    def test_group_snapshot_then_group_from_it_then_deletes(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)

        self.manager.create_group_snapshot(self.ctxt, gsnap)

        gsnap.refresh()
        self.assertEqual('available', gsnap.status)
        for s in snaps:
            s.refresh()
            self.assertEqual('available', s.status)
        self.assertEqual(1, len(self.txgs(snaps)))

        group2, _ = self.group(status='creating')
        new = [self.group_volume(group2, create=False, snapshot_id=s.id,
                                 status='creating') for s in snaps]
        self.manager.create_group_from_src(self.ctxt, group2,
                                           group_snapshot=gsnap)
        group2.refresh()
        self.assertEqual('available', group2.status)
        for v in new:
            v.refresh()
            self.assertEqual('available', v.status)
            self.assertIsNotNone(self.ds(v.name))

        self.manager.delete_group_snapshot(self.ctxt, gsnap)
        self.assertRaises(cinder_exception.GroupSnapshotNotFound,
                          objects.GroupSnapshot.get_by_id, self.ctxt,
                          gsnap.id)
        for group_, vols_ in ((group, vols), (group2, new)):
            group_.status = 'deleting'
            group_.save()
            self.manager.delete_group(self.ctxt, group_)
        self.assert_only_parent_left()

    def test_failed_group_snapshot_marks_everything_error(self):
        group, vols = self.group(count=2)
        gsnap, snaps = self.group_snapshot(group, vols)
        self.zfs.run(['zfs', 'destroy', self.path(vols[0].name)])
        self.assertRaises(exception.ZfsNotFound,
                          self.manager.create_group_snapshot, self.ctxt,
                          gsnap)
        gsnap.refresh()
        self.assertEqual('error', gsnap.status)
        for s in snaps:
            s.refresh()
            self.assertEqual('error', s.status)
        self.assertEqual([], [n for n in self.zfs.names() if '@' in n])
