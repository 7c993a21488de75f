"""The asyncio shell of BGP unnumbered's router discovery (``unnumbered.py``): one raw ICMPv6 socket bound
to the interface, router solicitations until a router is heard, our advertisement every 10 s and in answer
to a solicitation, and a callback with each new peer."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from services.announcer.bgp.unnumbered import (
    ADVERTISE_EVERY,
    ALL_NODES,
    ALL_ROUTERS,
    HOP_LIMIT,
    ROUTER_ADVERTISEMENT,
    ROUTER_SOLICITATION,
    SOLICIT_EVERY,
    LinkPeer,
    RouterDrop,
    read_router_message,
    router_advertisement,
    router_solicitation,
)

log = logging.getLogger(__name__)

ICMP6_FILTER = 1  # linux/icmpv6.h, level IPPROTO_ICMPV6; not exported by Python's socket module


def _only_router_discovery() -> bytes:
    """A ``struct icmp6_filter`` passing router solicitations and advertisements only (a set bit blocks)."""
    words = [0xFFFFFFFF] * 8
    for kind in (ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT):
        words[kind >> 5] &= ~(1 << (kind & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


def _open(interface: str) -> tuple[socket.socket, int]:
    index = socket.if_nametoindex(interface)  # OSError when there is no such interface
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _only_router_discovery())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        # solicitations go to all-routers, which a host does not listen to by itself
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, ALL_ROUTERS.packed + struct.pack("=I", index))
    except BaseException:
        sock.close()
        raise
    return sock, index


class LinkDiscovery:
    """Finds the peer on ``interface``; ``on_peer`` gets each new one (the first, or a replacement)."""

    def __init__(self, interface: str, *, on_peer: Callable[[ipaddress.IPv6Address], None], mac: bytes = b"") -> None:
        self.interface = interface
        self.finder = LinkPeer(mac=mac)
        self._on_peer = on_peer
        self._loop = asyncio.get_running_loop()
        self._sock, self._index = _open(interface)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._advertise()
        self._solicit()

    @property
    def peer(self) -> ipaddress.IPv6Address | None:
        return self.finder.peer

    @property
    def index(self) -> int:
        """The interface index the socket was bound to (a deleted and recreated interface has another)."""
        return self._index

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _send(self, message: bytes, to: ipaddress.IPv6Address) -> None:
        try:
            self._sock.sendto(message, (str(to), 0, 0, self._index))
        except OSError as error:  # link down: the next round tries again
            log.debug("router discovery send failed interface=%s error=%r", self.interface, error)

    def _advertise(self) -> None:
        self._send(router_advertisement(self.finder.mac), ALL_NODES)
        self._timers["advertise"] = self._loop.call_later(ADVERTISE_EVERY, self._advertise)

    def _solicit(self) -> None:
        if self.finder.peer is not None:
            return
        self._send(router_solicitation(self.finder.mac), ALL_ROUTERS)
        self._timers["solicit"] = self._loop.call_later(SOLICIT_EVERY, self._solicit)

    def _readable(self) -> None:
        for _ in range(64):  # bounded per turn of the loop
            try:
                data, ancillary, _flags, sender = self._sock.recvmsg(1500, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.debug("router discovery receive failed interface=%s error=%r", self.interface, error)
                return
            hop_limit = next(
                (
                    int(struct.unpack("=i", value[:4])[0])
                    for level, kind, value in ancillary
                    if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4
                ),
                None,
            )
            try:
                source = ipaddress.IPv6Address(str(sender[0]).split("%", 1)[0])
            except ValueError:
                continue
            message = read_router_message(data, source=source, hop_limit=hop_limit)
            if isinstance(message, RouterDrop):
                log.debug("router discovery dropped interface=%s source=%s reason=%s", self.interface, source,
                          message.value)  # fmt: skip
                continue
            answer = self.finder.answer(message)
            if answer is not None:
                self._send(answer, ALL_NODES)
            new_peer = self.finder.heard(message, self._loop.time())
            if new_peer is not None:
                log.info("bgp unnumbered peer found interface=%s peer=%s", self.interface, new_peer)
                self._on_peer(new_peer)
