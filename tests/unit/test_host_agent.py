"""The agent's ways in (one request, session, SSH forced command), the
request grammar and the zfs command grammar, hostile input first."""

import io
import json
import os

from unittest import mock

import ddt
import testtools

from cinder_zol.host import agent
from cinder_zol.host import config
from cinder_zol.host import errors
from cinder_zol.host import grammar
from cinder_zol.host import names
from cinder_zol.host.root import main as root_main
from cinder_zol.host import serve
from cinder_zol.host import wire
from tests import scenarios
from tests.unit import host_fixture
from tests.unit import test_driver

PARENT = host_fixture.PARENT
PROGRAM = wire.PROGRAM


def ssh_command(*argv):
    return agent.canonical([PROGRAM] + list(argv))


HOSTILE_COMMANDS = [
    # not our program, or a shell
    'zfs destroy -r tank',
    'sh -c id',
    'bash',
    '/bin/sh -i',
    'python3 -',
    'internal-sftp',
    'scp -t /tmp',
    'sudo -n /usr/libexec/cinder-zol/cinder-zol-target session',
    'tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 '
    '--backing-store /dev/vda',
    # our program, smuggling shell syntax or non-canonical quoting
    PROGRAM + ' version; id',
    PROGRAM + ' version && id',
    PROGRAM + ' version | sh',
    PROGRAM + ' version $(id)',
    PROGRAM + ' version `id`',
    PROGRAM + ' "version"',
    PROGRAM + '  version',
    PROGRAM + ' version\nid',
    PROGRAM + " delete 'tank/cinder' volume-a",
    PROGRAM + ' delete tank/cinder volume-a > /tmp/x',
    # our program, outside the vocabulary or the parent
    ssh_command('destroy', 'tank/cinder/volume-a'),
    ssh_command('delete', 'tank', 'cinder'),
    ssh_command('delete', 'tank/other', 'volume-a'),
    ssh_command('delete', 'tank/cinder-evil', 'volume-a'),
    ssh_command('delete', 'tank/cinder/x', 'volume-a'),
    ssh_command('delete', PARENT, '../x'),
    ssh_command('delete', PARENT, 'a/b'),
    ssh_command('delete', PARENT, '-R'),
    ssh_command('delete', PARENT, 'volume-a', '-R'),
    ssh_command('delete', PARENT, 'volume-a@s'),
    ssh_command('delete', PARENT, '.hidden'),
    ssh_command('delete', PARENT, 'volume-a;id'),
    ssh_command('delete', PARENT, 'vol\u0430me'),   # Cyrillic a
    ssh_command('create', PARENT, 'volume-a', '-1'),
    ssh_command('create', PARENT, 'volume-a', '1G'),
    ssh_command('snapshot', PARENT, 'snap'),
    ssh_command('write', PARENT, '../../../dev/vda'),
    ssh_command('target-export', PARENT, 'volume-a', 'iscsi-evil'),
    ssh_command('session', 'extra'),
    ssh_command('--ssh-wrapper'),
    ssh_command(),
    '',
    'x' * (wire.MAX_COMMAND + 1),
]


def hostile_ids():
    return ['%02d' % i for i in range(len(HOSTILE_COMMANDS))]


