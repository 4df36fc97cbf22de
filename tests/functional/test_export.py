"""iSCSI export on the real guest, checked with a userspace initiator.

Runs once per target helper (tox -e functional boots the guest with tgt,
then with LIO); CINDER_ZOL_LAB_TARGET says which one is live.
"""

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
