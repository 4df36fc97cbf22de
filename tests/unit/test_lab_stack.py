"""The harness stack's cinder.conf: one backend section per lab guest."""

import configparser
from pathlib import Path

import fixtures
import testtools

from cinder_zol_lab import shell
from cinder_zol_lab import stack


def guest(port, address=''):
    return shell.GuestShell(host='127.0.0.1', ssh_port=port, key=Path('/k'),
                            known_hosts=Path('/kh%d' % port),
                            parent='tank/cinder', iscsi_port=port + 1,
                            target='tgtadm', link_address=address)


class CinderConfTestCase(testtools.TestCase):

    def _conf(self, *more):
        state = Path(self.useFixture(fixtures.TempDir()).path)
        s = stack.CinderStack(state, guest(2200), more_shells=more)
        c = configparser.ConfigParser(interpolation=None, strict=False)
        c.read_string(s.cinder_conf())
        return s, c

    def test_one_guest_one_backend(self):
        s, c = self._conf()
        self.assertEqual([stack.BACKEND], s.backend_names())
        self.assertEqual(stack.BACKEND, c['DEFAULT']['enabled_backends'])
        self.assertNotIn(stack.BACKEND + '2', c)

    def test_a_backend_per_storage_host(self):
        s, c = self._conf(guest(2300, '10.77.0.2'))
        second = stack.BACKEND + '2'
        self.assertEqual([stack.BACKEND, second], s.backend_names())
        self.assertEqual('%s,%s' % (stack.BACKEND, second),
                         c['DEFAULT']['enabled_backends'])
        self.assertEqual('2200', c[stack.BACKEND]['san_ssh_port'])
        self.assertEqual('2300', c[second]['san_ssh_port'])
        self.assertEqual(second, c[second]['volume_backend_name'])
        self.assertEqual('/kh2300', c[second]['zol_ssh_known_hosts_file'])
        self.assertEqual('cinder_zol.ZFSonLinuxISCSIDriver',
                         c[second]['volume_driver'])