@ddt.ddt
class SshWrapperTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = host_fixture.make_host()
        self.syslog = self.useFixture_syslog()

    def useFixture_syslog(self):
        lines = []
        patcher = mock.patch.object(agent.log, 'syslog',
                                    lambda msg, warning=False: lines.append(
                                        ('W' if warning else 'I', msg)))
        patcher.start()
        self.addCleanup(patcher.stop)
        return lines

    def wrap(self, command, stdin=b''):
        env = {'SSH_CONNECTION': '192.0.2.7 5555 192.0.2.1 22'}
        if command is not None:
            env['SSH_ORIGINAL_COMMAND'] = command
        out = io.StringIO()
        err = io.StringIO()
        with mock.patch.dict(os.environ, env, clear=True), \
                mock.patch('sys.stdout', out), mock.patch('sys.stderr', err), \
                mock.patch('sys.stdin', io.TextIOWrapper(io.BytesIO(stdin))):
            rc = agent.ssh_wrapper(self.host)
        return rc, out.getvalue(), err.getvalue()

    @ddt.data(*range(len(HOSTILE_COMMANDS)))
    def test_hostile_command_refused(self, index):
        command = HOSTILE_COMMANDS[index]
        zfs = self.host.executor.tools['zfs']
        before = sorted(zfs.datasets)
        rc, out, err = self.wrap(command)
        self.assertEqual(wire.REFUSED_EXIT, rc, command)
        self.assertIn('cinder-zol-host: refused:', err)
        self.assertEqual(1, len(err.strip().splitlines()))
        self.assertEqual(before, sorted(zfs.datasets))
        self.assertEqual([], self.host.executor.calls)
        self.assertEqual(1, len(self.syslog), self.syslog)
        level, line = self.syslog[0]
        self.assertEqual('W', level)
        self.assertTrue(line.startswith('request from 192.0.2.7: '), line)
        self.assertIn(' -> REFUSED (Refused: ', line)

    def test_interactive_login_refused(self):
        rc, _out, err = self.wrap(None)
        self.assertEqual(wire.REFUSED_EXIT, rc)
        self.assertIn('interactive logins are not allowed', err)

    def test_request_runs_and_is_logged(self):
        rc, out, _err = self.wrap(ssh_command('create', PARENT, 'volume-a',
                                              '1073741824'),
                                  b'{"sparse": true}')
        self.assertEqual(0, rc)
        self.assertTrue(json.loads(out)['ok'])
        self.assertIn(PARENT + '/volume-a',
                      self.host.executor.tools['zfs'].datasets)
        self.assertEqual([('I', 'request from 192.0.2.7: ["create", "%s", '
                                '"volume-a", "1073741824"] -> ok; payload '
                                '{"sparse": true}' % PARENT)], self.syslog)

    def test_not_owned_is_a_refusal(self):
        self.host.executor.tools['zfs']._add(PARENT + '/legacy', 'volume',
                                             volsize=2 ** 30)
        rc, out, err = self.wrap(ssh_command('delete', PARENT, 'legacy'))
        self.assertEqual(wire.REFUSED_EXIT, rc)
        self.assertEqual('NotOwned', json.loads(out)['error']['kind'])
        self.assertIn('cinder-zol-host: refused:', err)
        self.assertIn(PARENT + '/legacy',
                      self.host.executor.tools['zfs'].datasets)
        self.assertEqual(1, len(self.syslog))
        self.assertEqual('W', self.syslog[0][0])
        self.assertIn('-> REFUSED (NotOwned: ', self.syslog[0][1])

    def test_failure_is_logged_with_its_kind(self):
        self.host.executor.tools['zfs'].fail['list'] = 'cannot open: I/O'
        rc, _out, _err = self.wrap(ssh_command('delete', PARENT, 'volume-a'))
        self.assertEqual(1, rc)
        self.assertEqual(1, len(self.syslog))
        self.assertIn('-> failed (Error: zfs list', self.syslog[0][1])

    def test_every_session_request_logged_once(self):
        requests = b''.join(json.dumps(r).encode() + b'\n' for r in (
            {'argv': ['create', PARENT, 'volume-a', '1073741824'],
             'payload': {}},
            {'argv': ['destroy', PARENT, 'volume-a'], 'payload': {}},
            {'argv': ['delete', PARENT, 'volume-a'], 'payload': {}}))
        rc, _out, _err = self.wrap(ssh_command('session'), requests)
        self.assertEqual(0, rc)
        lines = [line for _level, line in self.syslog]
        self.assertEqual(4, len(lines), lines)
        self.assertIn('["session"] -> session opened', lines[0])
        self.assertIn('"create"', lines[1])
        self.assertIn('-> ok', lines[1])
        self.assertIn('"destroy"', lines[2])
        self.assertIn('-> REFUSED (Refused: unknown operation', lines[2])
        self.assertIn('"delete"', lines[3])
        self.assertIn('-> ok', lines[3])
        for line in lines:
            self.assertTrue(line.startswith('request from 192.0.2.7: '))

    def handed_over(self, env, euid):
        """What the agent execs for a stream request: (program, argv, env)."""
        self.host.target_runner = None
        with mock.patch.dict(os.environ, env, clear=True), \
                mock.patch.object(agent.os, 'geteuid', return_value=euid), \
                mock.patch.object(agent.os, 'execve',
                                  side_effect=SystemExit(0)) as execve:
            self.assertRaises(SystemExit, agent.ssh_wrapper, self.host)
        return execve.call_args[0]

    def test_stream_drops_the_client_environment(self):
        env = {'SSH_ORIGINAL_COMMAND': ssh_command('write', PARENT, 'vol-a'),
               'LANG': 'xx', 'LC_ALL': 'evil', 'PYTHONPATH': '/tmp/evil'}
        program, argv, environment = self.handed_over(env, 1000)
        self.assertEqual('/usr/bin/sudo', program)
        self.assertEqual(['sudo', '-n', '--', wire.ROOT_PROGRAM, 'write',
                          PARENT, 'vol-a'], argv)
        self.assertEqual(agent.execute.ENV, environment)
        self.assertIn('-> handed to the root helper', self.syslog[-1][1])

    def test_stream_as_root_runs_the_root_helper_without_sudo(self):
        env = {'SSH_ORIGINAL_COMMAND': ssh_command('read', PARENT, 'vol-a')}
        program, argv, environment = self.handed_over(env, 0)
        self.assertEqual(wire.ROOT_PROGRAM, program)
        self.assertEqual([wire.ROOT_PROGRAM, 'read', PARENT, 'vol-a'], argv)
        self.assertEqual(agent.execute.ENV, environment)

    def test_root_session_as_root_runs_the_root_helper_without_sudo(self):
        with mock.patch.object(agent.os, 'geteuid', return_value=0):
            self.assertEqual([wire.ROOT_PROGRAM, 'session'],
                             agent.root_command(['session']))
        with mock.patch.object(agent.os, 'geteuid', return_value=1000):
            self.assertEqual(['sudo', '-n', '--', wire.ROOT_PROGRAM,
                              'session'], agent.root_command(['session']))

    def test_session_through_the_wrapper(self):
        requests = b''.join(json.dumps(r).encode() + b'\n' for r in (
            {'argv': ['create', PARENT, 'volume-a', '1073741824'],
             'payload': {}},
            {'argv': ['destroy', PARENT, 'volume-a'], 'payload': {}},
            {'argv': ['delete', PARENT, 'volume-a'], 'payload': {}}))
        rc, out, _err = self.wrap(ssh_command('session'), requests)
        self.assertEqual(0, rc)
        replies = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([True, False, True], [r['ok'] for r in replies])
        self.assertEqual('Refused', replies[1]['error']['kind'])
        self.assertEqual('destroyed', replies[2]['result']['result'])

    def test_error_reply_and_exit_status(self):
        rc, out, _err = self.wrap(ssh_command('delete', PARENT, 'volume-a'))
        self.assertEqual(0, rc)    # a missing volume is deleted
        self.host.executor.tools['zfs'].fail['list'] = 'cannot open: I/O'
        rc, out, _err = self.wrap(ssh_command('delete', PARENT, 'volume-a'))
        self.assertEqual(1, rc)
        self.assertEqual('Error', json.loads(out)['error']['kind'])


