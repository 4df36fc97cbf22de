"""The lab's fault table: rows recorded by tests, printed by the lab."""

import os
import subprocess

import fixtures
import testtools

from cinder_zol_lab import faults


class FaultTableTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.env = {faults.RUN_DIR_ENV: self.dir,
                    faults.TARGET_ENV: 'tgtadm'}

    def test_rows_recorded_in_the_run_dir(self):
        faults.record('session killed', 'ZfsError: boom\nline 2', self.env)
        faults.record('  recovery', 'ok', self.env)
        self.assertEqual([('tgtadm', 'session killed',
                           'ZfsError: boom line 2'),
                          ('tgtadm', 'recovery', 'ok')],
                         faults.rows(os.path.join(self.dir, faults.FILE)))

    def test_no_run_dir_no_row(self):
        faults.record('x', 'y', {})
        self.assertEqual([], os.listdir(self.dir))

    def test_run_prints_its_table(self):
        faults.record('sshd restarted', 'completed', self.env)
        printed = []
        faults.hand_over(self.dir, printed.append, self.env)
        self.assertEqual(1, len(printed))
        self.assertIn('fault table (1 rows)', printed[0])
        self.assertIn('tgtadm   sshd restarted  completed', printed[0])

    def test_runs_collected_then_printed_once(self):
        collect = os.path.join(self.dir, 'all.tsv')
        printed = []
        for target in ('tgtadm', 'lioadm'):    # one lab run dir each
            run_dir = self.useFixture(fixtures.TempDir()).path
            env = {faults.RUN_DIR_ENV: run_dir, faults.TARGET_ENV: target,
                   faults.COLLECT_ENV: collect}
            faults.record('reboot', 'restored', env)
            faults.hand_over(run_dir, printed.append, env)
        self.assertEqual([], printed)
        text = faults.table(faults.rows(collect))
        self.assertIn('fault table (2 rows)', text)
        self.assertIn('tgtadm   reboot  restored', text)
        self.assertIn('lioadm   reboot  restored', text)

    def test_nothing_injected(self):
        self.assertIn('no fault', faults.table([]))
        printed = []
        faults.hand_over(self.dir, printed.append, self.env)
        self.assertEqual([], printed)

    def test_rows_handed_over_once(self):
        faults.record('reboot', 'restored', self.env)
        printed = []
        faults.hand_over(self.dir, printed.append, self.env)
        faults.hand_over(self.dir, printed.append, self.env)  # the lab's
        self.assertEqual(1, len(printed))

    def test_failed_tests_collected_beside_the_faults(self):
        collect = os.path.join(self.dir, 'faults.tsv')
        for target, failed in (('tgtadm', [('t.a', 'AssertionError: x')]),
                               ('lioadm', [])):
            run_dir = self.useFixture(fixtures.TempDir()).path
            env = {faults.RUN_DIR_ENV: run_dir, faults.TARGET_ENV: target,
                   faults.COLLECT_ENV: collect}
            faults.record_failed(run_dir, failed, env)
            faults.hand_over(run_dir, self.fail, env)
        text = faults.failed_table(faults.rows(
            os.path.join(self.dir, faults.FAILED)))
        self.assertIn('FAILED tests (1 rows)', text)
        self.assertIn('tgtadm   t.a   AssertionError: x', text)
        self.assertEqual('failed tests: none', faults.failed_table([]))


class StestrFailuresTestCase(testtools.TestCase):
    """Failures read from a real subunit stream, as `stestr last` gives."""

    def _stestr(self, stream):
        d = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(d, 'last.subunit'), 'wb') as f:
            f.write(stream)
        script = os.path.join(d, 'stestr')
        with open(script, 'w') as f:
            f.write('#!/bin/sh\n[ "$1 $2" = "last --subunit" ] && '
                    'exec cat %s/last.subunit\nexit 2\n' % d)
        os.chmod(script, 0o755)
        return script

    def test_failed_test_and_its_last_error_line(self):
        import io

        import subunit

        buf = io.BytesIO()
        out = subunit.StreamResultToBytes(buf)
        out.status(test_id='t.ok', test_status='success')
        out.status(test_id='t.bad', test_status='inprogress')
        out.status(test_id='t.bad', file_name='traceback',
                   file_bytes=b'Traceback:\n  x\nZfsError: busy\n',
                   mime_type='text/x-traceback; charset="utf8"')
        out.status(test_id='t.bad', test_status='fail')
        self.assertEqual([('t.bad', 'ZfsError: busy')],
                         faults.stestr_failures(self._stestr(buf.getvalue())))

    def test_no_stestr_says_so(self):
        [(what, error)] = faults.stestr_failures('/nonexistent/stestr')
        self.assertIn('unknown', error)


