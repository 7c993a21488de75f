"""One BGP session: its speaker, its BFD session beside it, and what it reports.

A :class:`SessionSpec` is what a session is made of (the agent builds it, ``agents/bgp_sessions.py``); a peer
whose spec changes gets a new session (the old one ends with a Cease). ``PeerSession`` runs one: the speaker
dials out, takes the peer's own connection from the agent's listener (a collision is resolved as RFC 4271 §6.8
says) and converges to the routes it is handed; a BFD Down ends the BGP session at once (the speaker reconnects
with backoff).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from schemas.events import BGPSessionState
from services.announcer.bgp import tcp
from services.announcer.bgp.bfd import BfdConfig, BfdState, BfdStateChanged
from services.announcer.bgp.bfd_peer import BfdEndpoint, BfdPeer
from services.announcer.bgp.events import (
    AdvertisementsSent,
    Closed,
    EndOfRibReceived,
    Event,
    RoutesCounted,
    State,
    StateChanged,
)
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.nlri import IPAddress, Prefix
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session_link import SessionLink, Waiting
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.common.supervision import OnFailure, supervised

log = logging.getLogger("metalbus.announcer.bgp")

STATES = {
    State.IDLE: BGPSessionState.IDLE,
    State.CONNECT: BGPSessionState.CONNECT,
    State.ACTIVE: BGPSessionState.ACTIVE,
    State.OPEN_SENT: BGPSessionState.OPEN_SENT,
    State.OPEN_CONFIRM: BGPSessionState.OPEN_CONFIRM,
    State.ESTABLISHED: BGPSessionState.ESTABLISHED,
}


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """Everything a session is built from: two equal specs are the same session."""

    speaker: SpeakerConfig
    bfd: BfdConfig | None
    graceful_restart: bool
    vrf: str = ""  # the session runs in this Linux VRF
    interface: str = ""  # BGP unnumbered: the peer is found on this interface


def local_address_towards(peer: IPAddress, *, device: str | None = None) -> IPAddress | None:
    """The address the kernel would send from to reach ``peer`` (a UDP connect sends nothing); through
    ``device`` if given (a VRF's table, or the interface a link-local ``peer`` is on: our link-local address)."""
    with socket.socket(socket.AF_INET if peer.version == 4 else socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        try:
            if device is not None:
                tcp.bind_to_device(probe, device)
            probe.connect(tcp.peer_sockaddr(peer, 9, device=device))
        except OSError:
            return None
        return ipaddress.ip_address(str(probe.getsockname()[0]).split("%", 1)[0])


@dataclass(frozen=True, slots=True)
class EndpointKey:
    """What a receiving BFD socket is for: a local address and port (3784 single hop, 4784 multihop), through
    a device (a VRF's master, an unnumbered session's interface) or none."""

    address: IPAddress
    port: int
    device: str | None = None


class BfdEndpoints:
    """One receiving BFD socket per :class:`EndpointKey`, shared by the sessions from that address."""

    def __init__(self) -> None:
        self._endpoints: dict[EndpointKey, tuple[BfdEndpoint, int]] = {}

    def acquire(self, key: EndpointKey) -> BfdEndpoint:
        endpoint, users = self._endpoints.get(key) or (
            BfdEndpoint(address=key.address, port=key.port, device=key.device), 0)  # fmt: skip
        self._endpoints[key] = (endpoint, users + 1)
        return endpoint

    def release(self, key: EndpointKey) -> None:
        endpoint, users = self._endpoints[key]
        if users <= 1:
            endpoint.close()
            del self._endpoints[key]
        else:
            self._endpoints[key] = (endpoint, users - 1)


StateCallback = Callable[["PeerSession", BGPSessionState, str], None]


@dataclass(slots=True)
class ReceivedCount:
    """What the peer sent: it is checked and counted, never used."""

    updates: int = 0
    prefixes: int = 0  # announced or withdrawn
    errors: int = 0  # UPDATEs with an RFC 7606 error handled without a reset


class PeerSession:
    def __init__(
        self,
        *,
        name: str,
        ref: str,
        spec: SessionSpec,
        endpoints: BfdEndpoints,
        on_state: StateCallback,
        on_sent: Callable[[], None] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.name, self.ref, self.spec = name, ref, spec
        self._listener = listener  # where the peer's own connections arrive, when it dials in
        self.updates = 0
        self.received = ReceivedCount()
        self.state = BGPSessionState.IDLE
        self._endpoints = endpoints
        self._on_state = on_state
        self._on_sent = on_sent
        self._speaker: Speaker | None = None
        self._bfd: tuple[EndpointKey, BfdPeer] | None = None
        self._config = spec.speaker  # as made ready on this host (session_link.py) for a VRF or an interface
        self._routes: Mapping[Prefix, Route] = {}
        self._retired: set[Speaker] = set()  # replaced or waiting for the link: stopping, their events muted
        self._link: SessionLink | None = None

    @property
    def peer_address(self) -> IPAddress:
        return self._config.peer_address  # an interface peer's: unspecified until found on the link

    @property
    def shown_address(self) -> str:
        """The peer's address as reports and metrics show it: an interface peer's link-local address scoped to
        its interface (``fe80::1%eth0``), the interface alone until the peer is found."""
        if not self.spec.interface:
            return str(self.peer_address)
        return self.spec.interface if self.peer_address.is_unspecified else f"{self.peer_address}%{self.spec.interface}"

    @property
    def up(self) -> bool:
        return self.state is BGPSessionState.ESTABLISHED

    @property
    def announced_prefixes(self) -> int:
        if self._speaker is None or not self.up:
            return 0
        return self._speaker.session.carried

    def start(self, routes: Mapping[Prefix, Route]) -> None:
        """Dial out with ``routes`` already desired, so the first UPDATEs carry the whole set. A dict
        ``routes`` is the session's desired set itself, not a copy: its owner (the plan) changes it in place
        and says so through :meth:`change_routes`."""
        self._routes = routes
        if self._link is None and (self.spec.vrf or self.spec.interface):
            self._link = SessionLink(
                self.spec.speaker,
                vrf=self.spec.vrf,
                interface=self.spec.interface,
                on_ready=self._on_link_ready,
                on_waiting=self._on_link_waiting,
            )
            self._link.start()
            return
        speaker = Speaker(self._config, on_event=lambda event: self._on_event_of(speaker, event))
        self._speaker = speaker
        self._speaker.session.set_advertisements(routes, shared=True)  # the plan's own map, kept current in place
        self._speaker.start()
        if self._listener is not None:
            self._listener.add(self._speaker)
        if self.spec.bfd is not None:
            self._start_bfd(self.spec.bfd)
        log.info("bgp session started peer=%s address=%s bfd=%s graceful_restart=%s", self.ref,
                 self.peer_address, self.spec.bfd is not None, self.spec.graceful_restart)  # fmt: skip

    def set_routes(self, routes: Mapping[Prefix, Route]) -> None:
        self._routes = routes  # what a session still waiting for its VRF, interface or peer starts with
        if self._speaker is not None and self._speaker.session.desired != routes:
            self._speaker.set_advertisements(routes, shared=True)

    def change_routes(self, routes: Mapping[Prefix, Route], changed: Iterable[Prefix]) -> None:
        """``routes`` is the whole set, of which only the ``changed`` prefixes differ from the set last given:
        the speaker is handed those alone (a prefix not in ``routes`` is withdrawn)."""
        self._routes = routes
        if self._speaker is not None:
            self._speaker.change_advertisements({prefix: routes.get(prefix) for prefix in changed})

    async def stop(self, *, keep_routes: bool = False, message: str = "") -> None:
        """End the session: Cease (the peer withdraws our routes at once), or with ``keep_routes`` a silent
        close so a graceful restart helper keeps them until we are back."""
        if self._link is not None:
            self._link.close()
        self._stop_bfd()
        if self._speaker is not None:
            speaker, self._speaker = self._speaker, None
            if self._listener is not None:
                self._listener.remove(speaker)
            await speaker.stop(keep_routes=keep_routes, message=message)
        self._set_state(BGPSessionState.IDLE, "stopped" + (" (graceful restart)" if keep_routes else ""))

    def _on_link_ready(self, config: SpeakerConfig) -> None:
        """The VRF and interface are there, the peer on the link found (again: a new router replaces the
        session with the old one)."""
        self._retire_speaker("another peer on the link")
        self._config = config
        self.start(self._routes)

    def _on_link_waiting(self, why: Waiting) -> None:
        """The VRF, the interface or the peer is not there (any more): no session until it is."""
        self._retire_speaker(str(why))
        self._set_state(BGPSessionState.IDLE, str(why))

    def _retire_speaker(self, message: str) -> None:
        """Stop the current speaker in the background, its events no longer this session's news; its BFD
        session goes with it (a new peer on the link gets its own)."""
        self._stop_bfd()
        old, self._speaker = self._speaker, None
        if old is None:
            return
        self._retired.add(old)
        if self._listener is not None:
            self._listener.remove(old)

        async def stop() -> None:
            try:
                await old.stop(message=message)
            finally:
                self._retired.discard(old)

        # REPORT: a one-shot; a session that failed to stop is dropped all the same
        supervised(stop, name="bgp-session-stop", on_failure=OnFailure.REPORT)

    def _on_event_of(self, speaker: Speaker, event: Event) -> None:
        if speaker not in self._retired:
            self._on_event(event)

    def _start_bfd(self, config: BfdConfig) -> None:
        """BFD to the session's peer, through the session's device if it has one: a VRF's (routed in its
        table), or an unnumbered session's interface (from our link-local address to the peer found there)."""
        device = self._config.device
        local = self._config.source_address or local_address_towards(self.peer_address, device=device)
        if local is None:
            log.warning("bfd not started peer=%s device=%s reason=no_route", self.ref, device)
            return
        key = EndpointKey(local, config.port, device)
        try:
            endpoint = self._endpoints.acquire(key)
        except OSError as error:
            log.warning("bfd not started peer=%s local=%s device=%s error=%r", self.ref, local, device, error)
            return
        bfd = BfdPeer(endpoint, peer=self.peer_address, config=config, on_change=self._on_bfd)
        self._bfd = (key, bfd)
        log.info("bfd started peer=%s local=%s remote=%s device=%s", self.ref, local, self.peer_address, device)

    def _stop_bfd(self) -> None:
        if self._bfd is not None:
            key, bfd = self._bfd
            self._bfd = None
            bfd.close()  # AdminDown: not a failure to the peer (RFC 5882 §3.2), graceful restart or not
            self._endpoints.release(key)

    def _on_bfd(self, change: BfdStateChanged) -> None:
        log.info("bfd changed peer=%s old=%s new=%s diag=%s", self.ref, change.old.name, change.new.name,
                 change.diagnostic.name)  # fmt: skip
        if change.old is BfdState.UP and change.new is not BfdState.UP and self._speaker is not None:
            self._speaker.peer_down()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self._set_state(STATES[event.new], "")
        elif isinstance(event, Closed):
            self._set_state(BGPSessionState.IDLE, event.describe())
        elif isinstance(event, AdvertisementsSent):
            self.updates += event.messages
            if self._on_sent is not None:
                self._on_sent()
        elif isinstance(event, RoutesCounted | EndOfRibReceived):
            self._count_received(event)

    def _count_received(self, event: RoutesCounted | EndOfRibReceived) -> None:
        """Counted for the metrics; an RFC 7606 error is logged with its reason, the 1st, 2nd, 4th, 8th... time
        (a peer sending only broken UPDATEs cannot flood the log)."""
        count = self.received
        count.updates += 1
        if isinstance(event, EndOfRibReceived):
            return
        count.prefixes += event.announced + event.withdrawn
        if event.errors:
            count.errors += 1
            if count.errors & (count.errors - 1) == 0:
                log.warning("bgp update error peer=%s address=%s errors_total=%d reason=%s", self.ref,
                            self.peer_address, count.errors, "; ".join(event.errors)[:500])  # fmt: skip

    def _set_state(self, state: BGPSessionState, reason: str) -> None:
        if state is self.state and not reason:
            return
        self.state = state
        with contextlib.suppress(Exception):
            self._on_state(self, state, reason)
