"""Faults on the real host.

The driver's session killed mid-operation, a dead pooled connection, the
pool out of space.

A command is held in the middle of an operation by a wrapper bind-mounted
over the real tool for the duration of one test (``/usr/sbin/zfs`` or
``/usr/sbin/tgtadm``): it waits for a go-file, so the kill lands exactly
while the operation is half done. Expected each time: the operation fails
with a clear Cinder exception, what Cinder does next (delete the errored
volume, retry the delete, remove the export) succeeds, and the host ends
with nothing but the parent dataset. Each test prints its outcome, one line
per fault, for the issue's fault table.
"""

import shlex
import threading
import time

from cinder import exception as cinder_exception
from oslo_utils import units

from cinder_zol import exception
from tests.functional import base

WRAPPER = r'''#!/bin/sh
# cinder-zol fault test: hold a call with "%(match)s" in its argv until
# /tmp/cinder-zol-fault.go exists
for a in "$@"; do
    if [ "$a" = "%(match)s" ]; then
        touch /tmp/cinder-zol-fault.hit
        while [ ! -e /tmp/cinder-zol-fault.go ]; do sleep 0.1; done
    fi
done
exec %(real)s "$@"
'''


def outcome(fault, result):
    print('\nfault: %-55s -> %s' % (fault, result))


class FaultTestCase(base.LabTestCase):

    def hold(self, tool, match):
        """Make the next ``tool`` call whose argv has ``match`` wait."""
        real = '/usr/local/lib/cinder-zol-fault/%s' % tool
        wrapper = '/usr/local/lib/cinder-zol-fault/%s-wrapper' % tool
        self.guest(
            'set -e; mkdir -p /usr/local/lib/cinder-zol-fault; '
            'rm -f /tmp/cinder-zol-fault.hit /tmp/cinder-zol-fault.go; '
            'cp /usr/sbin/%(t)s %(real)s; cat > %(w)s; chmod 755 %(w)s; '
            'mount --bind %(w)s /usr/sbin/%(t)s'
            % {'t': tool, 'real': real, 'w': wrapper},
            input=WRAPPER % {'match': match, 'real': real})
        self.addCleanup(self.guest, 'touch /tmp/cinder-zol-fault.go; '
                        'umount /usr/sbin/%s' % tool, check=False)

    def wait_hit(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.guest('test -e /tmp/cinder-zol-fault.hit && echo hit',
                          check=False).strip() == 'hit':
                return
            time.sleep(0.5)
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
        self.hold(tool, match)
        t, box = self.in_thread(func, *args)
        self.wait_hit()
        self.kill_session()
        self.guest('touch /tmp/cinder-zol-fault.go')
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

    # -- the pool out of space ---------------------------------------------

    def free(self):
        return int(self.guest('zfs get -H -p -o value available %s'
                              % self.parent))

    def test_out_of_space_thick_clone_grow_and_snapshot(self):
        self.override_config('san_thin_provision', False, base.GROUP)
        free_gib = self.free() // units.Gi
        src = self.volume(1)
        self.driver.create_volume(src)
        # a thick clone grown past what the pool has
        big = self.volume(free_gib + 5)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_cloned_volume, big, src)
        outcome('thick clone grown past the free space',
                '%s: %s' % (type(e).__name__, e))
        self.assertNotIn('%s/%s' % (self.parent, big.name), self.zfs_names())
        # a snapshot of a thick zvol whose data the pool cannot also hold
        filler = self.volume(max(1, self.free() // units.Gi - 1))
        self.driver.create_volume(filler)
        self.guest('udevadm settle; dd if=/dev/urandom of=/dev/zvol/%s/%s '
                   'bs=1M count=%d oflag=direct status=none'
                   % (self.parent, filler.name,
                      min(512, self.free() // units.Mi + 64)), check=False)
        snap = self.snapshot(filler)
        try:
            self.driver.create_snapshot(snap)
        except exception.ZfsOutOfSpace as e:
            outcome('snapshot of a full thick zvol', '%s: %s'
                    % (type(e).__name__, e))
        else:
            outcome('snapshot of a full thick zvol', 'fit (pool had room)')
            self.driver.delete_snapshot(snap)
        self.driver.delete_volume(filler)
        self.driver.delete_volume(src)
