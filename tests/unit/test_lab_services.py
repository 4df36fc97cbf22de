"""A harness run's closing line and failed scenarios, as read by the lab."""

import io
import sys

import testtools

from cinder_zol_lab import services


class RunUnderLabTestCase(testtools.TestCase):

    def _run(self, script):
        out = io.StringIO()
        s = services.run_under_lab(None, [sys.executable, '-c', script],
                                   'tgtadm', out=out)
        return s, out.getvalue()

    def test_failed_scenarios_kept_and_counted(self):
        s, out = self._run(
            'print("e2e: scenario 3 clone: FAIL (12.5s)")\n'
            'print("e2e: scenario 4 extend: PASS (1.0s)")\n'
            'print("1 passed, 1 failed")\nraise SystemExit(1)')
        self.assertEqual(['e2e: scenario 3 clone'], s.failures)
        self.assertEqual((1, 1, 1), (s.passed, s.failed, s.rc))
        self.assertIn('tgtadm: 1 passed, 1 failed', out)
        self.assertFalse(s.ok)

    def test_died_before_its_closing_line_counts_one_failure(self):
        s, _out = self._run('raise SystemExit(3)')
        self.assertEqual((0, 1, 3, []), (s.passed, s.failed, s.rc,
                                         s.failures))
