"""The link side of the BFD echo function: one AF_PACKET socket towards a single hop IPv4 peer.

An echo is an IPv4 packet from and to our own address; routed, it would never leave this host, so it is
handed to the interface facing the peer, addressed to the peer's MAC (both read from the kernel's
neighbour table, which the BGP session towards the peer fills). The peer forwards it back to us. The
kernel drops what comes back (its source is one of our own addresses), so it is read off the same packet
socket, before IP: a classic BPF filter passes only UDP to port 3785 addressed to us.

The echoes the peer sends are not our business: they are addressed to the peer itself and this host's
forwarding (``net.ipv4.ip_forward=1``, as on any Kubernetes node) sends them back.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.announcer.bgp.bfd_echo import ECHO_PORT, ReturnedEcho, echo_datagram, returned_echo
from services.announcer.l2.ethernet import parse_mac
from services.announcer.l2.rawsock import PACKET_OUTGOING, open_packet_socket

log = logging.getLogger(__name__)

ETH_P_IP = 0x0800
ARP_TABLE = Path("/proc/net/arp")
_ARP_COMPLETE = 0x2


def returned_echo_filter(address: ipaddress.IPv4Address) -> tuple[tuple[int, int, int, int], ...]:
    """Classic BPF over an IPv4 packet (a SOCK_DGRAM packet socket starts at the IP header): UDP, not a
    fragment, to ``address``, to port 3785."""
    return (
        (0x30, 0, 0, 9),  # 0: ldb [9]              protocol
        (0x15, 0, 7, 17),  # 1: jeq UDP            else -> 9 drop
        (0x20, 0, 0, 16),  # 2: ld [16]             destination address
        (0x15, 0, 5, int(address)),  # 3: jeq us   else -> 9 drop
        (0x28, 0, 0, 6),  # 4: ldh [6]              flags and fragment offset
        (0x45, 3, 0, 0x1FFF),  # 5: jset offset    -> 9 drop
        (0xB1, 0, 0, 0),  # 6: ldxb 4*([0]&0xf)     header length
        (0x48, 0, 0, 2),  # 7: ldh [x+2]            UDP destination port
        (0x15, 1, 0, ECHO_PORT),  # 8: jeq 3785    -> 10 accept
        (0x06, 0, 0, 0),  # 9: ret drop
        (0x06, 0, 0, 0x40000),  # 10: ret accept
    )


@dataclass(frozen=True)
class Neighbour:
    interface: str
    mac: bytes


def neighbour_in(arp_table: str, peer: ipaddress.IPv4Address) -> Neighbour | None:
    """``peer``'s resolved entry in the text of /proc/net/arp (address, type, flags, MAC, mask, device)."""
    for line in arp_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6 or fields[0] != str(peer):
            continue
        try:
            if int(fields[2], 16) & _ARP_COMPLETE:
                return Neighbour(fields[5], parse_mac(fields[3]))
        except ValueError:
            continue
    return None


class EchoLink:
    """Sends echo payloads to ``local`` through ``peer`` and hands back what returns (``on_echo``)."""

    def __init__(
        self,
        *,
        local: ipaddress.IPv4Address,
        peer: ipaddress.IPv4Address,
        on_echo: Callable[[ReturnedEcho], None],
        arp_table: Path = ARP_TABLE,
    ) -> None:
        self.local, self.peer = local, peer
        self._on_echo = on_echo
        self._arp_table = arp_table
        self._loop = asyncio.get_running_loop()
        self._neighbour: Neighbour | None = None
        self._sock: socket.socket | None = None
        self._closed = False

    @property
    def interface(self) -> str | None:
        return self._neighbour.interface if self._neighbour is not None else None

    def send(self, payload: bytes) -> None:
        """One echo; nothing goes out while the peer's MAC is unknown (its echoes then never come back, which
        the echo function counts only once echoes did come back)."""
        neighbour = self._resolve()
        if neighbour is None or self._sock is None:
            return
        try:
            self._sock.sendto(echo_datagram(self.local, payload), (neighbour.interface, ETH_P_IP, 0, 0, neighbour.mac))
        except OSError as error:  # a link down, an interface gone: look the neighbour up again next time
            log.debug("bfd echo not sent peer=%s error=%r", self.peer, error)
            self._forget()

    def forget_neighbour(self) -> None:
        """Read the neighbour table again before the next echo (the peer's MAC may have changed)."""
        self._forget()

    def close(self) -> None:
        self._closed = True
        self._forget()

    def _resolve(self) -> Neighbour | None:
        if self._neighbour is not None or self._closed:
            return self._neighbour
        try:
            neighbour = neighbour_in(self._arp_table.read_text(), self.peer)
        except OSError:
            return None
        if neighbour is None:
            return None
        try:
            self._sock = self._open(neighbour.interface)
        except OSError as error:
            log.warning("bfd echo socket failed interface=%s error=%r", neighbour.interface, error)
            return None
        self._neighbour = neighbour
        log.info("bfd echo link peer=%s interface=%s", self.peer, neighbour.interface)
        return neighbour

    def _open(self, interface: str) -> socket.socket:
        sock = open_packet_socket(
            interface, program=returned_echo_filter(self.local), kind=socket.SOCK_DGRAM, protocol=ETH_P_IP
        )
        self._loop.add_reader(sock.fileno(), self._readable, sock)
        return sock

    def _forget(self) -> None:
        self._neighbour = None
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(64):  # drain what is queued, then yield to the loop
            try:
                packet, address = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # ENETDOWN once on a link down; the socket keeps working after
                log.debug("bfd echo receive failed peer=%s error=%r", self.peer, error)
                return
            if address[2] == PACKET_OUTGOING:
                continue
            echo = returned_echo(packet, self.local)
            if echo is not None:
                self._on_echo(echo)
