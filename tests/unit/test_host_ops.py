"""Storage-host operations: ownership of what they read or change, their
locks, and the recovery a storage-host reboot triggers."""

import os
import threading
import time

from unittest import mock

import ddt

from cinder_zol.host import errors
from cinder_zol.host import locks
from tests.unit import test_host_dependents

PARENT = test_host_dependents.PARENT
GiB = test_host_dependents.GiB


class OpsTestBase(test_host_dependents.HostTestBase):

    def add_foreign(self, name='operator-db', snapshot='before-upgrade'):
        """A zvol below the parent that the driver did not create."""
        self.zfs._add(PARENT + '/' + name, 'volume', volsize=GiB)
        self.zfs._add(PARENT + '/%s@%s' % (name, snapshot), 'snapshot',
                      volsize=GiB)

    def state(self):
        return [(n, dict(d, props=dict(d['props'])))
                for n, d in self.zfs.datasets.items()]


@ddt.ddt
class OwnershipTestCase(OpsTestBase):
    """Operations on a zvol refuse one the driver did not create.

    A foreign zvol below the parent stays exactly as it was.
    """

    @ddt.data(
        ('snapshot', PARENT, 'snapshot-s', 'operator-db'),
        ('snapshot', PARENT, 'snapshot-s', 'volume-a', 'operator-db'),
        ('clone-snapshot', PARENT, 'operator-db', 'before-upgrade',
         'volume-x', str(GiB)),
        ('extend', PARENT, 'operator-db', str(2 * GiB)),
        ('delete-snapshot', PARENT, 'operator-db', 'before-upgrade'))
    def test_foreign_zvol_refused(self, argv):
        self.create('volume-a')
        self.add_foreign()
        before = self.state()
        e = self.assertRaises(errors.NotOwned, self.call, *argv)
        self.assertIn('operator-db', str(e))
        self.assertEqual(before, self.state())

    @ddt.data(('snapshot', PARENT, 'snapshot-s', 'volume-x'),
              ('clone-snapshot', PARENT, 'volume-x', 'snapshot-s',
               'volume-y', str(GiB)),
              ('extend', PARENT, 'volume-x', str(2 * GiB)))
    def test_missing_zvol(self, argv):
        e = self.assertRaises(errors.NotFound, self.call, *argv)
        self.assertIn(PARENT + '/volume-x', str(e))

    def test_snapshot_costs_one_read(self):
        self.create('volume-a')
        del self.zfs.calls[:]
        self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
        self.assertEqual(['list', 'snapshot'],
                         [c[0] for c in self.zfs.zfs_calls()])

    def test_clone_snapshot_costs_one_read(self):
        self.create('volume-a')
        self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
        del self.zfs.calls[:]
        self.call('clone-snapshot', PARENT, 'volume-a', 'snapshot-s',
                  'volume-b', str(GiB))
        self.assertEqual(['list', 'clone'],
                         [c[0] for c in self.zfs.zfs_calls()])

    def test_clone_of_an_image_entry(self):
        self.create('image-x')
        self.model.snapshot('image-x', 'golden')
        self.call('clone-snapshot', PARENT, 'image-x', 'golden', 'volume-b',
                  str(GiB))
        self.assertIn('volume-b', self.names())

    def test_snapshot_of_a_hidden_zvol_deleted(self):
        """Cinder's snapshot may live on a hidden zvol after a revert."""
        self.create('volume-a')
        self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
        self.model.rename('volume-a', 'deleted-volume-a-0001')
        self.call('delete-snapshot', PARENT, 'deleted-volume-a-0001',
                  'snapshot-s')
        self.assertEqual(['deleted-volume-a-0001'], self.names())

    def test_delete_snapshot_of_a_missing_zvol_is_done(self):
        self.call('delete-snapshot', PARENT, 'volume-x', 'snapshot-s')

    def test_delete_snapshot_already_gone(self):
        self.create('volume-a')
        self.call('delete-snapshot', PARENT, 'volume-a', 'snapshot-s')
        self.assertEqual(['volume-a'], self.names())