@ddt.ddt
class SessionTestCase(testtools.TestCase):

    def serve(self, *lines):
        host = host_fixture.make_host()
        inp = io.BytesIO(b''.join(
            (line if isinstance(line, bytes) else
             json.dumps(line).encode()) + b'\n' for line in lines))
        out = io.StringIO()
        self.assertEqual(0, agent.session(host, inp, out))
        return [json.loads(line) for line in out.getvalue().splitlines()]

    def test_one_reply_per_request_even_for_garbage(self):
        replies = self.serve({'argv': ['version'], 'payload': {}},
                             b'not json', {'no': 'argv'},
                             {'argv': ['write', PARENT, 'volume-a']},
                             {'argv': ['version']})
        self.assertEqual([True, False, False, False, True],
                         [r['ok'] for r in replies])
        self.assertIn('streams data', replies[3]['error']['message'])

    @ddt.data(b'not json', b'[' * 100000, b'{"argv": ["version"]' + b'\xff}',
              b'\xff\xfe', b'"a string"', b'{"argv": "version"}',
              b'{"argv": [["version"]]}', b'{"argv": ["check", {}]}',
              b'{"argv": ' + b'[' * 5000 + b']' * 5000 + b'}')
    def test_malformed_line_refused_and_session_goes_on(self, line):
        replies = self.serve(line, {'argv': ['version']})
        self.assertEqual(2, len(replies))
        self.assertEqual('Refused', replies[0]['error']['kind'])
        self.assertTrue(replies[1]['ok'])

    def test_too_long_line_discarded_to_its_newline(self):
        long_line = b'{"argv": ["version"], "x": "' + \
            b'a' * (wire.MAX_REQUEST * 2 + 10) + b'"}'
        replies = self.serve(long_line, {'argv': ['version']})
        self.assertEqual(2, len(replies))
        self.assertEqual('Refused', replies[0]['error']['kind'])
        self.assertIn('longer than', replies[0]['error']['message'])
        self.assertTrue(replies[1]['ok'])

    def test_unexpected_exception_answered_and_session_goes_on(self):
        with mock.patch.dict(serve.IMPLEMENTATIONS, {
                'version': mock.Mock(side_effect=KeyError('boom'))}):
            replies = self.serve({'argv': ['version']}, {'argv': ['check',
                                                                  PARENT]})
        self.assertFalse(replies[0]['ok'])
        self.assertIn('unexpected KeyError', replies[0]['error']['message'])
        self.assertTrue(replies[1]['ok'])

    def test_secrets_never_logged(self):
        secret = 'verySecret123456'
        lines = []
        with mock.patch.object(agent.log, 'syslog',
                               lambda msg, warning=False: lines.append(msg)):
            self.serve({'argv': ['target-export', PARENT, 'volume-a',
                                 'tgtadm'],
                        'payload': {'iqn': 'iqn.2010-10.org.x:volume-a',
                                    'chap': ['user\n', secret],
                                    'initiators': []}},
                       {'argv': ['version'],
                        'payload': {'password': secret,
                                    'nested': [{'auth_key': secret}]}})
        self.assertEqual(2, len(lines))
        self.assertNotIn(secret, '\n'.join(lines))
        self.assertIn('"chap": ["user\\n", "***"]', lines[0])
        self.assertIn('REFUSED (Refused: CHAP user name', lines[0])
        self.assertIn('"password": "***"', lines[1])

    def test_target_only_session_refuses_zfs_operations(self):
        host = host_fixture.make_host()
        inp = io.BytesIO(json.dumps({'argv': ['delete', PARENT, 'x']})
                         .encode() + b'\n')
        out = io.StringIO()
        serve.session(host, root_main.dispatch, inp, out, root_only=True)
        reply = json.loads(out.getvalue())
        self.assertEqual('Refused', reply['error']['kind'])
        self.assertIn('not a root helper operation',
                      reply['error']['message'])


