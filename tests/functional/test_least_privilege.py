"""The least-privilege storage host, attacked with the driver's own key.

The lab sets the guest up as setup-storage-host.sh does by default: the
driver logs in as ``cinder-zol``, sshd forces every command of that key
through the agent's wrapper, zfs runs with ``zfs allow`` on the parent
only, and sudo allows the root helper only. Every hostile command below
goes through the driver's own SSH runner (same key, same connection pool)
and must be refused with nothing changed on the storage host.
"""

import json
import shlex
import time

from oslo_utils import units
import paramiko

from cinder_zol import exception
from tests.functional import base

HOST_PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-host'
TARGET_PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-target'
# An LVM2 physical volume label (what pvcreate writes in sector 1, with
# LVM's CRC), for a guest without lvm2: blkid calls it LVM2_member.
PV_LABEL = """
import struct, sys, zlib
uuid = b'CinderZolLabTenantPv0123456789ab'
tail = struct.pack('<I8s32sQ', 32, b'LVM2 001', uuid, 1 << 30)
tail = tail.ljust(512 - 20, b'\\0')
crc = zlib.crc32(tail, 0xf597a6cf ^ 0xffffffff) ^ 0xffffffff
with open(sys.argv[1], 'r+b') as dev:
    dev.seek(512)
    dev.write(struct.pack('<8sQI', b'LABELONE', 1, crc) + tail)
"""


