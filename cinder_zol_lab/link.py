"""The lab's private link: one Ethernet segment between its guests.

Several storage hosts (two backends, a replication pair) must reach each
other, and nothing may listen beyond 127.0.0.1. Each guest gets a second
NIC, QEMU's ``-netdev dgram`` (every Ethernet frame a UDP datagram on
127.0.0.1), plugged into a hub that the lab process runs in a thread: a
frame from one guest goes to every other guest, and only datagrams from a
guest's own QEMU port are taken. Guest k (1-based) is ``SUBNET.k``; the
address exists on that link only. Standard library only.
"""

from __future__ import annotations

import dataclasses
import selectors
import socket
import threading

SUBNET = '10.77.0'
PREFIX_LEN = 24
HOST = '127.0.0.1'
FRAME_MAX = 65536
# in the guest: matched by MAC, sorted before the image's DHCP-on-e* file
NETWORK_FILE = '/etc/systemd/network/10-cinder-zol-link.network'


def _free_udp_port(exclude: set[int]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port
    raise OSError('no free local UDP port')


@dataclasses.dataclass(frozen=True)
class Port:
    """One guest's end of the link."""

    index: int          # 1-based: the guest's number, and its address
    guest_port: int     # QEMU receives here
    hub_port: int       # QEMU sends here

    @property
    def address(self) -> str:
        return f'{SUBNET}.{self.index}'

    @property
    def mac(self) -> str:
        return f'52:54:00:77:00:{self.index:02x}'

    def qemu_args(self) -> list[str]:
        return ['-netdev',
                f'dgram,id=link,local.type=inet,local.host={HOST},'
                f'local.port={self.guest_port},remote.type=inet,'
                f'remote.host={HOST},remote.port={self.hub_port}',
                '-device', f'virtio-net-pci,netdev=link,mac={self.mac}']

    def network_unit(self) -> str:
        """systemd-networkd's file for the NIC: a static address, no DHCP."""
        return (f'[Match]\nMACAddress={self.mac}\n\n'
                f'[Network]\nAddress={self.address}/{PREFIX_LEN}\n'
                'DHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n')


class Hub:
    """Forward every frame from one guest to all the others.

    ``ports`` (one per guest, in guest order) are taken when the hub is
    made, so no other process can bind the hub's side meanwhile.
    """

    def __init__(self, guests: int):
        if guests < 1:
            raise ValueError('a link needs at least one guest')
        self._socks = []
        taken: set[int] = set()
        ports = []
        try:
            for index in range(1, guests + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socks.append(s)
                s.bind((HOST, 0))
                hub_port = s.getsockname()[1]
                taken.add(hub_port)
                guest_port = _free_udp_port(taken)
                taken.add(guest_port)
                ports.append(Port(index, guest_port, hub_port))
        except BaseException:
            self.close()
            raise
        self.ports = ports
        self.frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> 'Hub':
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name='lab-link-hub')
        self._thread.start()
        return self

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        for i, s in enumerate(self._socks):
            sel.register(s, selectors.EVENT_READ, i)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    self._forward(key.data)
        except OSError:
            if not self._stop.is_set():
                raise
        finally:
            sel.close()

    def _forward(self, i: int) -> None:
        try:
            frame, (host, port) = self._socks[i].recvfrom(FRAME_MAX)
        except (BlockingIOError, InterruptedError):
            return
        if (host, port) != (HOST, self.ports[i].guest_port):
            return      # not this guest's QEMU: dropped
        self.frames += 1
        for j, p in enumerate(self.ports):
            if j != i:
                try:
                    self._socks[j].sendto(frame, (HOST, p.guest_port))
                except OSError:
                    pass    # that guest is not up (yet, or any more)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for s in self._socks:
            s.close()
