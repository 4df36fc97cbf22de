"""NVMe-oF/TCP export through the kernel nvmet target on the real guest.

This machine has no NVMe initiator: the guest is its own, with nvme-cli
and the kernel's nvme-tcp over loopback, on the port the driver advertises
(the lab forwards ``nvme_port`` to the same number in the guest). The
driver is configured for nvmet whichever target the lab pass activated, so
the module runs in any pass; ``--target nvmet`` is the one meant for it.
"""

import json
import shlex
import uuid

from cinder import objects

from tests.functional import base

MiB = 2 ** 20
GiB = 2 ** 30
NVMET = '/sys/kernel/config/nvmet'
q = shlex.quote


class NvmetExportTestCase(base.LabTestCase):

    def make_driver(self, **overrides):
        overrides.setdefault('zol_target_helper', 'nvmet')
        overrides.setdefault('target_protocol', 'nvmet_tcp')
        overrides.setdefault('target_port', self.shell.nvme_port)
        return super().make_driver(**overrides)

    def setUp(self):
        super().setUp()
        if not self.shell.nvme_port:
            self.fail('the lab guest forwards no NVMe/TCP port '
                      '(CINDER_ZOL_LAB_NVME_PORT): an older lab?')
        self.guest('modprobe nvme-tcp')
        self.addCleanup(self.guest, 'nvme disconnect-all >/dev/null 2>&1; '
                        'true', check=False)

    # -- helpers ---------------------------------------------------------

    def host_nqn(self):
        return self.guest('nvme gen-hostnqn').strip()

    def connector(self, nqn):
        return {'nqn': nqn, 'host': 'lab-host', 'ip': '127.0.0.1',
                'multipath': False}

    def export(self, vol, nqn):
        """create_export + initialize_connection, as cinder-volume does."""
        update = self.driver.create_export(self.ctxt, vol,
                                           self.connector(nqn))
        for key, value in (update or {}).items():
            setattr(vol, key, value)
        return self.driver.initialize_connection(vol, self.connector(nqn))

    def attached(self, vol, *nqns):
        vol.volume_attachment = objects.VolumeAttachmentList(objects=[
            objects.VolumeAttachment(
                self.ctxt, id=str(uuid.uuid4()), volume_id=vol.id,
                attach_status='attached', connector=self.connector(n))
            for n in nqns])

    def connect(self, data, host_nqn, check=True):
        """nvme connect from inside the guest to the first portal."""
        address, port, transport = data['portals'][0]
        r = self.shell.run(
            'nvme connect -t %s -a %s -s %s -n %s --hostnqn %s'
            % (q(transport), q(address), q(str(port)),
               q(data['target_nqn']), q(host_nqn)), check=False)
        if check and r.returncode:
            self.fail('nvme connect failed (%s): %s%s'
                      % (r.returncode, r.stdout, r.stderr))
        return r

    def device(self, vol_uuid):
        """The namespace's block device in the guest, found by its uuid."""
        # nvmeXcYnZ are the hidden per-path nodes of native multipath
        return self.guest(
            'for i in $(seq 1 100); do for d in /sys/block/nvme*n*; do '
            'case ${d##*/} in nvme*c*) continue;; esac; '
            '[ "$(cat $d/uuid 2>/dev/null)" = %s ] && '
            'echo /dev/${d##*/} && exit 0; done; sleep 0.1; done; '
            'echo "no namespace with uuid %s" >&2; '
            'nvme list >&2; exit 1' % (q(vol_uuid), vol_uuid)).strip()

    def configfs(self):
        """Every object below the nvmet configfs root."""
        return self.guest('cd %s 2>/dev/null && find subsystems ports hosts '
                          '-mindepth 1 -maxdepth 1 | sort || true'
                          % NVMET).split()

    def allowed(self, nqn):
        return self.guest('ls %s/subsystems/%s/allowed_hosts'
                          % (NVMET, q(nqn))).split()

    # -- tests -------------------------------------------------------------

    def test_connect_write_read_extend_and_remove(self):
        print('\nguest kernel: %s' % self.guest(
            'uname -r; modinfo -F filename nvmet nvmet-tcp nvme-tcp'
        ).replace('\n', ' '))
        host, stranger = self.host_nqn(), self.host_nqn()
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol, host)
        print('connection info: %s' % json.dumps(info, sort_keys=True))
        data = info['data']
        self.assertEqual('nvmeof', info['driver_volume_type'])
        self.assertEqual('nqn.2010-10.org.openstack:' + vol.name,
                         data['target_nqn'])
        self.assertEqual(vol.name_id, data['vol_uuid'])
        self.assertEqual([['127.0.0.1', str(self.shell.nvme_port), 'tcp']],
                         [list(p) for p in data['portals']])
        self.assertEqual('0', self.guest(
            'cat %s/subsystems/%s/attr_allow_any_host'
            % (NVMET, q(data['target_nqn']))).strip())

        # a host nobody allowed is refused by the target
        refused = self.connect(data, stranger, check=False)
        print('stranger: rc %s: %s' % (refused.returncode,
                                       refused.stderr.strip()))
        self.assertNotEqual(0, refused.returncode)

        self.connect(data, host)
        dev = self.device(data['vol_uuid'])
        self.assertEqual(str(GiB), self.guest(
            'blockdev --getsize64 %s' % dev).strip())
        # data written through NVMe/TCP is in the zvol, and reads back
        written = self.guest(
            'head -c %d /dev/urandom > /tmp/nvme.in; '
            'dd if=/tmp/nvme.in of=%s bs=1M seek=3 oflag=direct '
            'status=none; md5sum < /tmp/nvme.in' % (4 * MiB, dev)).split()[0]
        through = self.guest('dd if=%s bs=1M skip=3 count=4 iflag=direct '
                             'status=none | md5sum' % dev).split()[0]
        local = self.guest('dd if=/dev/zvol/%s/%s bs=1M skip=3 count=4 '
                           'iflag=direct status=none | md5sum'
                           % (self.parent, vol.name)).split()[0]
        self.assertEqual(written, through)
        self.assertEqual(written, local)

        # online extend: the initiator sees the new size without a rescan
        self.driver.extend_volume(vol, 2)
        vol.size = 2
        size = self.guest('for i in $(seq 1 200); do '
                          's=$(blockdev --getsize64 %s); '
                          '[ "$s" = %d ] && break; sleep 0.1; done; echo $s'
                          % (dev, 2 * GiB)).strip()
        self.assertEqual(str(2 * GiB), size)

        self.guest('nvme disconnect -n %s >/dev/null'
                   % q(data['target_nqn']))
        self.attached(vol, host)
        self.assertFalse(self.driver.terminate_connection(
            vol, self.connector(host)))
        self.assertEqual([], self.allowed(data['target_nqn']))
        self.driver.remove_export(self.ctxt, vol)
        self.assertEqual([], self.configfs())
        self.driver.delete_volume(vol)

    def test_two_hosts_then_lost_exports(self):
        host_a, host_b = self.host_nqn(), self.host_nqn()
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.export(vol, host_a)
        info = self.export(vol, host_b)
        nqn = info['data']['target_nqn']
        self.assertEqual(sorted([host_a, host_b]), self.allowed(nqn))
        self.attached(vol, host_a, host_b)

        # the target lost everything (reboot): ensure_export brings the
        # subsystem back with the same identity and both hosts
        self.shell.drop_exports()
        self.assertEqual([], self.configfs())
        self.driver.ensure_export(self.ctxt, vol)
        self.assertEqual(sorted([host_a, host_b]), self.allowed(nqn))
        self.assertEqual(vol.name_id, self.guest(
            'cat %s/subsystems/%s/namespaces/1/device_uuid'
            % (NVMET, q(nqn))).strip())
        self.connect(info['data'], host_b)
        self.device(info['data']['vol_uuid'])
        self.guest('nvme disconnect -n %s >/dev/null' % q(nqn))

        # one host leaves: the export stays for the other
        self.assertTrue(self.driver.terminate_connection(
            vol, self.connector(host_a)))
        self.assertEqual([host_b], self.allowed(nqn))
        self.attached(vol, host_b)
        self.assertFalse(self.driver.terminate_connection(
            vol, self.connector(host_b)))
        self.driver.remove_export(self.ctxt, vol)
        self.assertEqual([], self.configfs())
        # remove_export again (never exported now) does nothing
        vol.provider_location = None
        self.driver.remove_export(self.ctxt, vol)
        self.driver.delete_volume(vol)

    def test_storage_host_reboot_with_cinder_volume_running(self):
        """nvmet forgets its exports at a reboot; they come back by boot.

        The root helper's records restore them before, and without, any
        driver call.
        """
        host = self.host_nqn()
        vol = self.volume(1)
        self.driver.create_volume(vol)
        info = self.export(vol, host)
        data = info['data']
        self.attached(vol, host)
        self.connect(data, host)
        dev = self.device(data['vol_uuid'])
        # conv=fsync: the initiator's flush, as a filesystem's commit sends
        # it; without one the data may still be in ZFS's open transaction
        # group when the host is reset (seen: the old data came back)
        written = self.guest(
            'head -c %d /dev/urandom > /var/tmp/nvme.in; '
            'dd if=/var/tmp/nvme.in of=%s bs=1M oflag=direct conv=fsync '
            'status=none; '
            'md5sum < /var/tmp/nvme.in' % (4 * MiB, dev)).split()[0]
        before = self.configfs()
        # a reset, not a shutdown: the guest is also the initiator, and a
        # storage host going down takes no initiator's session with it
        self.shell.reboot(crash=True)
        print(self.guest('systemctl status --no-pager '
                         'cinder-zol-target-restore.service; true',
                         check=False))
        # back by itself: the same subsystem, host and port
        self.assertEqual(before, self.configfs())
        self.assertEqual([host], self.allowed(data['target_nqn']))
        self.assertEqual('active', self.guest(
            'systemctl show -P ActiveState '
            'cinder-zol-target-restore.service').strip())
        # the guest is its own initiator, so it rebooted too: it connects
        # again with the same host NQN and finds the data
        self.guest('modprobe nvme-tcp')
        self.connect(data, host)
        dev = self.device(data['vol_uuid'])
        self.assertEqual(written, self.guest(
            'dd if=%s bs=1M count=4 iflag=direct status=none | md5sum'
            % dev).split()[0])
        self.guest('nvme disconnect -n %s >/dev/null'
                   % q(data['target_nqn']))
        # the same driver object (cinder-volume kept running) goes on
        self.assertFalse(self.driver.terminate_connection(
            vol, self.connector(host)))
        self.driver.remove_export(self.ctxt, vol)
        self.assertEqual([], self.configfs())
        self.driver.delete_volume(vol)
