"""How the lab tells why QEMU ended before the guest's ssh answered."""

from pathlib import Path

import fixtures
import testtools

from cinder_zol_lab import guest

PANIC = ('[    4.774615] RIP: 0010:sched_clock_cpu+0x9/0x1d0\n'
         '[    4.774910] Kernel panic - not syncing: Fatal exception in '
         'interrupt\n')


class ExitedDuringBootTestCase(testtools.TestCase):

    def _why(self, qemu_log, console):
        d = Path(self.useFixture(fixtures.TempDir()).path)
        (d / 'qemu.log').write_text(qemu_log)
        (d / 'console.log').write_text(console)
        return guest._exited_during_boot(1, d / 'qemu.log',
                                         d / 'console.log')

    def test_port_taken_is_retried_with_other_ports(self):
        why = self._why('Could not set up host forwarding rule', '')
        self.assertIsInstance(why, guest._PortTaken)

    def test_kernel_panic_is_retried(self):
        why = self._why('', PANIC)
        self.assertIsInstance(why, guest._BootPanic)
        self.assertEqual('[    4.774910] Kernel panic - not syncing: Fatal '
                         'exception in interrupt', str(why))

    def test_anything_else_fails_with_both_logs(self):
        why = self._why('qemu: could not open disk', 'Loading initial disk')
        self.assertIsInstance(why, guest.LabError)
        self.assertIn('QEMU exited (1) during boot', str(why))
        self.assertIn('could not open disk', str(why))
        self.assertIn('Loading initial disk', str(why))
