"""The lab's private link between guests: the hub, the NIC, the env."""

import socket

import testtools

from cinder_zol_lab import link
from cinder_zol_lab import shell


class FakeGuest:
    """A guest's QEMU end: receives on guest_port, sends to hub_port."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((link.HOST, port.guest_port))
        self.sock.settimeout(5)

    def send(self, frame):
        self.sock.sendto(frame, (link.HOST, self.port.hub_port))

    def receive(self):
        return self.sock.recv(link.FRAME_MAX)

    def nothing_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(link.FRAME_MAX)
        except socket.timeout:
            return True
        return False


class HubTestCase(testtools.TestCase):

    def _hub(self, guests):
        hub = link.Hub(guests).start()
        self.addCleanup(hub.close)
        fakes = [FakeGuest(p) for p in hub.ports]
        for f in fakes:
            self.addCleanup(f.sock.close)
        return hub, fakes

    def test_a_frame_reaches_every_other_guest(self):
        hub, (a, b, c) = self._hub(3)
        a.send(b'frame-from-a')
        self.assertEqual(b'frame-from-a', b.receive())
        self.assertEqual(b'frame-from-a', c.receive())
        self.assertTrue(a.nothing_within(0.3))
        self.assertEqual(1, hub.frames)

    def test_only_a_guests_own_qemu_port_is_heard(self):
        hub, (a, b) = self._hub(2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            intruder.sendto(b'injected', (link.HOST, hub.ports[0].hub_port))
        self.assertTrue(b.nothing_within(0.3))
        b.send(b'real')
        self.assertEqual(b'real', a.receive())
        self.assertEqual(1, hub.frames)

    def test_ports_and_addresses(self):
        hub = link.Hub(2)
        self.addCleanup(hub.close)
        p1, p2 = hub.ports
        self.assertEqual(('10.77.0.1', '10.77.0.2'), (p1.address, p2.address))
        self.assertNotEqual(p1.mac, p2.mac)
        ports = {p1.guest_port, p1.hub_port, p2.guest_port, p2.hub_port}
        self.assertEqual(4, len(ports))

    def test_qemu_nic_listens_on_loopback_only(self):
        p = link.Port(2, 40001, 40002)
        netdev = p.qemu_args()[1]
        self.assertIn('local.host=127.0.0.1,local.port=40001', netdev)
        self.assertIn('remote.host=127.0.0.1,remote.port=40002', netdev)
        self.assertIn('mac=52:54:00:77:00:02', p.qemu_args()[3])
        unit = p.network_unit()
        self.assertIn('MACAddress=52:54:00:77:00:02', unit)
        self.assertIn('Address=10.77.0.2/24', unit)
        self.assertIn('DHCP=no', unit)


class GuestsEnvTestCase(testtools.TestCase):

    def _shell(self, port, address):
        return shell.GuestShell(host='127.0.0.1', ssh_port=port, key='/k',
                                known_hosts='/kh', parent='tank/cinder',
                                iscsi_port=port + 1, link_address=address)

    def test_second_guest_under_its_own_prefix(self):
        env = {shell.HOSTS_ENV: '2'}
        env.update(self._shell(2200, '10.77.0.1').to_env(1))
        env.update(self._shell(2300, '10.77.0.2').to_env(2))
        self.assertEqual('2300', env['CINDER_ZOL_LAB_2_SSH_PORT'])
        self.assertEqual('2200', env['CINDER_ZOL_LAB_SSH_PORT'])
        first, second = shell.GuestShell.all_from_env(env)
        self.assertEqual((2200, '10.77.0.1'),
                         (first.ssh_port, first.link_address))
        self.assertEqual((2300, '10.77.0.2'),
                         (second.ssh_port, second.link_address))

    def test_one_guest_without_hosts_variable(self):
        env = self._shell(2200, '').to_env()
        [only] = shell.GuestShell.all_from_env(env)
        self.assertEqual(2200, only.ssh_port)

    def test_missing_second_guest_is_named(self):
        env = dict(self._shell(2200, '').to_env(), **{shell.HOSTS_ENV: '2'})
        e = self.assertRaises(shell.LabError, shell.GuestShell.all_from_env,
                              env)
        self.assertIn('CINDER_ZOL_LAB_2_SSH_PORT', str(e))
