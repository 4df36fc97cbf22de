"""iSCSI export on the real guest, checked with a userspace initiator.

Runs once per target helper (tox -e functional boots the guest with tgt,
then with LIO); CINDER_ZOL_LAB_TARGET says which one is live.
"""

import shlex
import uuid

from cinder import exception as cinder_exception
from cinder import objects

from cinder_zol_lab import initiator
from tests.functional import base

INITIATOR = 'iqn.2026-11.org.cinder-zol:functional-a'
OTHER = 'iqn.2026-11.org.cinder-zol:functional-b'
MiB = 2 ** 20


class RealExportTestCase(base.LabTestCase):

    def connector(self, iqn=INITIATOR):
        return {'initiator': iqn, 'ip': '127.0.0.1', 'host': 'lab-host',
                'multipath': False}

    def export(self, vol, iqn=INITIATOR):
        """create_export + initialize_connection, as cinder-volume does."""
        update = self.driver.create_export(self.ctxt, vol, self.connector(iqn))
        for key, value in (update or {}).items():
            setattr(vol, key, value)
        info = self.driver.initialize_connection(vol, self.connector(iqn))
        self.assertEqual('iscsi', info['driver_volume_type'])
        return info

    def unexport(self, vol, iqn=INITIATOR):
        self.driver.terminate_connection(vol, self.connector(iqn))
        self.driver.remove_export(self.ctxt, vol)

    def session(self, info, iqn=INITIATOR, **overrides):
        overrides.setdefault('portal', '127.0.0.1:%s' % self.lab['iscsi_port'])
        return initiator.Session.from_connection_info(info, iqn, **overrides)

    def test_data_through_snapshot_and_clone(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol)
        self.assertEqual('CHAP', info['data']['auth_method'])
        self.session(info).write_pattern(0x5a, 8 * MiB)
        self.unexport(vol)

        snap = self.snapshot(vol)
        self.driver.create_snapshot(snap)
        clone = self.volume(1)
        self.driver.create_volume_from_snapshot(clone, snap)
        clone_info = self.export(clone)
        self.session(clone_info).verify_pattern(0x5a, 8 * MiB)
        self.assertRaises(AssertionError,
                          self.session(clone_info).verify_pattern, 0x00,
                          MiB)
        self.unexport(clone)
        for step in (lambda: self.driver.delete_volume(clone),
                     lambda: self.driver.delete_snapshot(snap),
                     lambda: self.driver.delete_volume(vol)):
            step()

    def test_chap_and_acl(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol)
        good = self.session(info)
        good.write_pattern(0x11, MiB)
        # wrong secret, no credentials, and an initiator outside the ACL
        self.assertRaises(initiator.LoginRefused,
                          self.session(info, password='wrong-secret-123').size)
        self.assertRaises(initiator.LoginRefused,
                          self.session(info, user=None).size)
        self.assertRaises(initiator.LoginRefused,
                          self.session(info, iqn=OTHER).size)
        # a second attachment's initiator is let in, then out again
        self.export(vol, OTHER)
        self.session(info, iqn=OTHER).verify_pattern(0x11, MiB)
        self.driver.terminate_connection(vol, self.connector(OTHER))
        self.assertRaises(initiator.LoginRefused,
                          self.session(info, iqn=OTHER).size)
        good.verify_pattern(0x11, MiB)
        # a force detach (no connector) removes everybody
        self.driver.terminate_connection(vol, None)
        self.assertRaises(initiator.LoginRefused, good.size)
        self.driver.remove_export(self.ctxt, vol)
        self.driver.delete_volume(vol)

    def test_extend_seen_by_initiator(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol)
        self.assertEqual(2 ** 30, self.session(info).size())
        self.driver.extend_volume(vol, 2)
        vol.size = 2
        self.assertEqual(2 * 2 ** 30, self.session(info).size())
        self.unexport(vol)
        self.driver.delete_volume(vol)

    def test_ensure_export_recreates_and_keeps(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol)
        # Cinder's record of the attachment: what ensure_export restores
        # the ACL from when the target lost everything.
        attachment = objects.VolumeAttachment(
            self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
            attach_status='attached', connector=self.connector())
        vol.volume_attachment = objects.VolumeAttachmentList(
            objects=[attachment])
        self.session(info).write_pattern(0x22, MiB)
        # a correct export is left alone
        self.driver.ensure_export(self.ctxt, vol)
        self.session(info).verify_pattern(0x22, MiB)
        # a lost one (target service restarted without config) comes back
        self.lose_exports()
        self.driver.ensure_export(self.ctxt, vol)
        self.session(info).verify_pattern(0x22, MiB)
        self.unexport(vol)
        self.driver.delete_volume(vol)

    def lose_exports(self):
        if self.lab.get('target') == 'lioadm':
            self.guest('targetcli clearconfig confirm=True >/dev/null')
        else:
            self.guest('for t in $(tgtadm --lld iscsi --mode target --op show '
                       '| sed -n "s/^Target \\([0-9]*\\):.*/\\1/p"); do '
                       'tgtadm --lld iscsi --mode target --op delete --force '
                       '--tid $t; done')

    def test_exported_volume_is_busy_until_removed(self):
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.export(vol)
        self.assertRaises(cinder_exception.VolumeIsBusy,
                          self.driver.delete_volume, vol)
        self.unexport(vol)
        self.driver.delete_volume(vol)


