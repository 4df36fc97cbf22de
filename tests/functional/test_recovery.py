"""Crash recovery on the real host: what OpenZFS decides.

The sweep finishes what crashes left and collects hidden zvols nothing
needs. A leftover real ZFS refuses to remove (a hidden zvol held open, a
snapshot under a ``zfs hold``) stays, with the reason in the log, and never
stops the rest of the sweep nor the backend from starting. A storage host
that reboots in the middle of a revert is repaired by the first stats
request after the boot, with cinder-volume still running.
"""

import threading

from cinder_zol_lab import faults
from tests.functional import base
from tests.functional import test_faults


def outcome(fault, result):
    print('\nrecovery: %-55s -> %s' % (fault, result))
    faults.record(fault, result)


class StuckLeftoversTestCase(base.LabTestCase):

    def hide(self, vol):
        """Rename a volume as a delete with dependents would."""
        hidden = 'deleted-%s-0000000000000001' % vol.name
        self.guest('zfs rename %s/%s %s/%s' % (self.parent, vol.name,
                                               self.parent, hidden))
        return hidden

    def test_held_and_open_hidden_zvols(self):
        opened, held, fine = self.volume(1), self.volume(1), self.volume(1)
        for vol in (opened, held, fine):
            self.driver.create_volume(vol)
        snap = self.snapshot(held)
        self.driver.create_snapshot(snap)
        self.guest('zfs hold cinder-zol-test %s/%s@%s'
                   % (self.parent, held.name, snap.name))
        hidden_open, hidden_held = self.hide(opened), self.hide(held)
        # a leftover export (or the operator) keeps the hidden zvol open
        self.guest('udevadm settle; setsid sleep 600 < /dev/zvol/%s/%s '
                   '> /dev/null 2>&1 & echo $! > /tmp/cinder-zol-open.pid'
                   % (self.parent, hidden_open))
        self.addCleanup(self.guest, 'kill $(cat /tmp/cinder-zol-open.pid)',
                        check=False)
        # and a volume clone's temporary snapshot leaked by a crash
        self.guest('zfs snapshot %s/%s@clone-volume-gone'
                   % (self.parent, fine.name))

        result = self.driver.storage.call('sweep', self.parent)

        self.assertEqual({hidden_open, hidden_held}, set(result['left']))
        names = self.zfs_names()
        self.assertNotIn('%s/%s@clone-volume-gone' % (self.parent, fine.name),
                         names)
        outcome('hidden zvol held open at the sweep',
                'left: %s' % result['left'][hidden_open])
        outcome('hidden zvol whose snapshot has a zfs hold',
                'left: %s' % result['left'][hidden_held])
        # the backend starts all the same
        self.make_driver()
        outcome('  cinder-volume starts with both left', 'ok')

        self.guest('kill $(cat /tmp/cinder-zol-open.pid); sleep 1; '
                   'zfs release cinder-zol-test %s/%s@%s'
                   % (self.parent, hidden_held, snap.name))
        result = self.driver.storage.call('sweep', self.parent)
        self.assertEqual({}, result['left'])
        self.assertEqual(2, result['actions'])
        self.driver.delete_volume(fine)
        outcome('  released, next sweep', 'both collected, nothing left')


class RebootMidRevertTestCase(base.LabTestCase):
    """The storage host crashes between the renames of a swap-revert."""

    def hold_rename(self, source):
        """Make ``zfs rename SOURCE`` wait (until the reboot)."""
        held = faults.hold(self.shell, 'zfs', leading=('rename', source))
        self.addCleanup(held.release)
        return held

    def test_first_stats_after_the_boot_repairs(self):
        vol, clone = self.volume(1), self.volume(1)
        self.driver.create_volume(vol)
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        self.driver.create_cloned_volume(clone, vol)   # so it must swap
        held = self.hold_rename('%s/reverting-%s' % (self.parent,
                                                     vol.name))
        box = {}

        def revert():
            try:
                self.driver.revert_to_snapshot(self.ctxt, vol, snap)
            except Exception as e:
                box['error'] = e
        t = threading.Thread(target=revert, daemon=True)
        t.start()
        self.assertTrue(held.wait_hit(), 'the held zfs rename never ran')
        # the volume is hidden now, its clone not yet in its place
        self.assertNotIn('%s/%s' % (self.parent, vol.name), self.zfs_names())
        self.shell.reboot(crash=True)
        t.join(180)
        self.assertIn('error', box)
        outcome('storage host reset between the renames of a revert',
                test_faults.failure(box['error']))

        # what the crash left survived the boot
        self.assertIn('%s/reverting-%s' % (self.parent, vol.name),
                      self.zfs_names())

        self.driver.get_volume_stats(refresh=True)   # cinder-volume's tick

        names = self.zfs_names()
        self.assertIn('%s/%s@%s' % (self.parent, vol.name, snap.name), names)
        self.assertEqual([], [n for n in names if 'reverting-' in n or
                              'deleted-' in n])
        outcome('  first stats after the boot',
                'volume back with its snapshot, nothing half done')
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(clone)
        self.driver.delete_volume(vol)
