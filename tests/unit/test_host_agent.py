"""The agent's ways in (one request, session, SSH forced command), the
request grammar and the zfs command grammar, hostile input first."""

import io
import json
import os

from unittest import mock

import ddt
import testtools

from cinder_zol.host import agent
from cinder_zol.host import errors
from cinder_zol.host import grammar
from cinder_zol.host import names
from cinder_zol.host import ops
from tests import scenarios
from tests.unit import host_fixture
from tests.unit import test_driver

PARENT = host_fixture.PARENT
PROGRAM = agent.PROGRAM


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
    'x' * (agent.MAX_COMMAND + 1),
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
        self.assertEqual(agent.REFUSED_EXIT, rc, command)
        self.assertIn('cinder-zol-host: refused:', err)
        self.assertEqual(1, len(err.strip().splitlines()))
        self.assertEqual(before, sorted(zfs.datasets))
        self.assertEqual([], self.host.executor.calls)
        self.assertTrue(self.syslog[-1][1].startswith('REFUSED from '
                                                      '192.0.2.7'))

    def test_interactive_login_refused(self):
        rc, _out, err = self.wrap(None)
        self.assertEqual(agent.REFUSED_EXIT, rc)
        self.assertIn('interactive logins are not allowed', err)

    def test_request_runs_and_is_logged(self):
        rc, out, _err = self.wrap(ssh_command('create', PARENT, 'volume-a',
                                              '1073741824'),
                                  b'{"sparse": true}')
        self.assertEqual(0, rc)
        self.assertTrue(json.loads(out)['ok'])
        self.assertIn(PARENT + '/volume-a',
                      self.host.executor.tools['zfs'].datasets)
        self.assertEqual(('I', 'RUN from 192.0.2.7: create %s volume-a '
                               '1073741824' % PARENT), self.syslog[0])

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

    def test_target_only_session_refuses_zfs_operations(self):
        host = host_fixture.make_host()
        inp = io.BytesIO(json.dumps({'argv': ['delete', PARENT, 'x']})
                         .encode() + b'\n')
        out = io.StringIO()
        agent.session(host, inp, out, target_only=True)
        reply = json.loads(out.getvalue())
        self.assertEqual('Refused', reply['error']['kind'])
        self.assertIn('not a root helper operation',
                      reply['error']['message'])


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
        self.assertEqual(argv[0], ops.parse(argv, self.config)[0].name)

    @ddt.data(['create', PARENT, 'volume-a'],
              ['create', PARENT, 'volume-a', '0'],
              ['create', PARENT, 'volume-a', '1', 'x'],
              ['delete', PARENT], ['version', 'x'],
              ['target-export', PARENT, 'volume-a', 'nvmet'],
              ['clone', PARENT, 'a', 'b', '01'])
    def test_refused(self, argv):
        self.assertRaises(errors.Refused, ops.parse, argv, self.config)

    def test_every_operation_has_a_spec_the_parser_accepts(self):
        samples = {'PARENT': PARENT, 'NAME': 'volume-a', 'SNAP': 'snap-1',
                   'SIZE': '1073741824', 'HELPER': 'tgtadm',
                   'NAMES': 'volume-b', 'SNAPSHOTS': 'volume-b@snap-1'}
        for name, operation in ops.OPERATIONS.items():
            argv = [name] + [samples[k] for k in operation.spec]
            self.assertEqual(name, ops.parse(argv, self.config)[0].name)


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