class FakeShell:
    """GuestShell.run's signature; records scripts, answers from a list."""

    def __init__(self, returncodes=()):
        self.calls = []
        self.returncodes = list(returncodes)

    def run(self, script, input=None, check=True):
        self.calls.append((script, input, check))
        rc = self.returncodes.pop(0) if self.returncodes else 0
        return subprocess.CompletedProcess(script, rc, '', '')


class HoldTestCase(testtools.TestCase):
    """The guest commands of a hold, and what its wrapper does."""

    def test_hold_installs_the_wrapper_over_the_program(self):
        shell = FakeShell()
        held = faults.hold(shell, 'tgtadm', 'logicalunit')
        d = '/usr/local/lib/cinder-zol-fault'
        [(script, wrapper, check)] = shell.calls
        self.assertEqual(
            f'set -e; mkdir -p {d}; '
            'rm -f /tmp/cinder-zol-fault.hit /tmp/cinder-zol-fault.go; '
            f'cp /usr/sbin/tgtadm {d}/tgtadm; cat > {d}/tgtadm-wrapper; '
            f'chmod 755 {d}/tgtadm-wrapper; '
            f'mount --bind {d}/tgtadm-wrapper /usr/sbin/tgtadm', script)
        self.assertTrue(check)
        self.assertEqual(faults.wrapper(f'{d}/tgtadm', 'logicalunit'),
                         wrapper)
        self.assertEqual('/usr/sbin/tgtadm', held.path)

    def test_go_then_release_once(self):
        shell = FakeShell()
        held = faults.Hold(shell, 'zfs')
        held.go()
        held.release()
        held.release()
        self.assertEqual(
            [('touch /tmp/cinder-zol-fault.go', None, True),
             ('touch /tmp/cinder-zol-fault.go; umount /usr/sbin/zfs', None,
              False)],
            shell.calls)

    def test_wait_hit(self):
        shell = FakeShell(returncodes=[1, 1, 0])
        held = faults.Hold(shell, 'zfs')
        self.assertTrue(held.wait_hit(timeout=10, interval=0))
        self.assertEqual(3 * [('test -e /tmp/cinder-zol-fault.hit', None,
                               False)], shell.calls)
        shell = FakeShell(returncodes=[1] * 100)
        self.assertFalse(faults.Hold(shell, 'zfs').wait_hit(timeout=0,
                                                            interval=0))

    def test_argument_or_leading(self):
        self.assertRaises(ValueError, faults.wrapper, '/bin/true')
        self.assertRaises(ValueError, faults.wrapper, '/bin/true', 'clone',
                          ('rename', 'x'))

    def run_wrapper(self, argv, **match):
        """Run a wrapper over ``echo`` with the go-file there; did it hold?"""
        d = self.useFixture(fixtures.TempDir()).path
        flag = os.path.join(d, 'fault')
        open(flag + '.go', 'w').close()
        script = os.path.join(d, 'wrapper')
        with open(script, 'w') as f:
            f.write(faults.wrapper('echo', flag=flag, **match))
        out = subprocess.run(['sh', script, *argv], capture_output=True,
                             text=True, check=True, timeout=30).stdout
        self.assertEqual(' '.join(argv) + '\n', out)   # the real call ran
        return os.path.exists(flag + '.hit')

    def test_wrapper_holds_a_call_with_the_argument_anywhere(self):
        self.assertTrue(self.run_wrapper(['clone', '-p', 'a@s', 'b'],
                                         argument='clone'))
        self.assertTrue(self.run_wrapper(
            ['--lld', 'iscsi', '--mode', 'logicalunit', '--op', 'new'],
            argument='logicalunit'))
        self.assertFalse(self.run_wrapper(['list', 'clones'],
                                          argument='clone'))

    def test_wrapper_holds_a_call_by_its_leading_arguments(self):
        leading = ('rename', 'tank/cinder/reverting-v')
        self.assertTrue(self.run_wrapper(
            ['rename', 'tank/cinder/reverting-v', 'tank/cinder/v'],
            leading=leading))
        # the same dataset as the new name: not held
        self.assertFalse(self.run_wrapper(
            ['rename', 'tank/cinder/v', 'tank/cinder/reverting-v'],
            leading=leading))
