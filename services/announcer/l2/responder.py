"""The asyncio shell of L2 mode: raw sockets in, pure decisions, frames out.

Declarative: `set_desired({ip: AllowedInterfaces})` and the responder converges the wire to it. It answers
ARP requests and neighbor solicitations for owned IPs with the MAC of the receiving interface, announces a
takeover with gratuitous ARP / unsolicited NA at once and then on a schedule, stops answering for an IP the
moment it is no longer desired, and reports another station claiming an owned IP through `on_conflict`.
Interfaces are rediscovered on every rtnetlink link event, so flaps and re-created interfaces heal.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from services.announcer.l2 import arp, ndp, rawsock
from services.announcer.l2.ethernet import ETH_P_ARP, ETH_P_IPV6, format_mac
from services.announcer.l2.interfaces import (
    DEFAULT_POLICY,
    ExclusionPolicy,
    InterfaceFacts,
    IPAddress,
    ips_by_interface,
)
from services.announcer.l2.links import LinkEvents, dump_links

log = logging.getLogger("metalbus.announcer.l2")

_GONE = {errno.ENODEV, errno.ENXIO}
_ANSWERABLE = {rawsock.PACKET_HOST, rawsock.PACKET_BROADCAST, rawsock.PACKET_MULTICAST}
_RETRY = 1.0  # seconds before a failed interface dump is tried again
_BATCH = 64  # frames read per readiness callback, so one busy interface cannot starve the loop


@dataclass(frozen=True, slots=True)
class AllowedInterfaces:
    """The interfaces an IP may be announced on (an L2Advertisement's `interfaces`); empty: all eligible."""

    names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *names: str) -> AllowedInterfaces:
        return cls(frozenset(names))


ANY_INTERFACE = AllowedInterfaces()


