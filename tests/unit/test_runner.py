"""The command runner over real SSH (in-process server) and locally."""

import os
import subprocess
import threading

import fixtures

from oslo_concurrency import processutils
import paramiko
import testtools

from cinder.tests.unit import test

from cinder_zol import exception
from cinder_zol import runner
from tests.unit import ssh_server


class CommandLineTestCase(testtools.TestCase):

    def test_quotes_every_argument(self):
        self.assertEqual("zfs create -o 'a=b c' 'tank/x;reboot' '$(id)'",
                         runner.command_line(['zfs', 'create', '-o', 'a=b c',
                                              'tank/x;reboot', '$(id)']))

    def test_refuses_nul(self):
        self.assertRaises(exception.UnsafeName, runner.command_line,
                          ['echo', 'a\0b'])

    def test_newline_stays_inside_the_argument(self):
        self.assertEqual("sh -c 'echo a\nreboot'",
                         runner.command_line(['sh', '-c', 'echo a\nreboot']))

    def test_refuses_shell_strings(self):
        self.assertRaises(ValueError, runner.command_line, 'zfs list')
        self.assertRaises(ValueError, runner.command_line, [])


class LocalRunnerTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.runner = runner.LocalRunner(timeout=10)

    def test_output_and_stdin(self):
        result = self.runner.run(['sh', '-c', 'cat; echo err >&2'],
                                 input='hello\n')
        self.assertEqual('hello\n', result.stdout)
        self.assertEqual('err\n', result.stderr)

    def test_exit_code_always_checked(self):
        e = self.assertRaises(processutils.ProcessExecutionError,
                              self.runner.run,
                              ['sh', '-c', 'echo boom >&2; exit 3'])
        self.assertEqual(3, e.exit_code)
        self.assertIn('boom', e.stderr)

    def test_missing_program(self):
        e = self.assertRaises(processutils.ProcessExecutionError,
                              self.runner.run, ['no-such-program-zol'])
        self.assertEqual(127, e.exit_code)

    def test_timeout(self):
        self.assertRaises(exception.CommandTimeout, self.runner.run,
                          ['sleep', '5'], timeout=0.3)

    def test_secrets_masked_in_errors(self):
        e = self.assertRaises(processutils.ProcessExecutionError,
                              self.runner.run,
                              ['sh', '-c', 'exit 1', 'password=hunter2'])
        self.assertNotIn('hunter2', e.cmd)


class SshRunnerTestCase(test.TestCase):

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.key_file = os.path.join(tmp, 'id_ed25519')
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '',
                        '-f', self.key_file], check=True)
        client_key = paramiko.PKey.from_path(self.key_file)
        self.server = ssh_server.SshServer(client_key).start()
        self.addCleanup(self.server.stop)
        self.known_hosts = os.path.join(tmp, 'known_hosts')
        with open(self.known_hosts, 'w') as f:
            f.write(self.server.known_hosts_line())

    def make(self, **kwargs):
        kwargs.setdefault('key_file', self.key_file)
        kwargs.setdefault('known_hosts', self.known_hosts)
        r = runner.SshRunner('127.0.0.1', self.server.port, 'cinder',
                             conn_timeout=5, timeout=10, **kwargs)
        self.addCleanup(r.close)
        return r

    def test_ed25519_key_stdin_and_exit_codes(self):
        r = self.make()
        self.assertEqual('in put\n', r.run(['cat'], input=b'in put\n').stdout)
        e = self.assertRaises(processutils.ProcessExecutionError, r.run,
                              ['sh', '-c', 'echo "no such pool" >&2; exit 2'])
        self.assertEqual(2, e.exit_code)
        self.assertIn('no such pool', e.stderr)

    def test_arguments_arrive_verbatim(self):
        r = self.make()
        odd = "it's $(id) `x` ; | & > * ?\nline two"
        self.assertEqual(odd + '\n', r.run(['printf', '%s\\n', odd]).stdout)

    def test_connections_reused(self):
        r = self.make()
        for _ in range(3):
            r.run(['true'])
        self.assertEqual(1, len(self.server.transports))

    def test_broken_connection_replaced(self):
        r = self.make()
        r.run(['true'])
        self.server.drop_connections()
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_parallel_commands_share_a_bounded_pool(self):
        r = self.make(max_size=2)
        results = []

        def work():
            results.append(r.run(['sh', '-c', 'sleep 0.2; echo x']).stdout)
        threads = [threading.Thread(target=work) for _ in range(5)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        self.assertEqual(['x\n'] * 5, results)
        self.assertLessEqual(len(self.server.transports), 2)

    def test_timeout(self):
        r = self.make()
        e = self.assertRaises(exception.CommandTimeout, r.run, ['sleep', '5'],
                              timeout=0.5)
        self.assertIn('sleep 5', str(e))
        self.assertEqual('still\n', r.run(['echo', 'still']).stdout)

    def test_unknown_host_key_refused(self):
        os.unlink(self.known_hosts)
        r = self.make()
        e = self.assertRaises(exception.HostKeyNotTrusted, r.run, ['true'])
        self.assertIn('ssh-keyscan -p %d 127.0.0.1' % self.server.port,
                      str(e))
        self.assertIn(self.known_hosts, str(e))
        self.assertEqual([], self.server.commands)

    def test_changed_host_key_refused_even_with_tofu(self):
        other = paramiko.ECDSAKey.generate()
        with open(self.known_hosts, 'w') as f:
            f.write(self.server.known_hosts_line(other))
        r = self.make(trust_on_first_use=True)
        e = self.assertRaises(exception.HostKeyNotTrusted, r.run, ['true'])
        self.assertIn('CHANGED', str(e))
        self.assertEqual([], self.server.commands)

    def test_trust_on_first_use_records_key(self):
        os.unlink(self.known_hosts)
        r = self.make(trust_on_first_use=True)
        r.run(['true'])
        with open(self.known_hosts) as f:
            self.assertIn(self.server.host_key.get_base64(), f.read())

    def test_password_login(self):
        r = self.make(key_file=None, password='secret-pw')
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_wrong_credentials(self):
        r = self.make(key_file=None, password='wrong')
        e = self.assertRaises(exception.StorageHostUnreachable, r.run,
                              ['true'])
        self.assertIn('san_login', str(e))

    def test_unreadable_key(self):
        r = self.make(key_file='/nonexistent/key')
        e = self.assertRaises(exception.StorageHostUnreachable, r.run,
                              ['true'])
        self.assertIn('cannot load san_private_key', str(e))

    def test_host_down(self):
        self.server.stop()
        r = self.make()
        self.assertRaises(exception.StorageHostUnreachable, r.run, ['true'])

    def test_sudo_prefix(self):
        r = self.make(sudo=True)
        self.assertRaises(processutils.ProcessExecutionError, r.run,
                          ['zfs', 'list'])
        self.assertEqual("sudo -n -- zfs list", self.server.commands[-1])

    def test_secrets_never_logged(self):
        r = self.make()
        logs = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        r.run(['cat'], input='CHAP-SECRET-123')
        r.run(['true', 'password=hunter2'])
        self.assertNotIn('CHAP-SECRET-123', logs.output)
        self.assertNotIn('hunter2', logs.output)
        self.assertIn('cat', logs.output)