class RootHelperTestCase(testtools.TestCase):
    """cinder-zol-target, as sudo runs it: one audit line per request."""

    def run_helper(self, argv, stdin):
        lines = []
        self.addCleanup(agent.log.set_origin, 'request')
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.object(agent.log, 'syslog',
                               lambda msg, warning=False: lines.append(msg)), \
                mock.patch.object(root_main.config_mod, 'load',
                                  return_value=host_fixture.make_host()
                                  .config), \
                mock.patch.dict(os.environ, {'SUDO_USER': 'cinder-zol'}), \
                mock.patch('sys.stdin', io.TextIOWrapper(io.BytesIO(stdin))), \
                mock.patch('sys.stdout', out), mock.patch('sys.stderr', err):
            rc = root_main.main(argv)
        return rc, out.getvalue(), err.getvalue(), lines

    def test_one_shot_refusal(self):
        rc, out, err, lines = self.run_helper(['delete', PARENT, 'volume-a'],
                                              b'{}')
        self.assertEqual(wire.REFUSED_EXIT, rc)
        self.assertIn('cinder-zol-target: refused: delete is not a root '
                      'helper operation', err)
        self.assertEqual('Refused', json.loads(out)['error']['kind'])
        self.assertEqual(['root helper request for cinder-zol: ["delete", '
                          '"%s", "volume-a"] -> REFUSED (Refused: delete is '
                          'not a root helper operation); payload null'
                          % PARENT], lines)

    def test_session_requests(self):
        rc, out, _err, lines = self.run_helper(['session'], b''.join(
            json.dumps(r).encode() + b'\n' for r in (
                {'argv': ['target-version', 'nvmet']},
                {'argv': ['check', PARENT]},
                {'argv': ['target-remove', PARENT, 'volume-a', 'nvmet'],
                 'payload': {'iqn': 'iqn.2010-10.org.x:a',
                             'chap': ['u', 'p' * 12]}})) + b'[' * 100000)
        self.assertEqual(0, rc)
        self.assertEqual(4, len(out.splitlines()))
        self.assertEqual(4, len(lines), lines)
        for line in lines:
            self.assertTrue(line.startswith('root helper request for '
                                            'cinder-zol: '), line)
        self.assertIn('REFUSED (Refused: target helper', lines[0])
        self.assertIn('REFUSED (Refused: check is not a root helper', lines[1])
        self.assertNotIn('p' * 12, lines[2])
        self.assertIn('unreadable -> REFUSED (Refused: request is not UTF-8 '
                      'JSON', lines[3])


