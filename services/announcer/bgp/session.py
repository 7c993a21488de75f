"""A BGP session without I/O (RFC 4271 §8): feed it bytes and time, take bytes, timers and events out.

The shell owns the socket and the clock. It calls :meth:`Session.start`, then :meth:`Session.connection_made`
when TCP is up, hands every received chunk to :meth:`Session.receive`, writes :meth:`Session.data_to_send`,
arms one timer at :meth:`Session.get_timer` and calls :meth:`Session.handle_timer` when it fires. When the
core emits :class:`Closed`, the shell writes what is left and closes the connection.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from services.announcer.bgp.capabilities import (
    IPV4_OVER_IPV6,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddressFamily,
    Capability,
    ExtendedNextHop,
    GracefulRestart,
    Multiprotocol,
    Negotiated,
    RouteRefresh,
)
from services.announcer.bgp.events import (
    AdvertisementsSent,
    Closed,
    CloseReason,
    EndOfRibReceived,
    Established,
    Event,
    RefreshRequested,
    RoutesCounted,
    RoutesReceived,
    State,
    StateChanged,
)
from services.announcer.bgp.message import KEEPALIVE, MessageReader, MessageType
from services.announcer.bgp.nlri import IPAddress, Prefix
from services.announcer.bgp.notification import (
    CeaseSubcode,
    ErrorCode,
    FsmSubcode,
    Notification,
    OpenSubcode,
    open_error,
)
from services.announcer.bgp.open import Open
from services.announcer.bgp.rib import AdjRibOut, Route, prefix_key, resolve
from services.announcer.bgp.route_refresh import RouteRefreshMessage
from services.announcer.bgp.update import Update, end_of_rib
from services.announcer.bgp.update_count import UpdateCount, count_update


class DynamicAsn(enum.Enum):
    """MetalLB's ``dynamicASN``: accept any peer AS of this kind instead of a fixed ``peer_as``."""

    INTERNAL = "internal"
    EXTERNAL = "external"


class ReceivedRoutes(enum.Enum):
    """What a session makes of the routes its peer sends."""

    COUNTED = "counted"  # checked (RFC 7606) and counted, never decoded: the announcer uses no received route
    DECODED = "decoded"  # every prefix decoded into RoutesReceived: for a peer played in tests and tools


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    local_as: int
    peer_as: int | None  # None: decided by dynamic_asn (or any AS when that is None too)
    router_id: ipaddress.IPv4Address
    dynamic_asn: DynamicAsn | None = None
    hold_time: int = 90
    keepalive_time: float | None = None  # None: a third of the negotiated hold time
    open_hold_time: int = 240  # RFC 4271 §8: "a large value" while waiting for the peer's OPEN
    families: frozenset[AddressFamily] = field(default_factory=lambda: frozenset({IPV4_UNICAST, IPV6_UNICAST}))
    route_refresh: bool = True
    extended_next_hop: bool = False  # RFC 8950: IPv4 prefixes may travel with an IPv6 next hop (BGP unnumbered)
    graceful_restart: bool = False
    restart_time: int = 120
    restarting: bool = False  # the R bit: this speaker restarted and the peer may keep our old routes
    next_hop_v4: ipaddress.IPv4Address | None = None  # default: the local address of an IPv4 connection
    next_hop_v6: ipaddress.IPv6Address | None = None  # default: the local address of an IPv6 connection
    received_routes: ReceivedRoutes = ReceivedRoutes.COUNTED

    def __post_init__(self) -> None:
        if self.hold_time in (1, 2) or not 0 <= self.hold_time <= 0xFFFF:
            raise ValueError(f"hold time {self.hold_time}: must be 0 or 3..65535")
        if not 0 < self.local_as <= 0xFFFFFFFF:
            raise ValueError(f"local AS {self.local_as}")

    def capabilities(self, *, restarting: bool | None = None) -> tuple[Capability, ...]:
        caps: list[Capability] = [Multiprotocol(f) for f in sorted(self.families)]
        if self.route_refresh:
            caps.append(RouteRefresh())
        if self.extended_next_hop and IPV4_UNICAST in self.families:
            caps.append(ExtendedNextHop((IPV4_OVER_IPV6,)))
        if self.graceful_restart:
            families = tuple((f, True) for f in sorted(self.families))
            flag = self.restarting if restarting is None else restarting
            caps.append(GracefulRestart(self.restart_time, flag, False, families))
        return tuple(caps)


