"""Volume lifecycle and failure paths on the real ZoL host."""

import os
import shlex

import fixtures

from cinder import exception as cinder_exception

from cinder_zol import exception
from tests.functional import base


class RealLifecycleTestCase(base.LabTestCase):

    def dev(self, vol):
        """The zvol's device link, once udev has made it.

        A clone's device appears a moment after zfs returns; reading too
        early read nothing (the md5 of no bytes).
        """
        return self.shell.wait_for_path(
            '/dev/zvol/%s/%s' % (self.parent, vol.name))

    def write(self, vol, seed):
        """Write 1 MiB derived from ``seed`` at offset 0; return its md5."""
        return self.guest(
            'set -e; udevadm settle; '
            'yes %s | head -c 1048576 > /tmp/pattern; '
            'dd if=/tmp/pattern of=%s bs=1M count=1 conv=fsync status=none; '
            'md5sum < /tmp/pattern' % (seed, self.dev(vol))).split()[0]

    def read(self, vol):
        return self.guest(
            'set -o pipefail; dd if=%s bs=1M count=1 status=none | md5sum'
            % self.dev(vol)).split()[0]

    def test_sparse_and_thick(self):
        sparse, thick = self.volume(1), self.volume(1)
        self.driver.create_volume(sparse)
        self.override_config('san_thin_provision', False, base.GROUP)
        self.driver.create_volume(thick)
        self.assertEqual('0', self.zfs_get(sparse.name, 'refreservation'))
        self.assertGreaterEqual(
            int(self.zfs_get(thick.name, 'refreservation')), self.gib(1))
        self.assertEqual('yes', self.zfs_get(sparse.name,
                                             'cinder_zol:managed'))
        self.driver.delete_volume(sparse)
        self.driver.delete_volume(thick)

    def test_each_new_zvol_device_is_made_once(self):
        """A new zvol's device appears once and stays.

        The parent is volmode=dev as its zvols are: with any other volmode
        OpenZFS adds a new zvol's device, removes it and adds it again,
        and a reader (an export) that came between finds no link.
        """
        self.assertEqual('dev', self.guest(
            'zfs get -H -o value volmode %s' % self.parent).strip())
        self.guest('udevadm settle; (timeout 20 udevadm monitor --kernel '
                   '--subsystem-match=block >/tmp/zd-events 2>&1 '
                   '</dev/null &); sleep 1')
        vol, clone = self.volume(1), self.volume(1)
        self.driver.create_volume(vol)
        self.driver.create_cloned_volume(clone, vol)
        self.dev(vol)
        self.dev(clone)
        events = self.guest('sleep 3; pkill -f "[u]devadm monitor --kernel"; '
                            'grep "/block/zd" /tmp/zd-events || true')
        actions = [line.split()[1] for line in events.splitlines()]
        self.assertEqual(['add', 'add'], actions, events)
        self.driver.delete_volume(clone)
        self.driver.delete_volume(vol)

    def test_snapshot_clone_extend_revert_keep_data(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        first = self.write(vol, 'first')
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        second = self.write(vol, 'second')
        self.assertNotEqual(first, second)

        from_snap = self.volume(2)
        self.driver.create_volume_from_snapshot(from_snap, snap)
        self.assertEqual(first, self.read(from_snap))
        self.assertEqual(str(self.gib(2)),
                         self.zfs_get(from_snap.name, 'volsize'))
        clone = self.volume(1)
        self.driver.create_cloned_volume(clone, vol)
        self.assertEqual(second, self.read(clone))

        self.driver.extend_volume(vol, 3)
        vol.size = 3
        self.assertEqual(str(self.gib(3)), self.zfs_get(vol.name, 'volsize'))
        # the clone holds data newer than the snapshot: revert must keep it
        self.driver.revert_to_snapshot(self.ctxt, vol, snap)
        self.assertEqual(first, self.read(vol))
        self.assertEqual(second, self.read(clone))
        self.assertEqual(str(self.gib(3)), self.zfs_get(vol.name, 'volsize'))

        for v in (from_snap, clone):
            self.driver.delete_volume(v)
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)

    def test_stats_match_zfs(self):
        vol = self.volume(2)
        self.driver.create_volume(vol)
        stats = self.driver.get_volume_stats(refresh=True)
        used, avail = (int(x) for x in self.guest(
            'zfs get -H -p -o value used,available %s' % self.parent).split())
        self.assertAlmostEqual((used + avail) / self.gib(1),
                               stats['total_capacity_gb'], delta=0.05)
        self.assertAlmostEqual(avail / self.gib(1),
                               stats['free_capacity_gb'], delta=0.05)
        # provisioned capacity is Cinder's own count (allocated_capacity_gb)
        self.assertNotIn('provisioned_capacity_gb', stats)
        self.driver.delete_volume(vol)

    def test_unknown_property_refused_by_the_storage_host(self):
        vol = self.volume(1)
        self.override_config('zol_zvol_properties', {'nosuchprop': 'on'},
                             base.GROUP)
        e = self.assertRaises(exception.HostRefused,
                              self.driver.create_volume, vol)
        self.assertIn('nosuchprop', str(e))
        self.assertNotIn('%s/%s' % (self.parent, vol.name), self.zfs_names())

    def test_bad_property_value_reports_zfs_error(self):
        vol = self.volume(1)
        self.override_config('zol_zvol_properties',
                             {'compression': 'nonsense'}, base.GROUP)
        e = self.assertRaises(exception.ZfsInvalid, self.driver.create_volume,
                              vol)
        self.assertIn("'compression' must be one of", str(e))

    def test_out_of_space_reports_zfs_error(self):
        self.override_config('san_thin_provision', False, base.GROUP)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_volume, self.volume(100000))
        self.assertIn('out of space', str(e))

    def test_busy_volume_is_not_deleted(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.guest('udevadm settle; (exec 3<%s; sleep 20) '
                   '>/dev/null 2>&1 & echo $! > /tmp/holder' % self.dev(vol))
        try:
            self.assertRaises(cinder_exception.VolumeIsBusy,
                              self.driver.delete_volume, vol)
            self.assertIn('%s/%s' % (self.parent, vol.name),
                          self.zfs_names())
        finally:
            self.guest('kill $(cat /tmp/holder) 2>/dev/null; sleep 0.5; true')
        self.driver.delete_volume(vol)

    def test_foreign_dataset_left_alone(self):
        vol = self.volume(1)
        name = '%s/%s' % (self.parent, vol.name)
        self.guest('zfs create -s -V 16M %s' % shlex.quote(name))
        try:
            self.assertRaises(exception.NotOwned, self.driver.delete_volume,
                              vol)
            self.assertIn(name, self.zfs_names())
        finally:
            self.guest('zfs destroy %s' % shlex.quote(name))

    def test_unknown_host_key_refused(self):
        empty = os.path.join(self.useFixture(fixtures.TempDir()).path,
                             'known_hosts')
        e = self.assertRaises(exception.HostKeyNotTrusted, self.make_driver,
                              zol_ssh_known_hosts_file=empty)
        self.assertIn('ssh-keyscan', str(e))

    def test_parent_not_set_up_on_the_storage_host(self):
        e = self.assertRaises(exception.HostRefused, self.make_driver,
                              zol_dataset=self.parent + '/other')
        self.assertIn('is not managed on this storage host', str(e))
        self.assertIn('setup-storage-host.sh --dataset', str(e))

    def test_missing_parent_dataset(self):
        missing = self.parent + '/missing'
        conf = '/etc/cinder-zol/host.conf'
        self.guest("cp %s %s.bak && sed -i 's#^datasets = .*#& %s#' %s"
                   % (conf, conf, missing, conf))
        self.addCleanup(self.guest, 'mv -f %s.bak %s' % (conf, conf))
        e = self.assertRaises(cinder_exception.VolumeBackendAPIException,
                              self.make_driver, zol_dataset=missing)
        self.assertIn('zfs create %s' % missing, str(e))
