"""The command runner over real SSH (in-process server) and locally."""

import json
import os
import subprocess
import sys
import threading
import time
from unittest import mock

import fixtures

from oslo_concurrency import processutils
import paramiko
import testtools

# eventlet's monkey patching, as in cinder-volume (and the other unit tests)
from cinder.tests.unit import test  # noqa: F401

from cinder_zol import exception
from cinder_zol.host import wire
from cinder_zol import runner
from tests.unit import ssh_server

# A stand-in for cinder-zol-host speaking its line protocol: ``session``
# (one JSON request a line, one JSON reply a line) or one-shot ``OP ARG...``
# with the payload on stdin. Operations: anything (echoed back), ``sleep
# SECONDS [MARKER]`` (creates the file MARKER first), ``stderr TEXT``
# (written to stderr first), ``exit CODE`` (dies without a reply, after
# writing the payload's ``last_words`` to stderr).
FAKE_AGENT = r'''
import json
import os
import sys
import time


def handle(argv, payload):
    op = argv[0] if argv else ''
    if op == 'sleep':
        if len(argv) > 2:
            open(argv[2], 'w').close()
        time.sleep(float(argv[1]))
    elif op == 'stderr':
        sys.stderr.write(argv[1] + '\n')
        sys.stderr.flush()
    elif op == 'exit':
        sys.stderr.write(payload.get('last_words', ''))
        sys.stderr.flush()
        os._exit(int(argv[1]))
    return {'ok': True, 'notes': [],
            'result': {'argv': argv, 'payload': payload, 'pid': os.getpid(),
                       'session': SESSION}}


def reply(value):
    sys.stdout.write(json.dumps(value) + '\n')
    sys.stdout.flush()


SESSION = sys.argv[1:] == ['session']
if SESSION:
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            break
        request = json.loads(line)
        reply(handle(request['argv'], request.get('payload') or {}))
else:
    data = sys.stdin.buffer.read()
    reply(handle(sys.argv[1:], json.loads(data) if data.strip() else {}))
'''

MIB = 1024 * 1024


def write_agent(directory):
    """The fake agent as an executable ``python3 -S SCRIPT`` program."""
    path = os.path.join(directory, 'fake-agent')
    with open(path, 'w') as f:
        f.write('#!%s -S\n' % sys.executable + FAKE_AGENT)
    os.chmod(path, 0o755)
    return path


def chunked(data, size=256 * 1024):
    for offset in range(0, len(data), size):
        yield data[offset:offset + size]


def read_all(reader, size=100000):
    chunks = []
    while True:
        chunk = reader.read(size)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


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

    def test_request_line(self):
        self.assertEqual({'argv': ['create', 'tank/c', 'v'],
                          'payload': {'props': {}}},
                         json.loads(wire.request_line(
                             ['create', 'tank/c', 'v'], {'props': {}})))
        self.assertEqual({'argv': ['version'], 'payload': {}},
                         json.loads(wire.request_line(['version'], None)))
        self.assertTrue(wire.request_line(['version'], {}).endswith('\n'))


class LocalRunnerTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.runner = runner.LocalRunner(timeout=10)

    def test_output_and_stdin(self):
        result = self.runner.run(['sh', '-c', 'cat; echo err >&2'],
                                 input='hello\n')
        self.assertEqual('hello\n', result.stdout)
        self.assertEqual('err\n', result.stderr)
        self.assertEqual(0, result.exit_code)

    def test_exit_code_always_checked(self):
        e = self.assertRaises(processutils.ProcessExecutionError,
                              self.runner.run,
                              ['sh', '-c', 'echo boom >&2; exit 3'])
        self.assertEqual(3, e.exit_code)
        self.assertIn('boom', e.stderr)

    def test_exit_code_in_result_when_not_checked(self):
        result = self.runner.run(['sh', '-c', 'echo out; exit 3'],
                                 check_exit_code=False)
        self.assertEqual(('out\n', '', 3), tuple(result))

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

    def test_input_to_a_command_that_exits_early(self):
        # More than a pipe holds: under eventlet a pipe write would spin.
        e = self.assertRaises(processutils.ProcessExecutionError,
                              self.runner.run,
                              ['sh', '-c', 'echo refused >&2; exit 5'],
                              input=b'z' * (4 * MIB), timeout=5)
        self.assertEqual(5, e.exit_code)
        self.assertIn('refused', e.stderr)

    def test_timeout_while_writing_input(self):
        start = time.monotonic()
        self.assertRaises(exception.CommandTimeout, self.runner.run,
                          ['sleep', '5'], input=b'z' * (4 * MIB),
                          timeout=0.3)
        self.assertLess(time.monotonic() - start, 3)

    # -- one-shot agent requests -------------------------------------------

    def test_request_is_one_shot(self):
        agent = write_agent(self.tmp)
        line = self.runner.request(agent, ['echo', 'tank/c', 'a b'],
                                   {'props': {'x': '1'}})
        result = json.loads(line)['result']
        self.assertEqual(['echo', 'tank/c', 'a b'], result['argv'])
        self.assertEqual({'props': {'x': '1'}}, result['payload'])
        self.assertFalse(result['session'])
        second = json.loads(self.runner.request(agent, ['echo'], {}))
        self.assertNotEqual(result['pid'], second['result']['pid'])

    def test_request_without_reply(self):
        agent = write_agent(self.tmp)
        e = self.assertRaises(
            processutils.ProcessExecutionError, self.runner.request, agent,
            ['exit', '4'], {'last_words': 'agent broke\n'})
        self.assertEqual(4, e.exit_code)
        self.assertIn('agent broke', e.stderr)
        self.assertIn('no reply', e.description)

    def test_request_timeout(self):
        agent = write_agent(self.tmp)
        self.assertRaises(exception.CommandTimeout, self.runner.request,
                          agent, ['sleep', '5'], {}, timeout=0.5)

    # -- streams -----------------------------------------------------------

    def test_send_stream(self):
        data = os.urandom(3 * MIB)
        target = os.path.join(self.tmp, 'out')
        result = self.runner.send_stream(
            ['sh', '-c', 'cat > "$0"; echo stored; echo note >&2', target],
            chunked(data))
        self.assertEqual(('stored\n', 'note\n', 0), tuple(result))
        with open(target, 'rb') as f:
            self.assertEqual(data, f.read())

    def test_send_stream_to_a_failing_command(self):
        def chunks():
            yield b'x' * MIB
            time.sleep(0.2)     # the command has exited by now
            for _ in range(3):
                yield b'x' * MIB
        result = self.runner.send_stream(
            ['sh', '-c', 'echo "no such dataset" >&2; exit 3'], chunks())
        self.assertEqual(3, result.exit_code)
        self.assertEqual('no such dataset\n', result.stderr)

    def test_send_stream_with_much_output(self):
        # More output than a pipe holds, before all the input is read.
        result = self.runner.send_stream(
            ['sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" e >&2; '
             'wc -c'], chunked(b'y' * (2 * MIB)))
        self.assertEqual(str(2 * MIB), result.stdout.strip())
        self.assertEqual(300000, len(result.stderr))

    def test_send_stream_timeout(self):
        start = time.monotonic()
        self.assertRaises(exception.CommandTimeout, self.runner.send_stream,
                          ['sleep', '5'], chunked(b'x' * (8 * MIB)),
                          timeout=0.3)
        self.assertLess(time.monotonic() - start, 3)

    def test_send_stream_missing_program(self):
        result = self.runner.send_stream(['no-such-program-zol'], [b'x'])
        self.assertEqual(127, result.exit_code)
        self.assertIn('no-such-program-zol', result.stderr)

    def test_receive_stream(self):
        data = os.urandom(3 * MIB)
        source = os.path.join(self.tmp, 'in')
        with open(source, 'wb') as f:
            f.write(data)
        with self.runner.receive_stream(['cat', source]) as reader:
            self.assertEqual(data, read_all(reader))

    def test_receive_stream_failure_carries_stderr(self):
        e = self.assertRaises(processutils.ProcessExecutionError,
                              self._receive,
                              ['sh', '-c', 'echo "read failed" >&2; '
                               'head -c 200000 /dev/zero; exit 4'])
        self.assertEqual(4, e.exit_code)
        self.assertIn('read failed', e.stderr)

    def test_receive_stream_with_much_stderr(self):
        with self.runner.receive_stream(
                ['sh', '-c', 'head -c 300000 /dev/zero >&2; echo data']) \
                as reader:
            self.assertEqual(b'data\n', read_all(reader))

    def test_receive_stream_unread_data(self):
        def partly():
            with self.runner.receive_stream(
                    ['head', '-c', str(64 * MIB), '/dev/zero']) as reader:
                reader.read(MIB)
        e = self.assertRaises(processutils.ProcessExecutionError, partly)
        self.assertIn('unread data', str(e))

    def test_receive_stream_timeout(self):
        def slow():
            with self.runner.receive_stream(
                    ['sh', '-c', 'exec >&-; exec sleep 5'], timeout=0.5) as r:
                read_all(r)
        self.assertRaises(exception.CommandTimeout, slow)

    def _receive(self, argv):
        with self.runner.receive_stream(argv) as reader:
            return read_all(reader)


