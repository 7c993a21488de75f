"""Raw AF_PACKET sockets for the responder: open one per interface with a classic BPF filter that passes
only ARP and ICMPv6 neighbor solicitations/advertisements, and manage its multicast memberships."""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
from typing import Final

SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_DROP_MEMBERSHIP: Final = 2
PACKET_MR_MULTICAST: Final = 0
PACKET_IGNORE_OUTGOING: Final = 23
SO_ATTACH_FILTER: Final = 26
ETH_P_ALL: Final = 0x0003

# sll_pkttype values as returned by recvfrom() on an AF_PACKET socket
PACKET_HOST: Final = 0
PACKET_BROADCAST: Final = 1
PACKET_MULTICAST: Final = 2
PACKET_OTHERHOST: Final = 3
PACKET_OUTGOING: Final = 4

# Classic BPF: (code, jt, jf, k). Offsets assume untagged Ethernet II and no IPv6 extension headers.
FILTER_ARP_NDP: Final[tuple[tuple[int, int, int, int], ...]] = (
    (0x28, 0, 0, 12),  # 0: ldh [12]            ethertype
    (0x15, 6, 0, 0x0806),  # 1: jeq ARP         -> 8 accept
    (0x15, 0, 6, 0x86DD),  # 2: jeq IPv6        else -> 9 drop
    (0x30, 0, 0, 20),  # 3: ldb [20]            next header
    (0x15, 0, 4, 58),  # 4: jeq ICMPv6          else -> 9 drop
    (0x30, 0, 0, 54),  # 5: ldb [54]            ICMPv6 type
    (0x15, 1, 0, 135),  # 6: jeq NS             -> 8 accept
    (0x15, 0, 1, 136),  # 7: jeq NA             else -> 9 drop
    (0x06, 0, 0, 0x40000),  # 8: ret accept (whole frame)
    (0x06, 0, 0, 0),  # 9: ret drop
)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (the kernel copies it during the call)."""
    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def open_packet_socket(
    ifname: str,
    *,
    program: tuple[tuple[int, int, int, int], ...] = FILTER_ARP_NDP,
    kind: int = socket.SOCK_RAW,
    protocol: int = ETH_P_ALL,
) -> socket.socket:
    """A non-blocking packet socket on `ifname` receiving only what `program` passes (by default ARP and
    NS/NA, whole frames), not our own transmissions. `kind` SOCK_DGRAM reads and writes from the network
    header on (the program then sees it at offset 0).

    The filter is attached before the socket is bound to a protocol, so nothing unfiltered is queued."""
    sock = socket.socket(socket.AF_PACKET, kind | socket.SOCK_NONBLOCK, 0)
    try:
        attach_filter(sock, program)
        with contextlib.suppress(OSError):  # before Linux 4.20: outgoing frames are skipped by pkttype
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.bind((ifname, protocol))
    except BaseException:
        sock.close()
        raise
    return sock


def _mreq(ifindex: int, mac: bytes) -> bytes:
    return struct.pack("=iHH8s", ifindex, PACKET_MR_MULTICAST, len(mac), mac)


def join_multicast(sock: socket.socket, ifindex: int, mac: bytes) -> None:
    """Program the interface's receive filter for the group MAC while this socket lives."""
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, _mreq(ifindex, mac))


def leave_multicast(sock: socket.socket, ifindex: int, mac: bytes) -> None:
    sock.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, _mreq(ifindex, mac))