class Session:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.state = State.IDLE
        self.negotiated: Negotiated | None = None
        self.peer_open: Open | None = None
        self._unroutable: set[Prefix] = set()  # desired prefixes this session cannot carry (family, next hop)
        self.updates_sent = 0
        self.updates_received = 0
        self.prefixes_received = 0  # announced and withdrawn, as counted in the UPDATEs received
        self._desired: dict[Prefix, Route] = {}
        self._rib_out = AdjRibOut()
        self._resolved: dict[tuple[Route, IPAddress, ipaddress.IPv6Address | None], Route] = {}
        self._reader = MessageReader()
        self._local_address: IPAddress | None = None
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._hold_deadline: float | None = None
        self._keepalive_deadline: float | None = None
        self._restarting = config.restarting  # the R bit goes only until the first session is Established

    @property
    def closed(self) -> bool:
        return self.state is State.IDLE

    @property
    def unroutable(self) -> list[Prefix]:
        """Desired prefixes this session cannot carry (a family not negotiated, no next hop), sorted."""
        return sorted(self._unroutable, key=prefix_key)

    @property
    def carried(self) -> int:
        """How many desired prefixes this session can carry."""
        return len(self._desired) - len(self._unroutable)

    @property
    def advertised(self) -> int:
        """How many prefixes the peer holds from us now (``metallb_bgp_announced_prefixes_total``)."""
        return len(self._rib_out.sent)

    # --- the shell's calls -------------------------------------------------------------------------------

    def start(self, now: float, *, passive: bool = False) -> None:
        """Leave Idle: Connect while the shell dials out, Active while it waits for the peer to dial in."""
        if self.state is State.IDLE:
            self._set_state(State.ACTIVE if passive else State.CONNECT)

    def connection_made(self, now: float, *, local_address: IPAddress | None = None) -> None:
        """TCP is up: send our OPEN (RFC 4271 §8.2.2, Connect/Active + TcpConnectionConfirmed)."""
        if self.state not in (State.CONNECT, State.ACTIVE, State.IDLE):
            raise RuntimeError(f"connection_made in {self.state.value}")
        self._reset_connection()
        self._local_address = local_address
        mine = Open.build(
            asn=self.config.local_as,
            hold_time=self.config.hold_time,
            bgp_identifier=self.config.router_id,
            capabilities=self.config.capabilities(restarting=self._restarting),
        )
        self._out += mine.encode()
        self._hold_deadline = now + self.config.open_hold_time
        self._set_state(State.OPEN_SENT)

    def connection_lost(self, now: float) -> None:
        if self.state is not State.IDLE:
            self._close(CloseReason.CONNECTION_LOST)

    def receive(self, data: bytes, now: float) -> None:
        if self.state not in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED):
            return
        self._reader.feed(data)
        try:
            for message_type, body in self._reader:
                self._handle(message_type, body, now)
                if self.closed:
                    return
        except Notification as error:
            self._fail(error, CloseReason.PROTOCOL_ERROR)
        except Exception as error:  # a bug here must end this session, never the process
            self._fail(Notification(ErrorCode.CEASE, reason=f"internal error: {error!r}"), CloseReason.PROTOCOL_ERROR)

    def handle_timer(self, now: float) -> None:
        if self._hold_deadline is not None and now >= self._hold_deadline:
            self._fail(Notification(ErrorCode.HOLD_TIMER_EXPIRED), CloseReason.HOLD_TIMER_EXPIRED)
            return
        if self._keepalive_deadline is not None and now >= self._keepalive_deadline:
            self._out += KEEPALIVE
            self._keepalive_deadline = now + self._keepalive_interval()

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._hold_deadline, self._keepalive_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def set_advertisements(
        self, routes: Mapping[Prefix, Route], now: float | None = None, *, shared: bool = False
    ) -> None:
        """Declare the whole set the peer should have from us; UPDATEs follow when Established. ``shared``: a
        dict ``routes`` is kept, not copied — its owner changes it in place and hands every change on through
        :meth:`change_advertisements` (which then writes what is already there)."""
        self._desired = routes if shared and isinstance(routes, dict) else dict(routes)
        if self.state is State.ESTABLISHED:
            self._converge(now)

    def change_advertisements(self, changes: Mapping[Prefix, Route | None], now: float | None = None) -> None:
        """Some prefixes of the whole set changed: each is now desired with its route, or no longer (None).
        The session still holds the whole desired set (a session established later sends it all); only the
        changed prefixes are looked at, and UPDATEs for those that differ from what the peer has follow."""
        desired = self._desired
        for prefix, route in changes.items():
            if route is None:
                desired.pop(prefix, None)
            else:
                desired[prefix] = route
        if self.state is State.ESTABLISHED:
            self._converge(now, among=changes.keys())

    def request_route_refresh(self, family: AddressFamily) -> None:
        if self.state is State.ESTABLISHED and self.negotiated and self.negotiated.route_refresh:
            self._out += RouteRefreshMessage(family).encode()

    @property
    def desired(self) -> Mapping[Prefix, Route]:
        return self._desired

    def stop(
        self,
        now: float,
        *,
        notify: bool = True,
        message: str = "",
        subcode: CeaseSubcode = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
        reason: CloseReason = CloseReason.STOPPED,
    ) -> None:
        """Close: with a Cease (Administrative Shutdown unless told otherwise), or (``notify=False``)
        silently, which lets a graceful restart helper keep our routes (RFC 4724 §4.2)."""
        if self.state is State.IDLE:
            return
        if notify and self.state in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED):
            notification = Notification.cease(subcode, message)
            self._out += notification.encode()
            self._close(reason, notification)
        else:
            self._close(reason)

    # --- message handling ----------------------------------------------------------------------------------

    def _handle(self, message_type: MessageType, body: bytes, now: float) -> None:
        if message_type is MessageType.NOTIFICATION:
            self._close(CloseReason.NOTIFICATION_RECEIVED, Notification.decode(body))
            return
        if message_type is MessageType.OPEN:
            if self.state is not State.OPEN_SENT:
                raise self._fsm_error("OPEN")
            self._on_open(Open.decode(body), now)
            return
        if self.state is State.OPEN_SENT:
            raise self._fsm_error(message_type.name)
        self._restart_hold(now)
        if message_type is MessageType.KEEPALIVE:
            if self.state is State.OPEN_CONFIRM:
                self._on_established(now)
            return
        if self.state is not State.ESTABLISHED:
            raise self._fsm_error(message_type.name)
        assert self.negotiated is not None
        if message_type is MessageType.UPDATE:
            self.updates_received += 1
            if self.config.received_routes is ReceivedRoutes.COUNTED:
                self._on_update_count(count_update(body, self.negotiated))
            else:
                self._on_update(Update.decode(body, self.negotiated))
        elif message_type is MessageType.ROUTE_REFRESH:
            request = RouteRefreshMessage.decode(body)
            if request.subtype == 0 and request.family in self.negotiated.families:
                self._events.append(RefreshRequested(request.family))
                self._send(self._rib_out.replay(request.family, self.negotiated), now)

    def _fsm_error(self, what: str) -> Notification:
        subcode = {
            State.OPEN_SENT: FsmSubcode.UNEXPECTED_IN_OPENSENT,
            State.OPEN_CONFIRM: FsmSubcode.UNEXPECTED_IN_OPENCONFIRM,
            State.ESTABLISHED: FsmSubcode.UNEXPECTED_IN_ESTABLISHED,
        }.get(self.state, FsmSubcode.UNSPECIFIED)
        return Notification(ErrorCode.FSM, subcode, reason=f"{what} in {self.state.value}")

    def _on_open(self, peer: Open, now: float) -> None:
        config = self.config
        asn = peer.asn
        if config.peer_as is not None and asn != config.peer_as:
            raise open_error(OpenSubcode.BAD_PEER_AS, peer.my_as.to_bytes(2, "big"), reason=f"peer AS {asn}")
        if config.peer_as is None and config.dynamic_asn is not None:
            internal = asn == config.local_as
            if internal != (config.dynamic_asn is DynamicAsn.INTERNAL):
                raise open_error(OpenSubcode.BAD_PEER_AS, peer.my_as.to_bytes(2, "big"), reason=f"peer AS {asn}")
        ibgp = asn == config.local_as
        if ibgp and peer.bgp_identifier == config.router_id:  # RFC 6286 §2.1: only internal peers must differ
            raise open_error(OpenSubcode.BAD_BGP_IDENTIFIER, peer.bgp_identifier.packed, reason="same identifier")
        hold = min(config.hold_time, peer.hold_time)
        keepalive = 0.0
        if hold:
            keepalive = config.keepalive_time or hold / 3
            if keepalive >= hold:
                keepalive = hold / 3
        ours = list(
            Open.build(
                asn=config.local_as,
                hold_time=0,
                bgp_identifier=config.router_id,
                capabilities=config.capabilities(restarting=self._restarting),
            ).capabilities
        )
        self.negotiated = Negotiated.from_capabilities(
            ours,
            list(peer.capabilities),
            hold_time=hold,
            keepalive_time=keepalive,
            ibgp=ibgp,
            local_as=config.local_as,
            peer_as=asn,
        )
        self.peer_open = peer
        self._out += KEEPALIVE
        self._restart_hold(now)
        self._keepalive_deadline = now + keepalive if keepalive else None
        self._set_state(State.OPEN_CONFIRM)

    def _on_established(self, now: float) -> None:
        assert self.negotiated is not None and self.peer_open is not None
        self._set_state(State.ESTABLISHED)
        self._restarting = False
        self._events.append(Established(self.peer_open, self.negotiated))
        self._converge(now)
        self._send([end_of_rib(f, self.negotiated) for f in sorted(self.negotiated.families)], now)

    def _on_update(self, update: Update) -> None:
        family = update.end_of_rib()
        if family is not None:
            self._events.append(EndOfRibReceived(family))
            return
        announced, withdrawn = update.announced(), update.withdrawals()
        if announced or withdrawn or update.errors:
            self._events.append(RoutesReceived(tuple(announced), tuple(withdrawn), update.attributes, update.errors))
        self.prefixes_received += len(announced) + len(withdrawn)

    def _on_update_count(self, update: UpdateCount) -> None:
        if update.end_of_rib is not None:
            self._events.append(EndOfRibReceived(update.end_of_rib))
            return
        if update.announced or update.withdrawn or update.errors:
            self._events.append(RoutesCounted(update.announced, update.withdrawn, update.errors))
        self.prefixes_received += update.announced + update.withdrawn

    # --- sending ---------------------------------------------------------------------------------------

    def _converge(self, now: float | None, *, among: Collection[Prefix] | None = None) -> None:
        """UPDATEs for what the peer should have and has not; ``among``: only those prefixes changed."""
        assert self.negotiated is not None
        local = self._local_address
        if among is None:
            desired: Mapping[Prefix, Route] = self._desired
            self._resolved.clear()  # a new session's (or next hop's) own: what older sets needed goes
        else:
            desired = {p: r for p in among if (r := self._desired.get(p)) is not None}
        resolved, unroutable = resolve(
            desired,
            families=self.negotiated.families,
            next_hop_v4=self.config.next_hop_v4 or (local if isinstance(local, ipaddress.IPv4Address) else None),
            next_hop_v6=self.config.next_hop_v6 or (local if isinstance(local, ipaddress.IPv6Address) else None),
            link_local=local if isinstance(local, ipaddress.IPv6Address) and local.is_link_local else None,
            ipv6_next_hop_for_ipv4=IPV4_OVER_IPV6 in self.negotiated.extended_next_hops,
            shared=self._resolved,
        )
        if among is None:
            self._unroutable = set(unroutable)
        else:
            self._unroutable.difference_update(among)
            self._unroutable.update(unroutable)
        messages, announced, withdrawn = self._rib_out.converge(resolved, self.negotiated, among=among)
        if messages:
            self._send(messages, now)
            self._events.append(AdvertisementsSent(announced, withdrawn, len(messages)))

    def _send(self, messages: list[bytes], now: float | None) -> None:
        for message in messages:
            self._out += message
        self.updates_sent += len(messages)
        if messages and now is not None and self._keepalive_deadline is not None:
            self._keepalive_deadline = now + self._keepalive_interval()

    # --- helpers -----------------------------------------------------------------------------------------

    def _keepalive_interval(self) -> float:
        return self.negotiated.keepalive_time if self.negotiated else float(self.config.open_hold_time)

    def _restart_hold(self, now: float) -> None:
        hold = self.negotiated.hold_time if self.negotiated else self.config.open_hold_time
        self._hold_deadline = now + hold if hold else None

    def _fail(self, error: Notification, reason: CloseReason) -> None:
        self._out += error.encode()
        self._close(reason, error)

    def _close(self, reason: CloseReason, notification: Notification | None = None) -> None:
        was_open = self.state in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED)
        self._hold_deadline = self._keepalive_deadline = None
        self._rib_out.clear()
        self._reader.clear()
        self._set_state(State.IDLE)
        if was_open or reason is not CloseReason.CONNECTION_LOST:
            self._events.append(Closed(reason, notification))

    def _reset_connection(self) -> None:
        self._reader.clear()
        self._rib_out.clear()
        self.negotiated = None
        self.peer_open = None
        self._out.clear()

    def _set_state(self, new: State) -> None:
        if new is not self.state:
            self._events.append(StateChanged(self.state, new))
            self.state = new
