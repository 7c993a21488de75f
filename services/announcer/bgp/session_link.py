"""Where a session runs on the host: in a Linux VRF (BGPPeer ``vrf``) or over an interface whose peer is found
on the link (BGPPeer ``interface``, BGP unnumbered).

``device_problem`` and ``vrf_next_hops`` are pure (rtnetlink facts in). ``SessionLink`` is the shell: it
waits until the VRF and the interface exist (re-checking every ``RECHECK_EVERY`` seconds, the reason in the
session's state meanwhile), takes the VRF's own addresses as next hops, finds the unnumbered peer, and hands
the ready :class:`SpeakerConfig` over, again whenever the peer on the link changes.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from services.announcer.bgp.link_peer import LinkDiscovery
from services.announcer.bgp.speaker import SpeakerConfig
from services.announcer.l2.interfaces import InterfaceFacts
from services.announcer.l2.links import AddressFacts, dump_addresses, dump_links

log = logging.getLogger("metalbus.announcer.bgp")

RECHECK_EVERY = 2.0


class HostProblem(enum.StrEnum):
    """Why a session in a VRF or over an interface is not dialling (in its state's reason)."""

    VRF_MISSING = "VrfMissing"
    NOT_A_VRF = "NotAVrf"
    INTERFACE_MISSING = "InterfaceMissing"
    INTERFACE_NOT_IN_VRF = "InterfaceNotInVrf"
    NO_ROUTER_ADVERTISEMENT = "NoRouterAdvertisement"  # nothing heard on the link yet


@dataclass(frozen=True, slots=True)
class Waiting:
    problem: HostProblem
    message: str

    def __str__(self) -> str:
        return f"{self.problem.value}: {self.message}"


def device_problem(links: Sequence[InterfaceFacts], *, vrf: str, interface: str) -> Waiting | None:
    """Why the session cannot run on this host as its BGPPeer asks, or None."""
    by_name = {link.name: link for link in links}
    master = by_name.get(vrf) if vrf else None
    if vrf and master is None:
        return Waiting(HostProblem.VRF_MISSING, f"VRF {vrf!r} does not exist on this node")
    if master is not None and master.kind != "vrf":
        return Waiting(HostProblem.NOT_A_VRF, f"{vrf!r} is a {master.kind or 'physical'} device, not a VRF")
    if interface:
        link = by_name.get(interface)
        if link is None:
            return Waiting(HostProblem.INTERFACE_MISSING, f"interface {interface!r} does not exist on this node")
        if master is not None and link.master != master.index:
            return Waiting(HostProblem.INTERFACE_NOT_IN_VRF, f"interface {interface!r} is not in VRF {vrf!r}")
    return None


def vrf_next_hops(
    links: Sequence[InterfaceFacts], addresses: Sequence[AddressFacts], *, vrf: str
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """The first global IPv4 and IPv6 address of the interfaces enslaved to ``vrf`` (by interface index)."""
    master = next((link.index for link in links if link.name == vrf), None)
    members = {link.index for link in links if master is not None and link.master == master}
    v4: ipaddress.IPv4Address | None = None
    v6: ipaddress.IPv6Address | None = None
    for fact in sorted((a for a in addresses if a.index in members and a.universe), key=lambda a: a.index):
        if isinstance(fact.address, ipaddress.IPv4Address):
            v4 = v4 or fact.address
        else:
            v6 = v6 or fact.address
    return v4, v6


class SessionLink:
    """Makes ``speaker`` (with ``device`` set) ready on this host; ``on_ready`` gets each ready configuration,
    ``on_waiting`` each reason it is not. ``vrf`` and ``interface`` are the BGPPeer's."""

    def __init__(
        self,
        speaker: SpeakerConfig,
        *,
        vrf: str,
        interface: str,
        on_ready: Callable[[SpeakerConfig], None],
        on_waiting: Callable[[Waiting], None],
    ) -> None:
        self.speaker, self.vrf, self.interface = speaker, vrf, interface
        self._on_ready, self._on_waiting = on_ready, on_waiting
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._discovery: LinkDiscovery | None = None
        self._waiting: Waiting | None = None

    def start(self) -> None:
        self._guarded(self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None

    def _wait(self, why: Waiting) -> None:
        if why != self._waiting:
            self._waiting = why
            log.info("bgp session waiting device=%s reason=%s", self.speaker.device, str(why))
            self._on_waiting(why)

    def _problem(self) -> tuple[list[InterfaceFacts], Waiting | None]:
        try:
            links = dump_links()
        except OSError as error:
            return [], Waiting(HostProblem.INTERFACE_MISSING, f"interfaces could not be listed: {error!r}")
        return links, device_problem(links, vrf=self.vrf, interface=self.interface)

    def _check(self) -> None:
        """Until the devices are there: wait (the reason told once). Then hand the session over, or for an
        interface peer open router discovery; either way keep watching the devices."""
        self._timer = None
        links, problem = self._problem()
        if problem is not None:
            self._wait(problem)
            self._timer = self._loop.call_later(RECHECK_EVERY, self._guarded, self._check)
            return
        if not self.interface:
            v4, v6 = vrf_next_hops(links, dump_addresses(), vrf=self.vrf)
            session = replace(self.speaker.session, next_hop_v4=self.speaker.session.next_hop_v4 or v4,
                              next_hop_v6=self.speaker.session.next_hop_v6 or v6)  # fmt: skip
            self._waiting = None
            self._on_ready(replace(self.speaker, session=session))
        else:
            try:
                mac = next((link.mac for link in links if link.name == self.interface), b"")
                self._discovery = LinkDiscovery(self.interface, on_peer=self._peer_found, mac=mac)
            except OSError as error:  # the interface went away between the check and the socket
                self._wait(Waiting(HostProblem.INTERFACE_MISSING, f"interface {self.interface!r}: {error!r}"))
                self._timer = self._loop.call_later(RECHECK_EVERY, self._guarded, self._check)
                return
            heard = f"no router advertisement heard on {self.interface}"
            self._wait(Waiting(HostProblem.NO_ROUTER_ADVERTISEMENT, heard))
        self._timer = self._loop.call_later(RECHECK_EVERY, self._guarded, self._watch)

    def _watch(self) -> None:
        """The devices of a running (or discovering) session: one that goes makes the session wait again; an
        interface deleted and made again gets router discovery afresh."""
        self._timer = None
        links, problem = self._problem()
        index = next((link.index for link in links if link.name == self.interface), None)
        replaced = self._discovery is not None and problem is None and index != self._discovery.index
        if problem is None and not replaced:
            self._timer = self._loop.call_later(RECHECK_EVERY, self._guarded, self._watch)
            return
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None
        if problem is not None:
            self._wait(problem)
            self._timer = self._loop.call_later(RECHECK_EVERY, self._guarded, self._check)
        else:
            log.info("bgp interface replaced interface=%s", self.interface)
            self._check()

    def _guarded(self, step: Callable[[], None]) -> None:
        """A timer's step: an unexpected failure (a netlink dump refused, a bug) is logged and the devices
        checked again later, so the session is never left without a next check."""
        try:
            step()
        except Exception:
            log.exception("bgp session device check failed device=%s", self.speaker.device)
            if self._timer is None:
                self._timer = self._loop.call_later(RECHECK_EVERY, self._guarded, self._check)

    def _peer_found(self, peer: ipaddress.IPv6Address) -> None:
        self._waiting = None
        self._on_ready(replace(self.speaker, peer_address=peer))