class CloneSnapshotLockTestCase(OpsTestBase):

    def test_volume_from_snapshot_during_a_swap_revert(self):
        """clone-snapshot waits for a revert that renames its source."""
        self.create('volume-a')
        self.call('snapshot', PARENT, 'snapshot-old', 'volume-a')
        self.call('snapshot', PARENT, 'snapshot-s', 'volume-a')
        # a clone newer than snapshot-s: the revert must swap
        self.call('clone', PARENT, 'volume-a', 'volume-b', str(GiB))
        failures = []

        def clone_from_old():
            try:
                self.call('clone-snapshot', PARENT, 'volume-a',
                          'snapshot-old', 'volume-c', str(GiB))
            except errors.HostError as e:
                failures.append(e)
        worker = threading.Thread(target=clone_from_old)

        def between_the_renames(argv):
            if argv[1:3] == ['rename', PARENT + '/reverting-volume-a']:
                worker.start()
                time.sleep(0.3)   # the clone runs now unless it waits
        self.zfs.before = between_the_renames
        self.call('revert', PARENT, 'volume-a', 'snapshot-s', str(GiB))
        self.zfs.before = None
        worker.join(10)
        self.assertEqual([], failures)
        self.assertEqual(PARENT + '/volume-a@snapshot-old',
                         self.model.get('volume-c').origin)


class BootRecoveryTestCase(OpsTestBase):
    """A storage host that rebooted under a running cinder-volume."""

    def setUp(self):
        super().setUp()
        self.boot_id = os.path.join(self.host.tmp, 'boot_id')
        self.boot('boot-1')
        patcher = mock.patch.object(locks, 'BOOT_ID', self.boot_id)
        patcher.start()
        self.addCleanup(patcher.stop)

    def boot(self, boot_id):
        with open(self.boot_id, 'w') as f:
            f.write(boot_id + '\n')

    def crash_between_the_renames(self):
        """What a power loss in the middle of a swap-revert leaves."""
        self.create('volume-a')
        self.model.snapshot('volume-a', 'snapshot-s')
        self.model.clone('volume-a', 'snapshot-s', 'reverting-volume-a', {})
        self.model.rename('volume-a', 'deleted-volume-a-0001')

    def test_first_stats_after_a_boot_recovers(self):
        self.call('sweep', PARENT)          # cinder-volume started
        self.crash_between_the_renames()
        self.boot('boot-2')
        self.call('stats', PARENT)
        self.assertEqual(['volume-a', 'volume-a@snapshot-s'], self.names())

    def test_stats_sweeps_once_per_boot(self):
        self.call('stats', PARENT)
        self.crash_between_the_renames()    # as if in flight: not touched
        del self.zfs.calls[:]
        self.call('stats', PARENT)
        self.assertEqual([['get', '-H', '-p', '-o', 'value',
                           'used,available', PARENT]], self.zfs.zfs_calls())
        self.assertIn('reverting-volume-a', self.names())

    def test_start_up_sweep_counts_for_the_boot(self):
        self.call('sweep', PARENT)
        del self.zfs.calls[:]
        self.call('stats', PARENT)
        self.assertEqual(1, len(self.zfs.zfs_calls()))

    def test_failing_recovery_does_not_fail_stats(self):
        self.crash_between_the_renames()
        self.zfs.fail['list'] = 'cannot open: pool I/O is currently suspended'
        result = self.call('stats', PARENT)
        self.assertIn('available', result)
        self.call('stats', PARENT)          # retried: marker not written
        self.assertEqual(['volume-a', 'volume-a@snapshot-s'], self.names())

    def test_held_lock_postpones_the_recovery(self):
        self.crash_between_the_renames()
        with self.host.locked(PARENT, 'shared'):
            self.host.lock_wait = 0.1
            result = self.call('stats', PARENT)
        self.assertIn('available', result)
        self.assertIn('reverting-volume-a', self.names())
        self.host.lock_wait = 5
        self.call('stats', PARENT)
        self.assertEqual(['volume-a', 'volume-a@snapshot-s'], self.names())