@ddt.ddt
class RequestGrammarTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.config = host_fixture.make_host().config

    @ddt.data(['version'], ['check', PARENT], ['create', PARENT, 'volume-a',
                                               '1073741824'],
              ['snapshot', PARENT, 'snap-1', 'volume-a', 'volume-b'],
              ['target-export', PARENT, 'volume-a', 'tgtadm'])
    def test_allowed(self, argv):
        self.assertEqual(argv[0], wire.parse(argv, self.config)[0].name)

    @ddt.data(['create', PARENT, 'volume-a'],
              ['create', PARENT, 'volume-a', '0'],
              ['create', PARENT, 'volume-a', '1', 'x'],
              ['delete', PARENT], ['version', 'x'],
              ['target-export', PARENT, 'volume-a', 'nvmet'],
              ['clone', PARENT, 'a', 'b', '01'])
    def test_refused(self, argv):
        self.assertRaises(errors.Refused, wire.parse, argv, self.config)

    def test_every_operation_has_a_spec_the_parser_accepts(self):
        samples = {'PARENT': PARENT, 'NAME': 'volume-a', 'SNAP': 'snap-1',
                   'SIZE': '1073741824', 'HELPER': 'tgtadm',
                   'NAMES': 'volume-b', 'SNAPSHOTS': 'volume-b@snap-1'}
        for name, operation in wire.OPERATIONS.items():
            argv = [name] + [samples[k] for k in operation.spec]
            self.assertEqual(name, wire.parse(argv, self.config)[0].name)


@ddt.ddt
class ZfsGrammarTestCase(testtools.TestCase):

    def check(self, *argv):
        return grammar.check_zfs(['zfs'] + list(argv), [PARENT])

    @ddt.data(
        ['destroy', '-r', PARENT + '/volume-a'],
        ['destroy', '-R', PARENT + '/volume-a'],
        ['destroy', PARENT + '/volume-a', '-R'],
        ['destroy', PARENT],
        ['destroy', 'tank'],
        ['destroy', 'tank/cinder-evil/volume-a'],
        ['destroy', 'tank/other/volume-a'],
        ['destroy', PARENT + '/a/b'],
        ['destroy', PARENT + '/volume-a@snap'],
        ['destroy', '-d', PARENT + '@snap'],
        ['send', PARENT + '/volume-a@s'],
        ['receive', PARENT + '/volume-b'],
        ['allow', 'everyone', 'destroy', PARENT],
        ['set', 'mountpoint=/etc', PARENT + '/volume-a'],
        ['set', 'sharenfs=on', PARENT + '/volume-a'],
        ['set', 'volsize=1G', PARENT],
        ['create', '-V', '1073741824', PARENT + '/volume-a'],
        ['create', '-V', '1073741824', '-o', 'cinder_zol:managed=yes',
         '-o', 'mountpoint=/x', PARENT + '/volume-a'],
        # every new zvol is volmode=dev, and stays so
        ['create', '-V', '1073741824', '-o', 'cinder_zol:managed=yes',
         PARENT + '/volume-a'],
        ['create', '-V', '1073741824', '-o', 'cinder_zol:managed=yes',
         '-o', 'volmode=full', PARENT + '/volume-a'],
        ['clone', '-o', 'cinder_zol:managed=yes', PARENT + '/volume-a@s',
         PARENT + '/volume-b'],
        ['set', 'volmode=full', PARENT + '/volume-a'],
        ['inherit', 'volmode', PARENT + '/volume-a'],
        # control characters
        ['create', '-V', '1073741824\n', '-o', 'cinder_zol:managed=yes',
         '-o', 'volmode=dev', PARENT + '/volume-a'],
        ['create', '-V', '1073741824', '-o', 'cinder_zol:managed=yes',
         '-o', 'volmode=dev', PARENT + '/volume-a\n'],
        ['set', 'compression=lz4\n', PARENT + '/volume-a'],
        ['set', 'cinder_zol:image_hash=md5:00\r', PARENT + '/volume-a'],
        ['list', '-H', '-p', '-o', 'name', '-t', 'all', '-d', '1',
         PARENT + '\n'],
        ['clone', PARENT + '/volume-a@s', PARENT + '/volume-b'],
        ['rename', PARENT + '/volume-a', 'tank/volume-a'],
        ['rollback', '-R', PARENT + '/volume-a@s'],
        ['inherit', 'volsize', PARENT + '/volume-a'],
        ['list', '-H', PARENT],
        ['get', 'all', PARENT],
        ['program', 'tank', '/tmp/x.lua'])
    def test_refused(self, argv):
        self.assertRaises(errors.Refused, self.check, *argv)

    def test_every_command_of_the_scenarios_is_in_the_grammar(self):
        """Drift guard: the host's zfs commands all pass the grammar.

        Each argv the host code built while playing the whole dependency
        table passed the grammar (ZfsHost checks before it runs anything;
        a refusal would have failed the scenario).
        """
        case = test_driver.DependencyScenarioTestCase(
            'test_scenario_01_chain_deleted_from_the_leaf')
        case.setUp()
        try:
            for name in sorted(scenarios.SCENARIOS):
                scenarios.ScenarioRunner(case.driver, case.check_alive).play(
                    scenarios.SCENARIOS[name])
            verbs = set(c[1] for c in case.zfs.calls)
            for argv in case.zfs.calls:
                grammar.check_zfs(argv, [PARENT])
        finally:
            case.doCleanups()
        self.assertLessEqual({'create', 'snapshot', 'clone', 'destroy',
                              'rename', 'promote', 'rollback', 'list'},
                             verbs)