class ConflictCallback(Protocol):
    def __call__(self, ip: IPAddress, other_mac: bytes, interface: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ResponderConfig:
    policy: ExclusionPolicy = DEFAULT_POLICY
    # seconds after a takeover at which gratuitous ARP (request and reply) / unsolicited NA go out
    gratuitous_schedule: tuple[float, ...] = (0.0, 0.25, 0.75, 1.5, 3.0)


@dataclass(slots=True)
class L2Stats:
    """Plain counters; per IP where MetalLB's metrics are per IP."""

    requests_received: Counter[IPAddress] = field(default_factory=Counter)
    responses_sent: Counter[IPAddress] = field(default_factory=Counter)
    gratuitous_sent: Counter[IPAddress] = field(default_factory=Counter)
    conflicts: Counter[IPAddress] = field(default_factory=Counter)
    dropped: Counter[arp.ArpDrop | ndp.NdpDrop] = field(default_factory=Counter)
    frames_received: int = 0
    send_errors: int = 0
    receive_errors: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (IPs and drop reasons as strings)."""

        def ips(counter: Counter[IPAddress]) -> dict[str, int]:
            return {str(ip): n for ip, n in sorted(counter.items(), key=lambda kv: str(kv[0]))}

        return {
            "requests_received": ips(self.requests_received),
            "responses_sent": ips(self.responses_sent),
            "gratuitous_sent": ips(self.gratuitous_sent),
            "conflicts": ips(self.conflicts),
            "dropped": {f"{type(r).__name__}.{r.value}": n for r, n in self.dropped.items()},
            "frames_received": self.frames_received,
            "send_errors": self.send_errors,
            "receive_errors": self.receive_errors,
        }


class _Port:
    """One eligible interface with owned IPs: its socket, memberships and pending announcements."""

    def __init__(self, facts: InterfaceFacts, sock: socket.socket) -> None:
        self.facts = facts
        self.sock = sock
        self.owned: frozenset[IPAddress] = frozenset()
        self.owned_v4: frozenset[IPv4Address] = frozenset()
        self.owned_v6: frozenset[IPv6Address] = frozenset()
        self.groups: set[bytes] = set()
        self.takeovers: dict[IPAddress, int] = {}  # IP -> number of its latest takeover on this port
        self.timers: list[asyncio.TimerHandle] = []
        self.down_logged = False


class L2Responder:
    """Use as `async with L2Responder(...) as responder:`; then `responder.set_desired(...)`."""

    def __init__(
        self,
        *,
        config: ResponderConfig | None = None,
        on_conflict: ConflictCallback | None = None,
        list_links: Callable[[], list[InterfaceFacts]] = dump_links,
    ) -> None:
        self.config = config or ResponderConfig()
        self.stats = L2Stats()
        self._on_conflict = on_conflict
        self._list_links = list_links
        self._desired: dict[IPAddress, frozenset[str]] = {}
        self._links: list[InterfaceFacts] = []
        self._own_macs: frozenset[bytes] = frozenset()
        self._ports: dict[str, _Port] = {}
        self._events: LinkEvents | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> L2Responder:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._events = LinkEvents()
        self._loop.add_reader(self._events.fileno(), self._on_link_event)
        self.rescan()

    def stop(self) -> None:
        for name in list(self._ports):
            self._close_port(name)
        if self._events is not None and self._loop is not None:
            self._loop.remove_reader(self._events.fileno())
            self._events.close()
            self._events = None
        self._loop = None  # a pending retry of the interface dump now finds nothing to converge

    def set_desired(self, desired: Mapping[IPAddress, AllowedInterfaces]) -> None:
        """The full set of IPs to answer for, each with its allowed interfaces. Takes effect at once."""
        self._desired = {ip: allowed.names for ip, allowed in desired.items()}
        self._converge()

    def announced(self) -> dict[IPAddress, tuple[str, ...]]:
        """Each owned IP and the interfaces it is answered on now."""
        result: dict[IPAddress, list[str]] = {}
        for name, port in sorted(self._ports.items()):
            for ip in port.owned:
                result.setdefault(ip, []).append(name)
        return {ip: tuple(names) for ip, names in result.items()}

    def rescan(self) -> None:
        """Re-read the interfaces and converge; called on every link event."""
        try:
            self._links = self._list_links()
        except OSError as exc:
            log.warning("link dump failed error=%s retry_in=%s", exc, _RETRY)
            if self._loop is not None:
                self._loop.call_later(_RETRY, self.rescan)
            return
        self._own_macs = frozenset(f.mac for f in self._links if f.mac)
        self._converge()

    # --- convergence -------------------------------------------------------------------------------

    def _on_link_event(self) -> None:
        if self._events is not None and self._events.drain():
            self.rescan()

    def _converge(self) -> None:
        if self._loop is None:
            return
        target = ips_by_interface(self._desired, self._links, policy=self.config.policy)
        by_name = {f.name: f for f in self._links}
        for name, port in list(self._ports.items()):
            facts = by_name.get(name)
            stale = facts is None or (facts.index, facts.mac) != (port.facts.index, port.facts.mac)
            if name not in target or stale:
                self._close_port(name)
        for name, ips in target.items():
            opened = self._ports.get(name) or self._open_port(by_name[name])
            if opened is not None:
                self._assign(opened, ips)

    def _open_port(self, facts: InterfaceFacts) -> _Port | None:
        assert self._loop is not None
        try:
            sock = rawsock.open_packet_socket(facts.name)
        except OSError as exc:
            log.warning("open failed interface=%s error=%s", facts.name, exc)
            return None
        port = _Port(facts, sock)
        self._ports[facts.name] = port
        self._loop.add_reader(sock.fileno(), self._on_readable, port)
        log.info("interface open interface=%s mac=%s", facts.name, format_mac(facts.mac))
        return port

    def _close_port(self, name: str) -> None:
        port = self._ports.pop(name)
        for handle in port.timers:
            handle.cancel()
        if self._loop is not None:
            self._loop.remove_reader(port.sock.fileno())
        port.sock.close()  # memberships go with the socket
        log.info("interface closed interface=%s", name)

    def _assign(self, port: _Port, ips: frozenset[IPAddress]) -> None:
        old = port.owned
        port.owned = ips
        port.owned_v4 = frozenset(ip for ip in ips if isinstance(ip, IPv4Address))
        port.owned_v6 = frozenset(ip for ip in ips if isinstance(ip, IPv6Address))
        for ip in old - ips:
            log.info("released ip=%s interface=%s", ip, port.facts.name)
        self._sync_groups(port)
        new = sorted(ips - old, key=lambda ip: (ip.version, ip))
        for ip in new:
            log.info("taken over ip=%s interface=%s", ip, port.facts.name)
        if new:
            self._schedule_gratuitous(port, new)

    def _sync_groups(self, port: _Port) -> None:
        wanted = {ndp.multicast_mac(ndp.solicited_node_address(ip)) for ip in port.owned_v6}
        for mac in wanted - port.groups:
            try:
                rawsock.join_multicast(port.sock, port.facts.index, mac)
                port.groups.add(mac)
            except OSError as exc:
                log.warning("join failed interface=%s group=%s error=%s", port.facts.name, mac.hex(), exc)
        for mac in port.groups - wanted:
            port.groups.discard(mac)
            try:
                rawsock.leave_multicast(port.sock, port.facts.index, mac)
            except OSError as exc:
                log.warning("leave failed interface=%s error=%s", port.facts.name, exc)

    def _schedule_gratuitous(self, port: _Port, ips: list[IPAddress]) -> None:
        """Announce `ips` now and at each later point of the schedule: one timer per point, not per IP.
        An IP released meanwhile, or taken over again (a newer schedule), is skipped when a timer fires."""
        assert self._loop is not None
        batch = []
        for ip in ips:
            port.takeovers[ip] = port.takeovers.get(ip, 0) + 1
            batch.append((ip, port.takeovers[ip]))
        now = self._loop.time()
        port.timers = [h for h in port.timers if h.when() > now]
        for delay in self.config.gratuitous_schedule:
            if delay <= 0:
                self._announce(port, batch)
            else:
                port.timers.append(self._loop.call_later(delay, self._announce, port, batch))

    def _announce(self, port: _Port, batch: list[tuple[IPAddress, int]]) -> None:
        if self._ports.get(port.facts.name) is not port:
            return
        mac = port.facts.mac
        for ip, takeover in batch:
            if ip not in port.owned or port.takeovers.get(ip) != takeover:
                continue
            frames: tuple[bytes, ...]
            if isinstance(ip, IPv4Address):
                frames = (arp.build_gratuitous_request(mac=mac, ip=ip), arp.build_gratuitous_reply(mac=mac, ip=ip))
            else:
                frames = (ndp.build_unsolicited_na(mac=mac, ip=ip),)
            for frame in frames:
                if self._send(port, frame):
                    self.stats.gratuitous_sent[ip] += 1

    # --- the wire ----------------------------------------------------------------------------------

    def _send(self, port: _Port, frame: bytes) -> bool:
        try:
            port.sock.send(frame)
        except OSError as exc:
            self.stats.send_errors += 1
            log.debug("send failed interface=%s error=%s", port.facts.name, exc)
            return False
        return True

    def _on_readable(self, port: _Port) -> None:
        for _ in range(_BATCH):
            if self._ports.get(port.facts.name) is not port:
                return
            try:
                frame, address = port.sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self._receive_error(port, exc)
                return
            port.down_logged = False
            pkttype = address[2] if isinstance(address, tuple) and len(address) > 2 else rawsock.PACKET_HOST
            if pkttype == rawsock.PACKET_OUTGOING:
                continue
            self.stats.frames_received += 1
            try:
                self._handle_frame(port, frame, answer=pkttype in _ANSWERABLE)
            except Exception:  # a bug must not take the data plane down; the frame is lost, not the loop
                log.exception("frame handler failed interface=%s", port.facts.name)

    def _receive_error(self, port: _Port, exc: OSError) -> None:
        self.stats.receive_errors += 1
        if exc.errno in _GONE:
            log.warning("interface gone interface=%s error=%s", port.facts.name, exc)
            self._close_port(port.facts.name)
            self.rescan()
        elif not port.down_logged:  # ENETDOWN and friends: the socket works again after link up
            port.down_logged = True
            log.warning("receive failed interface=%s error=%s", port.facts.name, exc)

    def _handle_frame(self, port: _Port, frame: bytes, *, answer: bool) -> None:
        ethertype = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
        if ethertype == ETH_P_ARP:
            self._handle_arp(port, frame, answer=answer)
        elif ethertype == ETH_P_IPV6:
            self._handle_ndp(port, frame, answer=answer)
        else:
            self.stats.dropped[arp.ArpDrop.TOO_SHORT if len(frame) < 14 else arp.ArpDrop.NOT_ARP] += 1

    def _handle_arp(self, port: _Port, frame: bytes, *, answer: bool) -> None:
        packet = arp.parse_arp(frame)
        if isinstance(packet, arp.ArpDrop):
            self.stats.dropped[packet] += 1
            return
        action = arp.decide_arp(packet, owned=port.owned_v4, own_macs=self._own_macs)
        if action is arp.ArpAction.CONFLICT:
            self._conflict(port, packet.sender_ip, packet.sender_mac)
        elif action is arp.ArpAction.REPLY and answer:
            self.stats.requests_received[packet.target_ip] += 1
            if self._send(port, arp.build_arp_reply(packet, mac=port.facts.mac)):
                self.stats.responses_sent[packet.target_ip] += 1

    def _handle_ndp(self, port: _Port, frame: bytes, *, answer: bool) -> None:
        message = ndp.parse_ndp(frame)
        if isinstance(message, ndp.NdpDrop):
            self.stats.dropped[message] += 1
            return
        action = ndp.decide_ndp(message, owned=port.owned_v6, own_macs=self._own_macs)
        if action is ndp.NdpAction.CONFLICT:
            if isinstance(message, ndp.NeighborAdvertisement):
                self._conflict(port, message.target, message.target_lladdr or message.eth_src)
            else:
                self._conflict(port, message.src_ip, message.source_lladdr or message.eth_src)
        elif action is ndp.NdpAction.REPLY and answer and isinstance(message, ndp.NeighborSolicitation):
            self.stats.requests_received[message.target] += 1
            if self._send(port, ndp.build_solicited_na(message, mac=port.facts.mac)):
                self.stats.responses_sent[message.target] += 1

    def _conflict(self, port: _Port, ip: IPAddress, other_mac: bytes) -> None:
        self.stats.conflicts[ip] += 1
        log.warning("conflict ip=%s other_mac=%s interface=%s", ip, format_mac(other_mac), port.facts.name)
        if self._on_conflict is not None:
            try:
                self._on_conflict(ip, other_mac, port.facts.name)
            except Exception:
                log.exception("conflict callback failed ip=%s", ip)
