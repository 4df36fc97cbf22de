"""Consistent group snapshots and groups of clones on the real ZoL host.

The lab's driver logs in as the least-privilege account, so each group
request here passes the agent's wrapper grammar and runs zfs with the
account's ``zfs allow`` only. Data is written and compared on the host, on
the zvols' own devices.
"""

from cinder.tests.unit import utils as cinder_utils
from cinder.volume import group_types
from cinder.volume import volume_types

from cinder_zol import exception
from tests.functional import base

CG_SPECS = {'consistent_group_snapshot_enabled': '<is> True'}


class GroupTestCase(base.LabTestCase):

    def setUp(self):
        super().setUp()
        self.assertEqual('least-privilege', self.lab.get('mode'),
                         'the lab guest should run the default setup')
        self.vtype = volume_types.create(self.ctxt, 'zol', {})
        self.cg_type = group_types.create(self.ctxt, 'cg', CG_SPECS)

    def group(self):
        return cinder_utils.create_group(
            self.ctxt, group_type_id=self.cg_type['id'],
            volume_type_ids=[self.vtype['id']])

    def group_volume(self, group, size=1, **kwargs):
        return cinder_utils.create_volume(
            self.ctxt, size=size, group_id=group.id,
            volume_type_id=self.vtype['id'], **kwargs)

    def path(self, name, snapshot=None):
        return '%s/%s%s' % (self.parent, name,
                            '@' + snapshot if snapshot else '')

    def fill(self, vol, char):
        self.guest('udevadm settle')
        self.shell.fill(self.path(vol.name), char)

    def md5(self, vol):
        self.guest('udevadm settle')
        return self.shell.md5(self.path(vol.name))

    def createtxg(self, snapshot_path):
        return self.guest('zfs get -H -p -o value createtxg %s'
                          % snapshot_path).strip()

    def snapshots(self):
        return [n for n in self.zfs_names() if '@' in n]

    def test_group_snapshot_and_copies_of_one_instant(self):
        group = self.group()
        vols = [self.group_volume(group) for _ in range(3)]
        for vol in vols:
            self.driver.create_volume(vol)
        first = {}
        for vol, char in zip(vols, 'abc'):
            self.fill(vol, char)
            first[vol.id] = self.md5(vol)
        gsnap = cinder_utils.create_group_snapshot(
            self.ctxt, group.id, group_type_id=group.group_type_id)
        snaps = [cinder_utils.create_snapshot(
            self.ctxt, v.id, group_snapshot_id=gsnap.id) for v in vols]

        self.driver.create_group_snapshot(self.ctxt, gsnap, snaps)

        txgs = {self.createtxg(self.path(s.volume_name, s.name))
                for s in snaps}
        self.assertEqual(1, len(txgs), txgs)
        now = {}
        for vol, char in zip(vols, 'ABC'):
            self.fill(vol, char)
            now[vol.id] = self.md5(vol)

        # a group from the group snapshot: the data of its instant
        from_snap = self.group()
        copies = [self.group_volume(from_snap, size=2, snapshot_id=s.id)
                  for s in snaps]
        self.driver.create_group_from_src(self.ctxt, from_snap, copies,
                                          gsnap, snaps)
        for copy, snap in zip(copies, snaps):
            self.assertEqual(first[snap.volume_id], self.md5(copy))
            self.assertEqual(str(self.gib(2)),
                             self.zfs_get(copy.name, 'volsize'))

        # a group from the group: its data now, all from one instant
        from_group = self.group()
        clones = [self.group_volume(from_group, source_volid=v.id)
                  for v in vols]
        self.driver.create_group_from_src(self.ctxt, from_group, clones,
                                          None, None, group, vols)
        origins = [self.zfs_get(c.name, 'origin') for c in clones]
        self.assertEqual(1, len({self.createtxg(o) for o in origins}))
        for clone in clones:
            self.assertEqual(now[clone.source_volid], self.md5(clone))

        # the group snapshot goes while its clones live: deferred by zfs
        model, updates = self.driver.delete_group_snapshot(self.ctxt, gsnap,
                                                           snaps)
        self.assertEqual('deleted', model['status'])
        for snap in snaps:
            self.assertEqual('on', self.guest(
                'zfs get -H -o value defer_destroy %s'
                % self.path(snap.volume_name, snap.name)).strip())
        # sources deleted first: hidden while the copies need them
        for grp, members in ((group, vols), (from_snap, copies)):
            model, updates = self.driver.delete_group(self.ctxt, grp,
                                                      members)
            self.assertEqual('deleted', model['status'])
            self.assertEqual({'deleted'}, {u['status'] for u in updates})
        for clone in clones:
            self.assertEqual(now[clone.source_volid], self.md5(clone))
        self.driver.delete_group(self.ctxt, from_group, clones)
        # assert_host_clean (cleanup): nothing but the parent is left

    def test_missing_volume_snapshots_nothing(self):
        group = self.group()
        vols = [self.group_volume(group) for _ in range(2)]
        self.driver.create_volume(vols[0])     # the second has no zvol
        self.addCleanup(self.driver.delete_volume, vols[0])
        gsnap = cinder_utils.create_group_snapshot(
            self.ctxt, group.id, group_type_id=group.group_type_id)
        snaps = [cinder_utils.create_snapshot(
            self.ctxt, v.id, group_snapshot_id=gsnap.id) for v in vols]
        e = self.assertRaises(exception.ZfsNotFound,
                              self.driver.create_group_snapshot, self.ctxt,
                              gsnap, snaps)
        self.assertIn(vols[1].name, str(e))
        self.assertEqual([], self.snapshots())

    def test_failed_clone_leaves_nothing_behind(self):
        group = self.group()
        vols = [self.group_volume(group) for _ in range(3)]
        for vol in vols:
            self.driver.create_volume(vol)
            self.addCleanup(self.driver.delete_volume, vol)
        target = self.group()
        clones = [self.group_volume(target, source_volid=v.id)
                  for v in vols]
        # the last new name is taken on the host by a dataset of its own
        taken = sorted(c.name for c in clones)[-1]
        self.guest('zfs create -s -V 1G %s' % self.path(taken))
        self.addCleanup(self.guest, 'zfs destroy %s' % self.path(taken))
        before = self.zfs_names()

        e = self.assertRaises(exception.ZfsExists,
                              self.driver.create_group_from_src, self.ctxt,
                              target, clones, None, None, group, vols)

        self.assertIn('2 of 3 made, all removed again', str(e))
        self.assertIn('already exists', str(e))
        self.assertEqual(before, self.zfs_names())
        self.assertEqual([], self.snapshots())
