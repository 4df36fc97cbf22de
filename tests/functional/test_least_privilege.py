"""The least-privilege storage host, attacked with the driver's own key.

The lab sets the guest up as setup-storage-host.sh does by default: the
driver logs in as ``cinder-zol``, sshd forces every command of that key
through the agent's wrapper, zfs runs with ``zfs allow`` on the parent
only, and sudo allows the root helper only. Every hostile command below
goes through the driver's own SSH runner (same key, same connection pool)
and must be refused with nothing changed on the storage host.
"""

import shlex

import paramiko

from tests.functional import base

HOST_PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-host'
TARGET_PROGRAM = '/usr/libexec/cinder-zol/cinder-zol-target'


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
            line = self.runner.request(program, argv, '{}')
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
