"""The lab's fault table: rows recorded by tests, printed by the lab."""

import os

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
