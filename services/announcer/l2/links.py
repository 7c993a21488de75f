"""Interface discovery over rtnetlink with the standard library only (no pyroute2).

`parse_link_messages` and `parse_address_messages` are pure (bytes in, facts out, never raises on hostile
input). `dump_links` and `dump_addresses` ask the kernel for every link or address of the caller's network
namespace; `LinkEvents` is a socket subscribed to link changes whose readability means "dump again".
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from services.announcer.l2.interfaces import InterfaceFacts

NETLINK_ROUTE: Final = 0
RTMGRP_LINK: Final = 0x1
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_GETADDR: Final = 22
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
RT_SCOPE_UNIVERSE: Final = 0
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLM_F_REQUEST: Final = 0x1
NLM_F_DUMP: Final = 0x300
IFLA_ADDRESS: Final = 1
IFLA_IFNAME: Final = 3
IFLA_MASTER: Final = 10
IFLA_LINKINFO: Final = 18
IFLA_INFO_KIND: Final = 1
IFF_UP: Final = 0x1
IFF_LOWER_UP: Final = 0x10000
ARPHRD_ETHER: Final = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
_IFADDRMSG = struct.Struct("=BBBBI")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LinkMessage:
    facts: InterfaceFacts
    deleted: bool


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attributes(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            break
        attrs.setdefault(kind & 0x3FFF, data[offset + _RTATTR.size : offset + length])
        offset += _align(length)
    return attrs


def _link(kind: int, body: bytes) -> LinkMessage | None:
    if len(body) < _IFINFOMSG.size:
        return None
    _family, hw_type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = _attributes(body[_IFINFOMSG.size :])
    name = attrs.get(IFLA_IFNAME, b"").split(b"\x00", 1)[0].decode("utf-8", "replace")
    if not name or index <= 0:
        return None
    mac = attrs.get(IFLA_ADDRESS, b"") if hw_type == ARPHRD_ETHER else b""
    master_raw = attrs.get(IFLA_MASTER, b"")
    master = struct.unpack("=I", master_raw[:4])[0] if len(master_raw) >= 4 else None
    info = _attributes(attrs.get(IFLA_LINKINFO, b""))
    link_kind = info.get(IFLA_INFO_KIND, b"").split(b"\x00", 1)[0].decode("ascii", "replace") or None
    facts = InterfaceFacts(
        name=name,
        index=index,
        mac=mac,
        up=bool(flags & IFF_UP),
        carrier=bool(flags & IFF_LOWER_UP),
        kind=link_kind,
        master=master or None,
    )
    return LinkMessage(facts=facts, deleted=kind == RTM_DELLINK)


def parse_link_messages(data: bytes) -> tuple[list[LinkMessage], bool]:
    """The RTM_NEWLINK/RTM_DELLINK messages in one netlink datagram, and whether it ended a dump
    (NLMSG_DONE or NLMSG_ERROR). Malformed parts are skipped."""
    return _messages(data, (RTM_NEWLINK, RTM_DELLINK), _link)


@dataclass(frozen=True, slots=True)
class AddressFacts:
    """One address of an interface, as rtnetlink lists it."""

    index: int  # the interface's
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefix_length: int
    universe: bool  # global scope: not link-local, not host


def _address(body: bytes) -> AddressFacts | None:
    if len(body) < _IFADDRMSG.size:
        return None
    family, prefix_length, _flags, scope, index = _IFADDRMSG.unpack_from(body)
    attrs = _attributes(body[_IFADDRMSG.size :])
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS, b"")  # IFA_LOCAL is the own one on a point-to-point
    try:
        if family == socket.AF_INET and len(raw) == 4:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(raw)
        elif family == socket.AF_INET6 and len(raw) == 16:
            address = ipaddress.IPv6Address(raw)
        else:
            return None
    except ValueError:
        return None
    return AddressFacts(index, address, prefix_length, scope == RT_SCOPE_UNIVERSE)


def _messages(data: bytes, wanted: tuple[int, ...], parse: Callable[[int, bytes], T | None]) -> tuple[list[T], bool]:
    """The ``wanted`` messages of one netlink datagram parsed, and whether it ended a dump."""
    found: list[T] = []
    done = False
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            done = True
        elif kind in wanted:
            item = parse(kind, data[offset + _NLMSGHDR.size : offset + length])
            if item is not None:
                found.append(item)
        offset += _align(length)
    return found, done


def parse_address_messages(data: bytes) -> tuple[list[AddressFacts], bool]:
    """The RTM_NEWADDR messages of one netlink datagram, and whether it ended a dump. Malformed parts skipped."""
    return _messages(data, (RTM_NEWADDR,), lambda _kind, body: _address(body))


def _dump(request: int, body: bytes, parse: Callable[[bytes], tuple[list[T], bool]], timeout: float) -> list[T]:
    """A blocking netlink dump (it takes microseconds): every item the kernel lists."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), request, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        sock.send(header + body)
        found: list[T] = []
        done = False
        while not done:
            items, done = parse(sock.recv(1 << 16))
            found += items
        return found


def dump_links(timeout: float = 2.0) -> list[InterfaceFacts]:
    """Every link of this process's network namespace."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    found = {m.facts.index: m.facts for m in _dump(RTM_GETLINK, body, parse_link_messages, timeout) if not m.deleted}
    return sorted(found.values(), key=lambda f: f.index)


def dump_addresses(timeout: float = 2.0) -> list[AddressFacts]:
    """Every IPv4 and IPv6 address of this process's network namespace."""
    return _dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), parse_address_messages, timeout)


class LinkEvents:
    """A non-blocking netlink socket subscribed to link changes. Read it with `drain()` when readable."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        self._sock.bind((0, RTMGRP_LINK))

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> int:
        """Read and discard what is queued; the count of datagrams. An overrun (ENOBUFS) counts as one."""
        count = 0
        while True:
            try:
                self._sock.recv(1 << 16)
            except BlockingIOError:
                return count
            except OSError:
                return count + 1  # ENOBUFS: events were lost, which a full dump repairs anyway
            count += 1

    def close(self) -> None:
        self._sock.close()