class LeastPrivilegeTestCase(base.LabTestCase):

    def setUp(self):
        super().setUp()
        if self.lab.get('mode') != 'least-privilege':
            self.fail('the lab guest is set up in %r mode; this test needs '
                      'the default least-privilege setup'
                      % self.lab.get('mode'))
        self.runner = self.driver.runner
        self.parent = self.lab['parent']

    def host_state(self):
        """Everything a hostile command could have changed, as root sees."""
        return self.guest(
            'zfs list -H -o name -t all -r %(pool)s; '
            'zfs allow %(parent)s; '
            'tgtadm --lld iscsi --mode target --op show 2>/dev/null; '
            'ls /sys/kernel/config/target/iscsi 2>/dev/null; '
            'ls -la /etc/tgt/conf.d /etc/sudoers.d /tmp; '
            'cat /etc/passwd' % {'pool': shlex.quote(self.lab['pool']),
                                 'parent': shlex.quote(self.parent)})

    def properties_state(self):
        """Every locally set property below the pool, and tgt's configs."""
        return self.guest(
            'zfs get -H -p -s local -o name,property,value all -r %s; '
            'cat /etc/tgt/conf.d/*.conf 2>/dev/null; true'
            % shlex.quote(self.lab['pool']))

    def ask(self, argv, payload):
        """One request through the driver's session; the decoded reply."""
        return json.loads(self.runner.request(HOST_PROGRAM, argv, payload))

    def raw(self, command, stdin=None):
        """Send one command string as it is (no quoting) with the key."""
        return self.runner._execute(None, command, stdin, 60)

    def test_hostile_commands_refused(self):
        victim = self.volume(1)
        self.driver.create_volume(victim)
        self.addCleanup(self.driver.delete_volume, victim)
        path = '%s/%s' % (self.parent, victim.name)
        sibling = self.parent + '-evil'
        self.guest('zfs create -p %s' % shlex.quote(sibling + '/x'))
        self.addCleanup(self.guest, 'zfs destroy -r %s' % shlex.quote(
            sibling))
        q = shlex.quote
        hostile = [
            'zfs destroy -r %s' % q(self.lab['pool']),
            'zfs destroy %s/x' % q(sibling),
            'zfs destroy -R %s' % q(path),
            'zfs destroy %s -R' % q(path),
            'zfs send %s@x' % q(path),
            'zfs receive %s/stolen' % q(self.parent),
            'zfs allow everyone destroy %s' % q(self.parent),
            'zfs set mountpoint=/etc %s' % q(path),
            'zfs list; id',
            'id', 'sh', 'bash -i', 'python3 -', 'cat /etc/shadow',
            'sudo -n id',
            'sudo -n %s session' % TARGET_PROGRAM,
            'sudo -n tgtadm --lld iscsi --op new --mode logicalunit --tid 1 '
            '--lun 9 --backing-store /dev/vda',
            'tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 9 '
            '--backing-store /dev/vda',
            '%s delete %s x' % (HOST_PROGRAM, q(sibling)),
            '%s delete %s ../x' % (HOST_PROGRAM, q(self.parent)),
            '%s delete %s %s; id' % (HOST_PROGRAM, q(self.parent),
                                     victim.name),
            '%s delete %s "$(id)"' % (HOST_PROGRAM, q(self.parent)),
            '%s create %s x 1073741824 -o mountpoint=/x' % (
                HOST_PROGRAM, q(self.parent)),
            '%s write %s ../../../../dev/vda' % (HOST_PROGRAM,
                                                 q(self.parent)),
            '%s target-export %s %s tgtadm' % (HOST_PROGRAM, q(self.parent),
                                               victim.name),
        ]
        before = self.host_state()
        results = []
        for command in hostile:
            rc, out, err = self.raw(command)
            results.append((command, rc, err.decode().strip()))
        print('\nhostile command -> exit status, reason')
        for command, rc, err in results:
            print('  %-70s %3d %s' % (command[:70], rc, err[:90]))
        self.assertEqual(before, self.host_state())
        self.assertEqual([], [(c, rc, e) for c, rc, e in results
                              if rc != 126 or 'refused' not in e])

    def test_hostile_requests_refused(self):
        before = self.host_state()
        program = HOST_PROGRAM
        for argv in (['delete', self.lab['pool'], 'x'],
                     ['delete', self.parent + '-evil', 'x'],
                     ['create', self.parent, '..', '1073741824'],
                     ['rename', self.parent, 'volume-a', '-R'],
                     ['target-export', self.parent, 'x', 'scst']):
            line = self.runner.request(program, argv, {})
            self.assertIn('"ok": false', line)
            self.assertIn('"Refused"', line)
        self.assertEqual(before, self.host_state())

    def test_no_shell_no_pty_no_forwarding(self):
        with self.runner._connection() as conn:
            transport = conn.client.get_transport()
            chan = transport.open_session()
            # sshd refuses the pty (PermitTTY no, restrict)
            self.assertRaises(paramiko.SSHException, chan.get_pty)
            chan = transport.open_session()
            chan.invoke_shell()
            chan.settimeout(30)
            # the "shell" is the wrapper, refusing an interactive login
            self.assertEqual(126, chan.recv_exit_status())
            chan.close()
            self.assertRaises(paramiko.ChannelException,
                              transport.open_channel, 'direct-tcpip',
                              ('127.0.0.1', 22), ('127.0.0.1', 5555))
            chan = transport.open_session()
            chan.invoke_subsystem('sftp')
            self.assertEqual(126, chan.recv_exit_status())
            chan.close()

    def test_kernel_confines_zfs_outside_the_parent(self):
        """Even past the wrapper, zfs allow stops the account."""
        sibling = self.parent + '-evil'
        self.guest('zfs create -p %s/x' % shlex.quote(sibling))
        self.addCleanup(self.guest, 'zfs destroy -r %s' % shlex.quote(
            sibling))
        out = self.guest('runuser -u cinder-zol -- /usr/sbin/zfs destroy '
                         '%s/x 2>&1; runuser -u cinder-zol -- /usr/sbin/zfs '
                         'set compression=off %s 2>&1; true'
                         % (shlex.quote(sibling), shlex.quote(self.parent)))
        self.assertEqual(2, out.count('permission denied'), out)
        self.assertIn(sibling + '/x', self.guest(
            'zfs list -H -o name -r %s' % shlex.quote(sibling)))

    def test_root_helper_rechecks_what_sudo_lets_through(self):
        """sudo admits write/read with any names; the helper does not.

        It writes only into a managed zvol below an allowed parent.
        """
        out = self.guest(
            'cd /tmp && echo | runuser -u cinder-zol -- sudo -n %s write '
            '%s/../.. x 2>&1; echo rc=$?; echo | runuser -u cinder-zol -- '
            'sudo -n %s write tank vda 2>&1; echo rc=$?'
            % (TARGET_PROGRAM, shlex.quote(self.parent), TARGET_PROGRAM))
        self.assertEqual(2, out.count('rc=126'), out)

    # -- control characters --------------------------------------------------

    def test_control_characters_in_every_field_refused(self):
        """A newline or CR anywhere the key can put one changes nothing.

        Each request differs from a valid one in one field only.
        """
        victim = self.volume(1)
        self.driver.create_volume(victim)
        self.addCleanup(self.driver.delete_volume, victim)
        name, parent = victim.name, self.parent
        helper = self.lab['target'] or 'tgtadm'
        size = str(units.Gi)
        export = {'iqn': 'iqn.2010-10.org.openstack:' + name,
                  'chap': ['cinderUser', 'cinderSecret1234'],
                  'initiators': ['iqn.2026-11.org.cinder-zol:lp'],
                  'ports': [self.lab['iscsi_port']], 'serial': 'ab12cd34'}
        image = {'image_id': 'lp-image', 'props': {},
                 'hash': 'md5:' + 'ab' * 16}

        def changed(payload, key, value):
            return dict(payload, **{key: value})

        requests = []
        for c in ('\n', '\r'):
            requests += [
                (['create', parent + c, 'lp-x', size], {}),
                (['create', parent, 'lp-x' + c, size], {}),
                (['create', parent, 'lp-x', size + c], {}),
                (['create', parent, 'lp-x', size],
                 {'props': {'compression': 'lz4' + c}}),
                (['create', parent, 'lp-x', size],
                 {'props': {'compression' + c: 'lz4'}}),
                (['snapshot', parent, 'lp-snap' + c, name], {}),
                (['extend', parent, name, str(2 * units.Gi) + c], {}),
                (['target-export', parent, name, helper + c], export),
                (['target-export', parent, name, helper],
                 changed(export, 'iqn', export['iqn'] + c)),
                (['target-export', parent, name, helper],
                 changed(export, 'chap', ['evilUser' + c,
                                          'cinderSecret1234'])),
                (['target-export', parent, name, helper],
                 changed(export, 'chap', ['cinderUser',
                                          'cinderSecret1234' + c])),
                (['target-export', parent, name, helper],
                 changed(export, 'initiators',
                         [export['initiators'][0] + c])),
                (['target-export', parent, name, helper],
                 changed(export, 'serial', 'ab12cd34' + c)),
                (['target-allow', parent, name, helper],
                 {'iqn': export['iqn'], 'chap': None,
                  'initiator': export['initiators'][0] + c}),
                (['image-begin', parent, 'image-lp', size],
                 changed(image, 'hash', image['hash'] + c)),
                (['image-begin', parent, 'image-lp', size],
                 changed(image, 'image_id', 'lp-image' + c)),
            ]
        before = (self.host_state(), self.properties_state())
        wrong = []
        for argv, payload in requests:
            reply = self.ask(argv, payload)
            if reply['ok'] or reply['error']['kind'] != 'Refused':
                wrong.append((argv, payload, reply))
        self.assertEqual([], wrong)
        self.assertEqual(before, (self.host_state(), self.properties_state()))
        # the session is still usable, and sweeps and lists still parse
        self.assertTrue(self.ask(['sweep', parent], {})['ok'])

    # -- the pool ------------------------------------------------------------

    def free(self, dataset):
        return int(self.guest('zfs get -H -p -o value available %s'
                              % shlex.quote(dataset)))

    def test_parent_quota_bounds_what_the_key_takes(self):
        parent = shlex.quote(self.parent)
        quota = int(self.guest('zfs get -H -p -o value quota %s' % parent))
        self.assertGreater(quota, 0, 'setup-storage-host.sh sets a quota')
        self.assertNotIn('quota', self.guest('zfs allow %s' % parent))
        out = self.guest('runuser -u cinder-zol -- /usr/sbin/zfs set '
                         'quota=none %s 2>&1; true' % parent)
        self.assertIn('permission denied', out)
        parent_free = self.free(self.parent)
        pool_free = self.free(self.lab['pool'])
        self.assertGreater(pool_free - parent_free, units.Gi,
                           'the pool reserve stays free')
        # thick, more than the quota leaves, less than the pool has
        size = parent_free // units.Gi + 1
        self.override_config('san_thin_provision', False, base.GROUP)
        big = self.volume(size)
        e = self.assertRaises(exception.ZfsOutOfSpace,
                              self.driver.create_volume, big)
        print('\nthick %d GiB create over the quota: %s' % (size, e))
        self.assertIn('out of space', str(e))
        self.assertNotIn('%s/%s' % (self.parent, big.name), self.zfs_names())
        # a dataset outside the parent still gets that much
        outside = '%s/lp-outside' % self.lab['pool']
        self.addCleanup(self.guest, 'zfs destroy %s' % outside, check=False)
        self.guest('zfs create -V %dG %s' % (size, outside))
        self.assertEqual(quota, int(self.guest(
            'zfs get -H -p -o value quota %s' % parent)))

    def test_pool_feature_properties_refused(self):
        features = 'zpool get -H -o property,value all %s | grep feature@' \
            % shlex.quote(self.lab['pool'])
        before = self.guest(features)
        for props in ({'compression': 'zstd'}, {'dedup': 'on'},
                      {'checksum': 'blake3'}, {'volblocksize': '1M'}):
            self.override_config('zol_zvol_properties', props, base.GROUP)
            vol = self.volume(1)
            e = self.assertRaises(exception.HostRefused,
                                  self.driver.create_volume, vol)
            self.assertIn('"pool_features" in /etc/cinder-zol/host.conf',
                          str(e))
            self.assertNotIn('%s/%s' % (self.parent, vol.name),
                             self.zfs_names())
        self.assertEqual(before, self.guest(features))

    # -- tenant data ---------------------------------------------------------

    def test_tenant_data_is_never_probed_by_the_host(self):
        """A labelled filesystem and an LVM PV in zvols: no link, no VG.

        Written as root straight into driver-made zvols (with the real
        tools where the guest has them); the host then still exports and
        destroys them: nothing on it holds them open.
        """
        fs_vol, pv_vol = self.volume(1), self.volume(1)
        for vol in (fs_vol, pv_vol):
            self.driver.create_volume(vol)
            self.assertEqual('dev', self.zfs_get(vol.name, 'volmode'))
        has_lvm = bool(self.guest('command -v pvcreate || true').strip())
        script = """
set -e
fs=@FS@ pv=@PV@
udevadm settle
if command -v mkfs.ext4 >/dev/null; then mkfs.ext4 -q -F -L czlabel $fs
else mkswap -L czlabel $fs >/dev/null; fi
if [ @LVM@ = 1 ]; then
    # LVM's global_filter refuses zvols: lifted for these commands only,
    # as a tenant writing the same bytes would not need
    lvm="--config devices{global_filter=[\"a|.*|\"]}"
    pvcreate "$lvm" -ff -y $pv >/dev/null
    vgcreate "$lvm" czvg $pv >/dev/null
    lvcreate "$lvm" -an -Zn -L 8M -n czlv czvg >/dev/null
else
    python3 -c "$PV_LABEL" $pv
fi
for d in $fs $pv; do udevadm trigger --action=change "$(readlink -f $d)"; done
udevadm settle
echo "signature: $(blkid -p -o value -s TYPE $fs $pv | xargs)"
echo "by-label: $(ls /dev/disk/by-label 2>/dev/null | grep czlabel || true)"
echo "udev FS_TYPE: $(udevadm info -q property "$(readlink -f $fs)" \\
    "$(readlink -f $pv)" | grep ID_FS_TYPE || true)"
echo "partitions: $(ls "$(readlink -f $fs)"p* "$(readlink -f $pv)"p* \\
    2>/dev/null || true)"
echo "links: $(readlink -f $fs) $(readlink -f $pv)"
echo "vgs: $(vgs --noheadings -o vg_name 2>/dev/null | xargs)"
echo "active: $(dmsetup ls 2>/dev/null | grep czvg || true)"
""".replace('@FS@', '/dev/zvol/%s/%s' % (self.parent, fs_vol.name)).replace(
            '@PV@', '/dev/zvol/%s/%s' % (self.parent, pv_vol.name)).replace(
            '@LVM@', str(int(has_lvm)))
        out = self.guest('PV_LABEL=%s\n%s' % (shlex.quote(PV_LABEL), script))
        print('\nguest has lvm2: %s\n%s' % (has_lvm, out))
        self.assertRegex(out, r'signature: (ext4|swap) LVM2_member\n')
        for empty in ('by-label', 'udev FS_TYPE', 'partitions', 'vgs',
                      'active'):
            self.assertIn('\n%s: \n' % empty, out)
        self.assertRegex(out, r'links: /dev/zd[0-9]+ /dev/zd[0-9]+')
        connector = {'initiator': 'iqn.2026-11.org.cinder-zol:lp',
                     'ip': '127.0.0.1', 'host': 'lp-host', 'multipath': False}
        for vol in (fs_vol, pv_vol):
            update = self.driver.create_export(self.ctxt, vol, connector)
            for key, value in (update or {}).items():
                setattr(vol, key, value)
            self.driver.initialize_connection(vol, connector)
            self.driver.terminate_connection(vol, connector)
            self.driver.remove_export(self.ctxt, vol)
            self.driver.delete_volume(vol)

    # -- the audit trail -----------------------------------------------------

    def test_session_requests_leave_one_syslog_line_each(self):
        since = self.guest('date "+%Y-%m-%d %H:%M:%S"').strip()
        vol = self.volume(1)
        self.driver.create_volume(vol)
        self.addCleanup(self.driver.delete_volume, vol)
        self.assertEqual('Refused', self.ask(
            ['target-export', self.parent, vol.name,
             self.lab['target'] or 'tgtadm'],
            {'iqn': 'iqn.2010-10.org.openstack:' + vol.name,
             'chap': ['evilUser\n', 'evilSecret123456'],
             'initiators': [], 'ports': [self.lab['iscsi_port']],
             'serial': 'ab12cd34'})['error']['kind'])
        time.sleep(1)
        log = self.guest('journalctl -q -o cat -t cinder-zol --since %s'
                         % shlex.quote(since))
        print('\n' + log)
        mine = [line for line in log.splitlines() if vol.name in line]
        created = [line for line in mine if '["create"' in line]
        self.assertEqual(1, len(created), mine)
        self.assertRegex(created[0], r'^request from [0-9.]+: \["create", ')
        self.assertIn('-> ok; payload {', created[0])
        # the agent's line, and the root helper's (its sudo session)
        refused = sorted(line for line in mine
                         if '["target-export"' in line)
        self.assertEqual(2, len(refused), mine)
        self.assertRegex(refused[0], r'^request from [0-9.]+: ')
        self.assertTrue(refused[1].startswith(
            'root helper request for cinder-zol: '), refused[1])
        for line in refused:
            self.assertIn('-> REFUSED (Refused: ', line)
            self.assertIn('"chap": ["evilUser\\n", "***"]', line)
        self.assertNotIn('evilSecret123456', log)
