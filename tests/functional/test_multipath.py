"""Multipath on the real guest: one target, two portals, each a path.

The lab forwards two ports of this machine to the same two ports in the
guest (CINDER_ZOL_LAB_ISCSI_PORT and _ISCSI_PORT2). The driver gets the
second one as a portal with its own port
(``target_secondary_ip_addresses = 127.0.0.1:<port2>``), so the storage
host must listen on both: tgtd through a portal per port, LIO through a
network portal per port in the volume's TPG. A real multi-NIC host lists
its other addresses on the same port instead; that needs no second
listener (the unit tier covers the option's forms).

Runs once per target helper, like test_export.
"""

import shlex
import uuid

from cinder import objects

from cinder_zol_lab import initiator
from tests.functional import base

INITIATOR = 'iqn.2026-11.org.cinder-zol:functional-mp'
MiB = 2 ** 20


class MultipathTestCase(base.LabTestCase):

    def make_driver(self, **overrides):
        port2 = self.lab.get('iscsi_port2')
        if not port2:
            self.fail('the lab guest forwards no second iSCSI port '
                      '(CINDER_ZOL_LAB_ISCSI_PORT2): start it with this '
                      "tree's cinder_zol_lab")
        overrides.setdefault('target_secondary_ip_addresses',
                             ['127.0.0.1:%d' % port2])
        return super().make_driver(**overrides)

    def connector(self):
        return {'initiator': INITIATOR, 'ip': '127.0.0.1', 'host': 'lab-mp',
                'multipath': True}

    def paths(self, info):
        """A userspace initiator session per path of the connection info."""
        data = info['data']
        return [initiator.Session(portal=portal, iqn=iqn, lun=int(lun),
                                  initiator=INITIATOR,
                                  user=data['auth_username'],
                                  password=data['auth_password'])
                for portal, iqn, lun in zip(data['target_portals'],
                                            data['target_iqns'],
                                            data['target_luns'])]

    # -- the target side, seen directly ----------------------------------

    def close_portal(self, iqn, port):
        """Stop the target listening on ``port`` (a lost path)."""
        if self.shell.lio:
            self.guest('targetcli /iscsi/%s/tpg1/portals delete 0.0.0.0 %d '
                       '>/dev/null' % (shlex.quote(iqn), port))
        else:
            self.guest('tgtadm --lld iscsi --mode portal --op delete '
                       '--param portal=0.0.0.0:%d' % port)

    def listening(self, iqn):
        """Ports the target serves this target's LUN on."""
        if self.shell.lio:
            out = self.guest('ls /sys/kernel/config/target/iscsi/%s/tpgt_1/'
                             'np 2>/dev/null || true' % shlex.quote(iqn))
        else:
            out = self.guest('tgtadm --lld iscsi --mode portal --op show')
        return sorted({int(word.rsplit(':', 1)[1].split(',')[0])
                       for word in out.split() if ':' in word
                       and word.rsplit(':', 1)[1].split(',')[0].isdigit()})

    def restart_target_service(self):
        """tgtd or LIO restarted from its saved configuration."""
        unit = 'rtslib-fb-targetctl' if self.shell.lio else 'tgt'
        self.guest('systemctl restart %s' % unit)
        if not self.shell.lio:
            self.guest('for i in $(seq 1 100); do tgtadm --lld iscsi --mode '
                       'target --op show >/dev/null 2>&1 && exit 0; '
                       'sleep 0.1; done; exit 1')

    # -- the test -----------------------------------------------------------

    def test_two_portals(self):
        port1, port2 = self.lab['iscsi_port'], self.lab['iscsi_port2']
        vol = self.volume(1)
        self.driver.create_volume(vol)
        update = self.driver.create_export(self.ctxt, vol, self.connector())
        for key, value in update.items():
            setattr(vol, key, value)
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(
                self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
                attach_status='attached', connector=self.connector())])
        info = self.driver.initialize_connection(vol, self.connector())
        data = info['data']
        iqn, lun = data['target_iqn'], data['target_lun']
        self.assertEqual('127.0.0.1:%d' % port1, data['target_portal'])
        self.assertEqual(['127.0.0.1:%d' % port1, '127.0.0.1:%d' % port2],
                         data['target_portals'])
        self.assertEqual([iqn, iqn], data['target_iqns'])
        self.assertEqual([lun, lun], data['target_luns'])
        # listening() is sorted; the lab's two free ports come in any order
        self.assertEqual(sorted([port1, port2]),
                         [p for p in self.listening(iqn)
                          if p in (port1, port2)])

        # the same LUN through each path: what one writes the other reads
        one, two = self.paths(info)
        one.write_pattern(0x3c, MiB)
        two.verify_pattern(0x3c, MiB)
        two.write_pattern(0x5d, MiB, offset=MiB)
        one.verify_pattern(0x5d, MiB, offset=MiB)

        # the primary path is lost: the other still reads and writes
        self.close_portal(iqn, port1)
        self.assertRaises(initiator.LoginRefused, one.size)
        two.verify_pattern(0x3c, MiB)
        two.write_pattern(0x6e, MiB, offset=2 * MiB)
        two.verify_pattern(0x6e, MiB, offset=2 * MiB)

        # ensure_export (cinder-volume's start) opens it again
        self.driver.ensure_export(self.ctxt, vol)
        one.verify_pattern(0x6e, MiB, offset=2 * MiB)

        # and the second path is lost the same way
        self.close_portal(iqn, port2)
        self.assertRaises(initiator.LoginRefused, two.size)
        one.verify_pattern(0x5d, MiB, offset=MiB)

        # both come back after the target service restarts (tgt:
        # cinder-zol-tgt-portals from the recorded ports; LIO: its saved
        # configuration), without the driver
        self.restart_target_service()
        one.verify_pattern(0x3c, MiB)
        two.verify_pattern(0x6e, MiB, offset=2 * MiB)

        self.driver.terminate_connection(vol, self.connector())
        self.driver.remove_export(self.ctxt, vol)
        self.assertRaises(initiator.LoginRefused, two.size)
        self.assertNotIn(iqn, self.shell.targets())
        # nothing records the ports any more: a restart opens neither
        self.assertEqual('', self.guest(
            'grep -l "cinder-zol listens" /etc/tgt/conf.d/* 2>/dev/null; '
            'grep -l %s /etc/rtslib-fb-target/saveconfig.json 2>/dev/null; '
            'true' % shlex.quote(iqn)))
        self.driver.delete_volume(vol)