@ddt.ddt
class NamesTestCase(testtools.TestCase):

    @ddt.data('volume-1', 'deleted-volume-1-00ff', 'a', 'A.b:c_d-e')
    def test_component_ok(self, name):
        self.assertEqual(name, names.component(name))

    @ddt.data('', '-o', '.x', '..', 'a..b', 'a/b', 'a@b', 'a b', 'a;b',
              '$(x)', 'a\nb', 'x' * 201, None, 5, 'vol\u0430me')
    def test_component_refused(self, name):
        self.assertRaises(errors.Refused, names.component, name)

    @ddt.data('tank', 'tank/../etc', '/tank', 'tank//x', 'tank/x y', '')
    def test_parent_refused(self, parent):
        self.assertRaises(errors.Refused, names.parent, parent)

    def test_chap_secret_never_echoed(self):
        e = self.assertRaises(errors.Refused, names.chap,
                              ['user', 'bad secret with spaces'])
        self.assertNotIn('bad secret', str(e))
        e = self.assertRaises(errors.Refused, names.chap, ['user', 'short'])
        self.assertNotIn('short', str(e).replace('shorter', ''))

    @ddt.data('iqn.2010-10.org.openstack:volume-1', 'eui.0123456789abcdef',
              'naa.0123456789abcdef')
    def test_iscsi_names(self, name):
        self.assertEqual(name, names.iscsi_name(name))

    @ddt.data('iqn.2010-10.org.openstack:x y', 'iqn.x', 'ALL', '*',
              'iqn.2010-10.org.openstack:a;b')
    def test_bad_iscsi_names(self, name):
        self.assertRaises(errors.Refused, names.iscsi_name, name)


@ddt.ddt
class HostConfTestCase(testtools.TestCase):
    """/etc/cinder-zol/host.conf keys and their defaults."""

    def test_defaults(self):
        conf = config.parse('datasets = %s\n' % PARENT)
        self.assertEqual([3260, 4420], conf.target_ports)
        self.assertEqual(4, conf.max_streams)
        self.assertEqual([], conf.pool_features)

    def test_keys(self):
        conf = config.parse('datasets = %s\ntarget_ports = 3260 13260\n'
                            'max_streams = 2\npool_features = zstd dedup\n'
                            % PARENT)
        self.assertEqual([3260, 13260], conf.target_ports)
        self.assertEqual(2, conf.max_streams)
        self.assertEqual(['zstd', 'dedup'], conf.pool_features)
        self.assertEqual([], config.parse('target_ports =').target_ports)

    @ddt.data('target_ports = 3260 x', 'target_ports = 0',
              'target_ports = 65536', 'target_ports = \u0663260',
              'max_streams = 0', 'max_streams = -1',
              'pool_features = zstd bogus')
    def test_bad_values(self, line):
        e = self.assertRaises(errors.Unavailable, config.parse,
                              'datasets = %s\n%s\n' % (PARENT, line))
        self.assertIn(config.PATH, str(e))

    def test_check_port(self):
        conf = config.parse('target_ports = 3260 13260')
        self.assertEqual(13260, conf.check_port(13260))
        for port in (4420, '3260', True, None, 3260.0):
            e = self.assertRaises(errors.Refused, conf.check_port, port)
            self.assertIn('"target_ports" in %s' % config.PATH, e.hint)
            self.assertIn('setup-storage-host.sh --target-port', e.hint)