# Run in the guest: a writer/reader loop with O_DIRECT on the LUN, which
# verifies every block it reads back and counts failures; stops when
# /tmp/io.stop appears.
IO_LOOP = r'''
dev=$1
: > /tmp/io.log
i=0 errors=0
head -c 1048576 /dev/urandom > /tmp/io.pat
sum=$(md5sum < /tmp/io.pat)
while [ ! -e /tmp/io.stop ]; do
    off=$((i % 64))
    if ! dd if=/tmp/io.pat of="$dev" bs=1M seek=$off count=1 oflag=direct \
            conv=notrunc status=none 2>>/tmp/io.log; then
        errors=$((errors + 1))
    elif [ "$(dd if="$dev" bs=1M skip=$off count=1 iflag=direct \
            status=none 2>>/tmp/io.log | md5sum)" != "$sum" ]; then
        echo "block $off read back wrong" >> /tmp/io.log
        errors=$((errors + 1))
    fi
    i=$((i + 1))
done
echo "ops=$i errors=$errors" > /tmp/io.done
'''


EXTENDS = 4


class ExtendUnderIOTestCase(base.LabTestCase):
    """Online extend with a kernel initiator doing I/O the whole time.

    The guest logs in to its own target over loopback with open-iscsi (this
    machine has no kernel initiator), a loop writes and verifies 1 MiB
    blocks with O_DIRECT, and the volume is extended in the middle: no
    I/O error may reach the initiator, and a rescan shows the new size.
    """

    connector = RealExportTestCase.connector
    export = RealExportTestCase.export
    unexport = RealExportTestCase.unexport

    def test_extend_under_io(self):
        guest_iqn = self.guest(
            "sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi"
        ).strip()
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol, guest_iqn)
        data = info['data']
        portal = '127.0.0.1:%s' % self.lab['iscsi_port']
        q = shlex.quote
        node = '-m node -T %s -p %s' % (q(data['target_iqn']), portal)
        self.guest(
            'set -e; systemctl start iscsid; '
            'iscsiadm -m node -o new -T %(iqn)s -p %(portal)s >/dev/null; '
            'iscsiadm %(node)s -o update -n node.session.auth.authmethod '
            '-v CHAP; '
            'iscsiadm %(node)s -o update -n node.session.auth.username '
            '-v %(u)s; '
            'iscsiadm %(node)s -o update -n node.session.auth.password '
            '-v %(p)s; '
            'iscsiadm %(node)s --login >/dev/null'
            % {'iqn': q(data['target_iqn']), 'portal': portal, 'node': node,
               'u': q(data['auth_username']), 'p': q(data['auth_password'])})
        self.addCleanup(self.guest, 'iscsiadm %s --logout; iscsiadm %s -o '
                        'delete' % (node, node), check=False)
        dev = '/dev/disk/by-path/ip-%s-iscsi-%s-lun-%s' % (
            portal, data['target_iqn'], data['target_lun'])
        self.guest('for i in $(seq 1 100); do [ -b %s ] && exit 0; '
                   'sleep 0.1; done; exit 1' % q(dev))
        self.guest('rm -f /tmp/io.stop /tmp/io.done; '
                   'nohup bash -c %s _ %s >/dev/null 2>&1 &'
                   % (q(IO_LOOP), q(dev)))
        self.addCleanup(self.guest, 'touch /tmp/io.stop', check=False)
        self.guest('sleep 3')
        # several extends: each swap is short, so one could miss the I/O
        for size in range(2, 2 + EXTENDS):
            self.driver.extend_volume(vol, size)
            vol.size = size
            self.guest('sleep 1')
        self.guest('sleep 5; touch /tmp/io.stop; for i in $(seq 1 300); do '
                   '[ -e /tmp/io.done ] && exit 0; sleep 0.2; done; exit 1')
        result = self.guest('cat /tmp/io.done; cat /tmp/io.log')
        print('\nI/O during extend: %s' % result.strip())
        disk = self.guest('basename $(readlink -f %s)' % q(dev)).strip()
        kernel = self.guest('dmesg | grep -E "%s|iSCSI|conn" | tail -40'
                            % disk, check=False)
        print('kernel: %s' % kernel.strip())
        self.assertIn('errors=0', result)
        self.assertNotIn('I/O error', kernel)
        self.guest('iscsiadm %s --rescan >/dev/null' % node)
        size = self.guest('blockdev --getsize64 %s' % q(dev)).strip()
        self.assertEqual(str(vol.size * 2 ** 30), size)
        self.guest('iscsiadm %s --logout >/dev/null' % node)
        self.unexport(vol, guest_iqn)
        self.driver.delete_volume(vol)