class SshRunnerTestCase(testtools.TestCase):
    """Against ssh_server: real SSH, commands run here through ``sh -c``.

    (testtools' TestCase rather than cinder's: nothing here needs cinder's
    database or policy set-up, which would double the file's run time.)
    """

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        # paramiko's and the runner's log, shown only when a test fails
        self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        self.tmp = tmp = self.useFixture(fixtures.TempDir()).path
        self.key_file = os.path.join(tmp, 'id_ed25519')
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '',
                        '-f', self.key_file], check=True)
        client_key = paramiko.PKey.from_path(self.key_file)
        self.server = ssh_server.SshServer(client_key).start()
        self.addCleanup(self.server.stop)
        self.known_hosts = os.path.join(tmp, 'known_hosts')
        with open(self.known_hosts, 'w') as f:
            f.write(self.server.known_hosts_line())
        self.agent = write_agent(tmp)

    def make(self, **kwargs):
        kwargs.setdefault('key_file', self.key_file)
        kwargs.setdefault('known_hosts', self.known_hosts)
        kwargs.setdefault('timeout', 10)
        r = runner.SshRunner('127.0.0.1', self.server.port, 'cinder',
                             conn_timeout=5, **kwargs)
        self.addCleanup(r.close)
        return r

    def request(self, r, argv, payload=None, **kwargs):
        """The result part of the fake agent's reply."""
        line = r.request(self.agent, argv, payload or {}, **kwargs)
        reply = json.loads(line)
        self.assertTrue(reply['ok'])
        return reply['result']

    def wait_for(self, condition, what, limit=5):
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                self.fail('timed out waiting for %s' % what)
            time.sleep(0.01)

    # -- run ---------------------------------------------------------------

    def test_ed25519_key_stdin_and_exit_codes(self):
        r = self.make()
        self.assertEqual('in put\n', r.run(['cat'], input=b'in put\n').stdout)
        e = self.assertRaises(processutils.ProcessExecutionError, r.run,
                              ['sh', '-c', 'echo "no such pool" >&2; exit 2'])
        self.assertEqual(2, e.exit_code)
        self.assertIn('no such pool', e.stderr)

    def test_exit_code_in_result_when_not_checked(self):
        r = self.make()
        result = r.run(['sh', '-c', 'echo out; echo err >&2; exit 3'],
                       check_exit_code=False)
        self.assertEqual(('out\n', 'err\n', 3), tuple(result))

    def test_output_after_the_exit_status(self):
        # sshd may send the exit status before the last of the output.
        self.server.exit_status_first = True
        r = self.make()
        result = r.run(['sh', '-c', 'echo out; echo err >&2; exit 3'],
                       check_exit_code=False)
        self.assertEqual(('out\n', 'err\n', 3), tuple(result))

    def test_input_to_a_command_that_exits_early(self):
        r = self.make()
        e = self.assertRaises(processutils.ProcessExecutionError, r.run,
                              ['sh', '-c', 'echo refused >&2; exit 5'],
                              input=b'z' * (4 * MIB))
        self.assertEqual(5, e.exit_code)
        self.assertIn('refused', e.stderr)

    def test_arguments_arrive_verbatim(self):
        r = self.make()
        odd = "it's $(id) `x` ; | & > * ?\nline two"
        self.assertEqual(odd + '\n', r.run(['printf', '%s\\n', odd]).stdout)

    def test_command_sent_as_quoted_no_prefix(self):
        r = self.make()
        self.assertRaises(processutils.ProcessExecutionError, r.run,
                          ['no-such-zfs', 'list', 'a b'])
        self.assertEqual(["no-such-zfs list 'a b'"], self.server.commands)

    def test_connections_reused(self):
        r = self.make()
        for _ in range(3):
            r.run(['true'])
        self.assertEqual(1, len(self.server.transports))
        self.assertEqual(3, self.server.exec_count())

    def test_broken_connection_replaced(self):
        r = self.make()
        r.run(['true'])
        self.server.drop_connections()
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_stale_pooled_connection_retried_once(self):
        r = self.make()
        r.run(['true'])
        self.server.drop_connections()
        self.wait_for(lambda: not r._idle[0].client.get_transport()
                      .is_active(), 'the client to see the drop')
        # As if the drop had not been noticed yet when the command left.
        with mock.patch.object(runner._Pooled, 'alive', return_value=True):
            self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        self.assertEqual(['true', 'echo ok'], self.server.commands)

    def test_connection_lost_during_a_command(self):
        r = self.make()
        self.in_background(lambda: self.server.processes('sleep 5'),
                           self.server.drop_connections,
                           'the command to start')
        e = self.assertRaises(exception.StorageHostConnectionLost, r.run,
                              ['sleep', '5'])
        self.assert_says_lost_mid_operation(e, 'sleep 5')
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def assert_says_lost_mid_operation(self, e, what):
        # a dropped connection is no credentials problem: say what happened
        # and what to do, not what to check in the configuration
        self.assertIsInstance(e, exception.StorageHostUnreachable)
        msg = str(e)
        self.assertIn('Lost the connection', msg)
        self.assertIn('in the middle of "%s"' % what, msg)
        self.assertIn('may or may not have completed', msg)
        self.assertIn('Retry', msg)
        self.assertNotIn('credentials', msg)
        self.assertNotIn('san_login', msg)

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

    def hold_transfers(self, r, count):
        """``count`` image reads in progress, held until cleanup."""
        started = []
        done = threading.Event()

        def transfer():
            with r.receive_stream(['echo', 'data']) as reader:
                started.append(reader.read(5))
                done.wait(30)
                read_all(reader)
        threads = [threading.Thread(target=transfer) for _ in range(count)]
        [t.start() for t in threads]
        self.addCleanup(lambda: [t.join() for t in threads])
        self.addCleanup(done.set)
        self.wait_for(lambda: len(started) == count, 'the transfers')

    def test_transfers_leave_requests_their_connections(self):
        r = self.make(max_size=2, timeout=3)
        self.hold_transfers(r, 2)
        start = time.monotonic()
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        self.assertEqual(['echo'], self.request(r, ['echo'])['argv'])
        self.assertLess(time.monotonic() - start, 2)

    def test_transfers_beyond_their_allowance_wait_then_say_so(self):
        r = self.make(max_transfers=1, timeout=1)
        self.hold_transfers(r, 1)
        e = self.assertRaises(exception.StorageHostError, r.send_stream,
                              ['cat'], [b'x'])
        self.assertIn('1 image transfer', str(e))
        self.assertIn('zol_max_image_transfers', str(e))
        self.assertNotIn('credentials', str(e))
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_requests_waiting_too_long_say_the_pool_was_busy(self):
        r = self.make(max_size=1, timeout=1)
        self.hold_transfers(r, 2)
        marker = os.path.join(self.tmp, 'sleeping')
        slow = threading.Thread(target=self.request,
                                args=(r, ['sleep', '3', marker]),
                                kwargs={'timeout': 10})
        slow.start()
        self.addCleanup(slow.join)
        self.wait_for(lambda: os.path.exists(marker), 'the slow request')
        e = self.assertRaises(exception.StorageHostError, r.run, ['true'])
        self.assertNotIsInstance(e, exception.StorageHostUnreachable)
        msg = str(e)
        self.assertIn('all 1 SSH connections for requests '
                      '(ssh_max_pool_conn) stayed busy', msg)
        self.assertIn('2 image transfer(s)', msg)
        self.assertNotIn('san_ip', msg)

    def test_timeout(self):
        r = self.make()
        e = self.assertRaises(exception.CommandTimeout, r.run, ['sleep', '5'],
                              timeout=0.5)
        self.assertIn('sleep 5', str(e))
        self.assertEqual('still\n', r.run(['echo', 'still']).stdout)

    # -- host keys and credentials -------------------------------------------

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
        # and a second runner trusts it without asking again
        self.make().run(['true'])

    def test_password_login(self):
        r = self.make(key_file=None, password='secret-pw')
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_wrong_credentials(self):
        r = self.make(key_file=None, password='wrong')
        e = self.assertRaises(exception.StorageHostUnreachable, r.run,
                              ['true'])
        # a refused login is about the configuration, not a lost operation
        self.assertNotIsInstance(e, exception.StorageHostConnectionLost)
        self.assertIn('san_login', str(e))
        self.assertIn('credentials (san_private_key or san_password)',
                      str(e))
        self.assertNotIn('may or may not', str(e))

    def test_unreadable_key(self):
        r = self.make(key_file='/nonexistent/key')
        e = self.assertRaises(exception.StorageHostUnreachable, r.run,
                              ['true'])
        self.assertIn('cannot load san_private_key', str(e))

    def test_host_down(self):
        self.server.stop()
        r = self.make()
        self.assertRaises(exception.StorageHostUnreachable, r.run, ['true'])
        self.assertRaises(exception.StorageHostUnreachable, r.request,
                          self.agent, ['version'], {})

    def test_secrets_never_logged(self):
        r = self.make()
        logs = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        r.run(['cat'], input='CHAP-SECRET-123')
        r.run(['true', 'password=hunter2'])
        self.assertNotIn('CHAP-SECRET-123', logs.output)
        self.assertNotIn('hunter2', logs.output)
        self.assertIn('cat', logs.output)

    def test_rekey_left_to_the_server(self):
        # paramiko's own rekey during a long receive stalls the transfer.
        r = self.make()
        r.run(['true'])
        packetizer = r._idle[0].client.get_transport().packetizer
        self.assertEqual(runner._REKEY_BYTES, packetizer.REKEY_BYTES)
        self.assertEqual(runner._REKEY_BYTES, packetizer.REKEY_PACKETS)
        self.assertGreaterEqual(runner._REKEY_BYTES, 2 ** 40)
        # per transport, not for every paramiko user in the process
        self.assertEqual(2 ** 29, paramiko.packet.Packetizer.REKEY_BYTES)
        self.assertEqual(2 ** 29, paramiko.packet.Packetizer.REKEY_PACKETS)

    def test_aes_gcm_preferred(self):
        r = self.make()
        r.run(['true'])
        transport = r._idle[0].client.get_transport()
        self.assertEqual('aes128-gcm@openssh.com', transport.local_cipher)
        self.assertEqual('aes128-gcm@openssh.com', transport.remote_cipher)
        # only the order changed: the ciphers are paramiko's own
        self.assertEqual(sorted(paramiko.Transport._preferred_ciphers),
                         sorted(transport.preferred_ciphers))

    def test_server_without_gcm_gets_ctr(self):
        self.server.disabled_algorithms = {
            'ciphers': ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com']}
        r = self.make()
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        transport = r._idle[0].client.get_transport()
        self.assertEqual('aes128-ctr', transport.remote_cipher)

    # -- agent sessions ------------------------------------------------------

    def test_requests_share_one_session(self):
        r = self.make()
        results = [self.request(r, ['echo', str(i), 'a b'], {'i': i})
                   for i in range(5)]
        self.assertEqual([['echo', str(i), 'a b'] for i in range(5)],
                         [res['argv'] for res in results])
        self.assertEqual([{'i': i} for i in range(5)],
                         [res['payload'] for res in results])
        self.assertTrue(all(res['session'] for res in results))
        self.assertEqual(1, len({res['pid'] for res in results}))
        self.assertEqual([runner.command_line([self.agent, 'session'])],
                         self.server.commands)
        self.assertEqual(1, len(self.server.transports))

    def test_session_and_commands_share_a_connection(self):
        r = self.make()
        pid = self.request(r, ['echo'])['pid']
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        self.assertEqual(pid, self.request(r, ['echo'])['pid'])
        self.assertEqual(1, len(self.server.transports))
        self.assertEqual(1, self.server.exec_count('session'))

    def test_concurrent_requests_use_bounded_sessions(self):
        r = self.make(max_size=2)
        results, errors = [], []

        def work():
            try:
                results.append(self.request(r, ['sleep', '0.2']))
            except Exception as e:   # reported below, not lost in a thread
                errors.append(e)
        threads = [threading.Thread(target=work) for _ in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        self.assertEqual([], errors)
        self.assertEqual(6, len(results))
        self.assertEqual(2, self.server.exec_count('session'))
        self.assertEqual(2, len({res['pid'] for res in results}))
        self.assertEqual(2, len(self.server.transports))
        # and the sessions stay open for the next requests
        self.request(r, ['echo'])
        self.assertEqual(2, self.server.exec_count('session'))

    def test_session_killed_between_requests_is_reopened(self):
        r = self.make()
        pid = self.request(r, ['echo'])['pid']
        self.assertEqual(1, self.server.kill('session'))
        session = r._idle[0].session
        self.wait_for(lambda: session.closed, 'the session to close')
        result = self.request(r, ['echo', 'again'])
        self.assertEqual(['echo', 'again'], result['argv'])
        self.assertNotEqual(pid, result['pid'])
        self.assertEqual(2, self.server.exec_count('session'))
        self.assertEqual(1, len(self.server.transports))

    def test_session_dying_during_a_request(self):
        r = self.make()
        pid = self.request(r, ['echo'])['pid']
        e = self.assertRaises(
            exception.StorageHostUnreachable, r.request, self.agent,
            ['exit', '3'], {'last_words': 'Traceback: boom\n'})
        self.assertIn('Traceback: boom', str(e))
        self.assertIn('exit status 3', str(e))
        result = self.request(r, ['echo', 'after'])
        self.assertEqual(['echo', 'after'], result['argv'])
        self.assertNotEqual(pid, result['pid'])
        # the request that killed the session is not sent again
        self.assertEqual(2, self.server.exec_count('session'))

    def in_background(self, condition, action, what):
        """Run action once condition holds, in a thread joined at cleanup."""
        def wait_then_act():
            self.wait_for(condition, what)
            action()
        thread = threading.Thread(target=wait_then_act)
        thread.start()
        self.addCleanup(thread.join)

    def test_session_killed_during_a_request(self):
        r = self.make()
        self.request(r, ['echo'])
        marker = os.path.join(self.tmp, 'sleeping')
        self.in_background(lambda: os.path.exists(marker),
                           lambda: self.server.kill('session'),
                           'the agent to start sleeping')
        e = self.assertRaises(exception.StorageHostConnectionLost,
                              r.request, self.agent, ['sleep', '5', marker],
                              {})
        self.assertIn('ended the session', str(e))
        self.assert_says_lost_mid_operation(e, 'sleep 5 ' + marker)
        self.assertEqual(['echo'], self.request(r, ['echo'])['argv'])

    def test_agent_stderr_does_not_disturb_replies(self):
        r = self.make()
        result = self.request(r, ['stderr', 'a warning'])
        self.assertEqual(['stderr', 'a warning'], result['argv'])
        self.assertEqual(['echo'], self.request(r, ['echo'])['argv'])

    def test_request_timeout_then_fresh_session(self):
        r = self.make()
        pid = self.request(r, ['echo'])['pid']
        start = time.monotonic()
        e = self.assertRaises(exception.CommandTimeout, r.request,
                              self.agent, ['sleep', '5'], {}, timeout=0.5)
        self.assertLess(time.monotonic() - start, 3)
        self.assertIn('sleep 5', str(e))
        result = self.request(r, ['echo', 'next'])
        self.assertEqual(['echo', 'next'], result['argv'])
        self.assertNotEqual(pid, result['pid'])
        self.assertEqual(2, self.server.exec_count('session'))

    def test_stale_connection_request_retried(self):
        r = self.make()
        self.request(r, ['echo'])
        self.server.drop_connections()
        self.wait_for(lambda: not r._idle[0].client.get_transport()
                      .is_active(), 'the client to see the drop')
        with mock.patch.object(runner._Pooled, 'alive', return_value=True):
            self.assertEqual(['echo', 'retried'],
                             self.request(r, ['echo', 'retried'])['argv'])
        self.assertEqual(2, self.server.exec_count('session'))

    def test_request_payload_never_logged(self):
        r = self.make()
        logs = self.useFixture(fixtures.FakeLogger(name='cinder_zol.runner',
                                                   level='DEBUG'))
        secret = {'chap': {'username': 'iqn-user',
                           'secret': 'CHAP-SECRET-4567'}}
        result = self.request(r, ['target-export', 'tank/c', 'v1'], secret)
        self.assertEqual(secret, result['payload'])
        self.assertRaises(exception.CommandTimeout, self.request, r,
                          ['sleep', '5'], secret, timeout=0.3)
        self.assertRaises(
            exception.StorageHostUnreachable, self.request, r, ['exit', '1'],
            dict(secret, last_words='password=hunter2\n'))
        self.request(r, ['echo', 'password=hunter3'])
        self.assertIn('target-export tank/c v1', logs.output)
        self.assertNotIn('CHAP-SECRET-4567', logs.output)
        self.assertNotIn('hunter2', logs.output)
        self.assertNotIn('hunter3', logs.output)

    def test_request_exception_masks_agent_stderr(self):
        r = self.make()
        e = self.assertRaises(
            exception.StorageHostUnreachable, r.request, self.agent,
            ['exit', '1'], {'last_words': 'password=hunter2\n'})
        self.assertNotIn('hunter2', str(e))

    # -- streams -----------------------------------------------------------

    def test_send_stream(self):
        r = self.make()
        data = os.urandom(5 * MIB)
        target = os.path.join(self.tmp, 'out')
        result = r.send_stream(
            ['sh', '-c', 'echo started >&2; cat > "$0"; echo stored',
             target], chunked(data))
        self.assertEqual(('stored\n', 'started\n', 0), tuple(result))
        with open(target, 'rb') as f:
            self.assertEqual(data, f.read())
        # the connection goes back to the pool
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        self.assertEqual(1, len(self.server.transports))

    def test_send_stream_to_a_failing_command(self):
        r = self.make()
        sent = []

        def chunks():
            for i in range(8):
                if i == 1:
                    # the command has ended and its channel is closed
                    self.wait_for(lambda: self.server.finished('dataset'),
                                  'the command to end')
                sent.append(i)
                yield b'x' * MIB
        result = r.send_stream(
            ['sh', '-c', 'echo "no such dataset" >&2; exit 3'], chunks())
        self.assertEqual(('', 'no such dataset\n', 3), tuple(result))
        self.assertLess(len(sent), 8)
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        self.assertEqual(1, len(self.server.transports))

    def test_send_stream_failing_source(self):
        r = self.make()

        def chunks():
            yield b'x' * 1000
            raise IOError('image download failed')
        self.assertRaises(IOError, r.send_stream, ['cat'], chunks())
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_send_stream_timeout(self):
        r = self.make()
        start = time.monotonic()
        self.assertRaises(exception.CommandTimeout, r.send_stream,
                          ['sleep', '5'], chunked(b'x' * (8 * MIB)),
                          timeout=0.5)
        self.assertLess(time.monotonic() - start, 3)

    def test_receive_stream(self):
        r = self.make()
        data = os.urandom(5 * MIB)
        source = os.path.join(self.tmp, 'in')
        with open(source, 'wb') as f:
            f.write(data)
        with r.receive_stream(['cat', source]) as reader:
            self.assertEqual(data[:10], reader.read(10))
            self.assertEqual(data[10:], read_all(reader, 333333))
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
        self.assertEqual(1, len(self.server.transports))

    def test_receive_stream_failure_carries_stderr(self):
        r = self.make()

        def receive():
            with r.receive_stream(['sh', '-c', 'echo "read failed" >&2; '
                                   'head -c 3000000 /dev/zero; exit 4']) \
                    as reader:
                self.assertEqual(3000000, len(read_all(reader)))
        e = self.assertRaises(processutils.ProcessExecutionError, receive)
        self.assertEqual(4, e.exit_code)
        self.assertIn('read failed', e.stderr)

    def test_receive_stream_unread_data(self):
        r = self.make()

        def partly():
            with r.receive_stream(['head', '-c', str(16 * MIB),
                                   '/dev/zero']) as reader:
                self.assertEqual(MIB, len(reader.read(MIB)))
        start = time.monotonic()
        e = self.assertRaises(processutils.ProcessExecutionError, partly)
        self.assertIn('unread data', str(e))
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_receive_stream_timeout(self):
        r = self.make()

        def slow():
            with r.receive_stream(['sleep', '5'], timeout=0.5) as reader:
                reader.read(10)
        self.assertRaises(exception.CommandTimeout, slow)
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_receive_stream_caller_errors_pass_through(self):
        r = self.make()

        def consumer():
            with r.receive_stream(['echo', 'data']) as reader:
                reader.read(2)
                raise OSError(28, 'No space left on device')
        e = self.assertRaises(OSError, consumer)
        self.assertEqual(28, e.errno)
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)

    def test_receive_stream_connection_lost(self):
        r = self.make()

        def receive():
            with r.receive_stream(['sh', '-c', 'echo a; sleep 5']) as reader:
                self.assertEqual(b'a\n', reader.read(2))
                self.server.drop_connections()
                read_all(reader)
        self.assertRaises(exception.StorageHostUnreachable, receive)
        self.assertEqual('ok\n', r.run(['echo', 'ok']).stdout)
