"""Faults on the real host.

The driver's session killed mid-operation, a dead pooled connection, sshd
restarted, the pool out of space, the storage host rebooted under attached
volumes.

A command is held in the middle of an operation by a wrapper bind-mounted
over the real tool for the duration of one test (``/usr/sbin/zfs`` or
``/usr/sbin/tgtadm``): it waits for a go-file, so the kill lands exactly
while the operation is half done. Expected each time: the operation fails
with a clear Cinder exception, what Cinder does next (delete the errored
volume, retry the delete, remove the export) succeeds, and the host ends
with nothing but the parent dataset. Each test prints its outcome, one line
per fault, and adds it to the lab run's fault table (cinder_zol_lab.faults),
which the lab prints at the end of the run.
"""

import shlex
import threading
import time
import uuid

from cinder import exception as cinder_exception
from cinder import objects
from oslo_utils import units

from cinder_zol import exception
from cinder_zol_lab import faults
from cinder_zol_lab import initiator
from tests.functional import base


def outcome(fault, result):
    print('\nfault: %-55s -> %s' % (fault, result))
    faults.record(fault, result)


def failure(error):
    return '%s: %s' % (type(error).__name__, error)


class FaultTestCase(base.LabTestCase):

    def hold(self, tool, match):
        """Make the next ``tool`` call whose argv has ``match`` wait."""
        held = faults.hold(self.shell, tool, match)
        self.addCleanup(held.release)
        return held

    def wait_hit(self, held):
        if not held.wait_hit():
            self.fail('the held command never ran')

    def kill_session(self):
        """Kill every process of the driver's account.

        That is its agent session, the command it runs, its sshd child.
        """
        login = self.lab['login']
        self.assertNotEqual('root', login, 'the fault tier needs the '
                            'least-privilege lab (mode)')
        self.guest('pkill -KILL -u %s; sleep 1; true' % shlex.quote(login))

    def in_thread(self, func, *args):
        box = {}

        def run():
            try:
                box['result'] = func(*args)
            except Exception as e:
                box['error'] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, box

    def killed_during(self, tool, match, func, *args):
        """Run func with ``tool match`` held, kill the session; its error."""
        held = self.hold(tool, match)
        t, box = self.in_thread(func, *args)
        self.wait_hit(held)
        self.kill_session()
        held.go()
        t.join(180)
        self.assertFalse(t.is_alive(), 'the driver call never returned')
        self.assertIn('error', box, 'the operation reported success although '
                      'its session was killed')
        error = box['error']
        self.assertIsInstance(error,
                              cinder_exception.VolumeBackendAPIException)
        return error

    # -- the driver's session killed in the middle ----------------------

    def test_session_killed_during_clone(self):
        src = self.volume(1)
        self.driver.create_volume(src)
        clone = self.volume(1)
        error = self.killed_during('zfs', 'clone',
                                   self.driver.create_cloned_volume,
                                   clone, src)
        outcome('agent session killed during zfs clone',
                '%s: %s' % (type(error).__name__, error))
        # Cinder marks the clone errored; the user deletes it, then src
        self.driver.delete_volume(clone)
        self.driver.delete_volume(src)
        outcome('  recovery: delete clone, delete source', 'ok, nothing left')

    def test_session_killed_during_delete_with_dependents(self):
        src = self.volume(1)
        self.driver.create_volume(src)
        clone = self.volume(1)
        self.driver.create_cloned_volume(clone, src)
        error = self.killed_during('zfs', 'rename', self.driver.delete_volume,
                                   src)
        outcome('agent session killed while hiding a source',
                '%s: %s' % (type(error).__name__, error))
        # the volume is error_deleting; the user deletes it again
        self.driver.delete_volume(src)
        self.assertNotIn('%s/%s' % (self.parent, src.name), self.zfs_names())
        self.guest('dd if=/dev/zvol/%s/%s of=/dev/null bs=64k count=16 '
                   'status=none' % (self.parent, clone.name))
        self.driver.delete_volume(clone)
        outcome('  recovery: delete again, then the clone',
                'ok, clone kept its data, nothing left')

    def test_session_killed_during_export(self):
        if self.lab.get('target') != 'tgtadm':
            self.skipTest('holds tgtadm; the LIO pass runs test_export only')
        vol = self.volume(1)
        self.driver.create_volume(vol)
        connector = {'initiator': 'iqn.2026-12.org.cinder-zol:fault',
                     'host': 'fault', 'ip': '127.0.0.1'}
        error = self.killed_during('tgtadm', 'logicalunit',
                                   self.driver.create_export, self.ctxt, vol,
                                   connector)
        outcome('agent session killed during tgtadm (export)',
                '%s: %s' % (type(error).__name__, error))
        # Cinder's failed attach calls remove_export, a no-op (no
        # provider_location); the root helper may still finish the export
        # behind it. Deleting the volume must release that leftover.
        time.sleep(2)
        self.driver.remove_export(self.ctxt, vol)
        left = [t for t in self.shell.targets() if t.endswith(vol.name)]
        self.driver.delete_volume(vol)
        self.assertEqual([], [t for t in self.shell.targets()
                              if t.endswith(vol.name)])
        outcome('  recovery: remove_export, delete',
                'ok; leftover export %s released by the delete, nothing '
                'left' % ('was' if left else 'was not'))

    def test_dead_pooled_connection_is_replaced(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.kill_session()
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)   # a new connection, same request
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)
        outcome('pooled connection killed between operations',
                'next operation reconnected and succeeded')

    # -- sshd restarted ----------------------------------------------------

    def restart_sshd(self):
        """``systemctl restart ssh``, checked to have started a new sshd."""
        show = 'systemctl show -p InvocationID --value ssh'
        before = self.guest(show).strip()
        self.guest('systemctl restart ssh')
        after = self.guest(show).strip()
        self.assertNotEqual(before, after, 'sshd was not restarted')
        self.assertEqual('active', self.guest('systemctl is-active ssh')
                         .strip())

    def pooled(self, drv=None):
        """Identities of the SSH transports in the driver's pool."""
        return {id(c.client.get_transport())
                for c in (drv or self.driver).runner._idle}

    def connection_fate(self, before):
        after = self.pooled()
        if before & after:
            return 'pooled connection survived the restart'
        return 'pooled connection replaced'

    def test_sshd_restarted_between_operations(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        before = self.pooled()
        self.assertNotEqual(set(), before,
                            'the driver keeps a pooled connection')
        self.restart_sshd()
        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        clone = self.volume(1)
        self.driver.create_volume_from_snapshot(clone, snap)
        fate = self.connection_fate(before)
        # a fresh driver (a cinder-volume started now) logs in anew
        fresh = self.make_driver()
        fresh.delete_volume(clone)
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)
        outcome('sshd restarted between operations',
                'next operations succeeded; %s; new logins work' % fate)

    def test_sshd_restarted_during_clone(self):
        src = self.volume(1)
        self.driver.create_volume(src)
        before = self.pooled()
        clone = self.volume(1)
        held = self.hold('zfs', 'clone')
        t, box = self.in_thread(self.driver.create_cloned_volume, clone, src)
        self.wait_hit(held)
        self.restart_sshd()
        held.go()
        t.join(180)
        self.assertFalse(t.is_alive(), 'the driver call never returned')
        if 'error' in box:
            # allowed: a clear "connection lost" error; Cinder then
            # deletes the errored clone
            self.assertIsInstance(box['error'],
                                  exception.StorageHostConnectionLost)
            result = failure(box['error'])
        else:
            self.assert_usable(clone.name, self.gib(1))
            result = 'completed'
        result += '; ' + self.connection_fate(before)
        outcome('sshd restarted during zfs clone', result)
        self.driver.delete_volume(clone)
        self.driver.delete_volume(src)
        outcome('  recovery: delete clone, delete source', 'ok, nothing left')

    # -- the pool out of space ---------------------------------------------

    def free(self):
        return int(self.guest('zfs get -H -p -o value available %s'
                              % self.parent))

    def test_out_of_space_thick_clone_grow(self):
        self.override_config('san_thin_provision', False, base.GROUP)
        free_gib = self.free() // units.Gi
        src = self.volume(1)
        self.driver.create_volume(src)
        # a thick clone grown past what the pool has
        big = self.volume(free_gib + 5)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_cloned_volume, big, src)
        outcome('thick clone grown past the free space', failure(e))
        self.assertNotIn('%s/%s' % (self.parent, big.name), self.zfs_names())
        self.driver.delete_volume(src)

    def fill_pool(self, leave):
        """Reserve all but ``leave`` bytes of the pool, outside the parent.

        A filesystem with a refreservation takes the room at once and
        writes nothing; it goes again at the end of the test.
        """
        filler = '%s/cinder-zol-fault-filler' % self.lab['pool']
        self.addCleanup(self.guest, 'zfs destroy %s' % filler, check=False)
        available = int(self.guest('zfs get -H -p -o value available %s'
                                   % self.lab['pool']))
        self.assertGreater(available, leave)
        self.guest('zfs create -o refreservation=%d %s'
                   % (available - leave, filler))
        return filler

    def test_out_of_space_thick_create_and_snapshot(self):
        self.override_config('san_thin_provision', False, base.GROUP)
        vol = self.volume(1)
        self.driver.create_volume(vol)
        path = '%s/%s' % (self.parent, vol.name)
        self.assertNotEqual('0', self.zfs_get(vol.name, 'refreservation'),
                            'a thick volume has a refreservation')
        # data the snapshot must then hold on top of the refreservation
        # (a snapshot of a thick zvol needs room for what it shares)
        written = 128 * units.Mi
        self.guest('udevadm settle; dd if=/dev/urandom of=/dev/zvol/%s '
                   'bs=1M count=%d oflag=direct conv=fsync status=none; '
                   'zpool sync %s' % (path, written // units.Mi,
                                      self.lab['pool']))
        self.fill_pool(leave=16 * units.Mi)
        available = self.free()
        referenced = int(self.zfs_get(vol.name, 'referenced'))
        # the condition itself, measured: without it this test proves
        # nothing, so it fails rather than passes
        self.assertGreaterEqual(referenced, written)
        self.assertLess(available, referenced,
                        'the pool still has room for the snapshot '
                        '(available %d, referenced %d)'
                        % (available, referenced))
        # a thick create the pool cannot reserve
        other = self.volume(1)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_volume, other)
        self.assertIn('out of space', str(e).lower())
        outcome('thick create in a full pool', failure(e))
        self.assertNotIn('%s/%s' % (self.parent, other.name),
                         self.zfs_names())
        # a snapshot of the thick zvol with written data
        snap = self.snapshot(vol)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_snapshot, snap)
        self.assertIn('out of space', str(e))       # zfs's own stderr
        self.assertIn(snap.name, str(e))
        outcome('snapshot of a thick zvol, pool full (%d MiB free, %d MiB '
                'written)' % (available // units.Mi, referenced // units.Mi),
                failure(e))
        self.assertEqual([self.parent, path], self.zfs_names(),
                         'no snapshot may be left behind')
        # room again: the same snapshot works, then everything goes
        self.guest('zfs destroy %s/cinder-zol-fault-filler'
                   % self.lab['pool'])
        self.driver.create_snapshot(snap)
        self.driver.delete_snapshot(snap)
        self.driver.delete_volume(vol)
        outcome('  recovery: free space, snapshot again, delete',
                'ok, nothing left')


MiB = units.Mi
CONNECTOR = {'initiator': 'iqn.2026-12.org.cinder-zol:reboot',
             'host': 'reboot', 'ip': '127.0.0.1', 'multipath': False}


class HostRebootTestCase(base.LabTestCase):
    """The storage host rebooted under attached volumes.

    Two volumes are exported and written through the initiator; the guest
    reboots (QEMU again with the same disks and ports). The host must
    restore by itself: the pool imported, the exports back (tgt from its
    config files, LIO from its saved configuration) with the data. Then a
    fresh driver, as at cinder-volume start (do_setup,
    check_for_setup_error, ensure_export of each volume), serves them, and
    detach and delete leave nothing behind.
    """

    def export(self, drv, vol):
        update = drv.create_export(self.ctxt, vol, CONNECTOR)
        for key, value in (update or {}).items():
            setattr(vol, key, value)
        info = drv.initialize_connection(vol, CONNECTOR)
        # Cinder's record of the attachment, which ensure_export reads
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(
                self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
                attach_status='attached', connector=CONNECTOR)])
        return initiator.Session.from_connection_info(
            info, CONNECTOR['initiator'],
            portal='127.0.0.1:%s' % self.lab['iscsi_port'])

    def exports_on_disk(self):
        """What the target restores at boot, for our volumes."""
        if self.shell.lio:
            return self.guest('grep -o "iqn[^\\"]*" '
                              '/etc/rtslib-fb-target/saveconfig.json '
                              '2>/dev/null | sort -u; true').split()
        return self.guest('ls /etc/tgt/conf.d/ | grep ^cinder-zol-; '
                          'true').split()

    def test_reboot_with_attached_volumes(self):
        vols = [self.volume(1), self.volume(1)]
        sessions = []
        for i, vol in enumerate(vols):
            self.driver.create_volume(vol)
            session = self.export(self.driver, vol)
            session.write_pattern(0x61 + i, 4 * MiB)
            sessions.append(session)
        targets = sorted(self.shell.targets())
        self.assertEqual(2, len(targets))
        t0 = time.monotonic()
        self.shell.reboot()
        took = time.monotonic() - t0
        # shown if the test fails: how the host came back
        print(self.guest(
            'systemctl is-system-running; '
            'systemctl --no-pager --failed; '
            'zpool status -x; ls -l /dev/zvol/%s/; '
            'tgtadm --lld iscsi --mode sys --op show 2>&1 | grep -i state; '
            'tgtadm --lld iscsi --mode target --op show 2>&1 | '
            'grep -v -i password; '
            'targetcli ls / 2>&1 | head -40; '
            'journalctl -b --no-pager -u tgt -u rtslib-fb-targetctl '
            '-u zfs-import-cache -u zfs-volume-wait | tail -40'
            % self.parent, check=False))
        # the host restored itself, before any driver call
        self.assertEqual('ONLINE', self.guest(
            'zpool list -H -o health %s' % self.lab['pool']).strip())
        for vol in vols:
            self.assertIn('%s/%s' % (self.parent, vol.name),
                          self.zfs_names())
        restored = sorted(self.shell.targets())
        self.assertEqual(targets, restored, 'the exports did not come back '
                         'after the reboot')
        for i, session in enumerate(sessions):
            session.verify_pattern(0x61 + i, 4 * MiB)
        outcome('storage host rebooted, 2 volumes attached',
                'pool imported, %d exports restored from config, data read '
                'back (reboot %.0f s)' % (len(restored), took))
        # cinder-volume starts: a fresh driver, ensure_export for each
        drv = self.make_driver()
        for vol in vols:
            drv.ensure_export(self.ctxt, vol)
        self.assertEqual(targets, sorted(self.shell.targets()))
        for i, session in enumerate(sessions):
            session.verify_pattern(0x61 + i, 4 * MiB)
            session.write_pattern(0x71 + i, MiB, 4 * MiB)
        for vol in vols:
            drv.terminate_connection(vol, CONNECTOR)
            drv.remove_export(self.ctxt, vol)
            drv.delete_volume(vol)
        self.assertEqual([], self.shell.targets())
        self.assertEqual([], self.exports_on_disk())
        outcome('  recovery: fresh driver, ensure_export, detach, delete',
                'ok, exports and their config gone, nothing left')
