"""The asyncio shell around one :class:`Session`: sockets, timers, reconnection. No protocol logic here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.announcer.bgp import tcp
from services.announcer.bgp.collision import Initiator, Kept, resolve_collision
from services.announcer.bgp.events import Closed, CloseReason, Established, Event, State
from services.announcer.bgp.nlri import IPAddress, Prefix
from services.announcer.bgp.notification import CeaseSubcode
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import Session, SessionConfig
from services.common.aio import stopped
from services.common.supervision import OnFailure, supervised

log = logging.getLogger(__name__)

EventCallback = Callable[[Event], None]


@dataclass(frozen=True, kw_only=True)
class SpeakerConfig:
    session: SessionConfig
    peer_address: IPAddress
    peer_port: int = 179
    source_address: IPAddress | None = None
    password: str | None = None  # TCP MD5 (RFC 2385)
    connect: bool = True  # dial out; with False, wait for the peer (through a Listener)
    connect_time: float = 120.0  # the longest wait between two attempts (MetalLB's connectTime)
    min_backoff: float = 1.0
    connect_timeout: float = 10.0
    ttl: int | None = None  # e.g. 255 for ebgpMultiHop; None keeps the system default
    device: str | None = None  # SO_BINDTODEVICE: a VRF's master, or the interface a link-local peer is on


RECEIVE_SLICE = 16 * 1024
"""Octets handed to the session core per turn of the event loop: a peer sending a full table as fast as TCP
carries it gets a few UPDATEs' worth of work at a time, and BFD and keepalive timers run in between."""


class Connection(asyncio.Protocol):
    """One TCP connection; it belongs to a speaker once ``attach`` accepted it.

    What arrives is handed over in slices of at most :data:`RECEIVE_SLICE` octets, one per turn of the loop;
    while a backlog waits, the socket is not read (TCP flow control holds the peer back).
    """

    def __init__(
        self,
        owner: Speaker | None = None,
        *,
        route: Callable[[IPAddress | None, int, str], Speaker | None] | None = None,
    ):
        self.owner = owner
        self._route = route
        # a connection handed its speaker is one we dialled; one routed to it was accepted (RFC 4271 §6.8)
        self.initiator = Initiator.LOCAL if owner is not None else Initiator.REMOTE
        self.transport: asyncio.Transport | None = None
        self._backlog = bytearray()
        self._draining = False
        self._lost: tuple[Exception | None] | None = None  # the loss, held until the backlog is delivered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.owner is None and self._route is not None:
            peer = transport.get_extra_info("peername")  # a link-local source with its interface's index
            vrf = tcp.bound_device(transport.get_extra_info("socket"))  # the VRF it arrived through, if any
            self.owner = self._route(tcp.address_of(peer), tcp.scope_of(peer), vrf)
        if self.owner is None or not self.owner.attach(self):
            self.owner = None
            tcp.reset_on_close(transport.get_extra_info("socket"))  # an RST, not a FIN: nothing more to say
            transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.owner is None:
            return
        if not self._draining and len(data) <= RECEIVE_SLICE:
            self.owner.data_received(self, data)
            return
        self._backlog += data
        if not self._draining:
            self._draining = True
            if self.transport is not None:
                self.transport.pause_reading()
            self._deliver_slice()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._draining:
            self._lost = (exc,)
        elif self.owner is not None:
            self.owner.connection_lost(self, exc)

    def _deliver_slice(self) -> None:
        piece = bytes(self._backlog[:RECEIVE_SLICE])
        del self._backlog[:RECEIVE_SLICE]
        if self.owner is not None:
            self.owner.data_received(self, piece)
        if self._backlog:
            asyncio.get_running_loop().call_soon(self._deliver_slice)
            return
        self._draining = False
        if self._lost is not None:
            (exc,), self._lost = self._lost, None
            if self.owner is not None:
                self.owner.connection_lost(self, exc)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class Speaker:
    """Keeps one BGP session to one peer up and converged to the advertisements it is given."""

    def __init__(self, config: SpeakerConfig, *, on_event: EventCallback | None = None) -> None:
        self.config = config
        self.session = Session(config.session)
        self.established = asyncio.Event()
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._connection: Connection | None = None
        self._disconnected = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._was_established = False
        self._pending: tuple[Connection, Session] | None = None

    @property
    def state(self) -> State:
        return self.session.state

    async def __aenter__(self) -> Speaker:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self.config.connect and self._task is None:
            # RESTART: the loop keeps nothing but its backoff; a dead one would leave the peer unreachable
            self._task = supervised(self._run, name="bgp-connect", on_failure=OnFailure.RESTART)
        elif not self.config.connect:
            self.session.start(self._loop.time(), passive=True)
            self._process()

    def set_advertisements(self, routes: Mapping[Prefix, Route], *, shared: bool = False) -> None:
        """The whole set this peer should have from us, as of now (``shared``: see ``Session``)."""
        self.session.set_advertisements(routes, self._loop.time(), shared=shared)
        self._process()
        if self._pending is not None:
            self._pending[1].set_advertisements(routes, self._loop.time(), shared=shared)
            self._process_pending()

    def change_advertisements(self, changes: Mapping[Prefix, Route | None]) -> None:
        """Some prefixes of the set changed (None: no longer advertised); the rest stays as set."""
        self.session.change_advertisements(changes, self._loop.time())
        self._process()
        if self._pending is not None:
            self._pending[1].change_advertisements(changes, self._loop.time())
            self._process_pending()

    def peer_down(self, message: str = "BFD down") -> None:
        """The peer is unreachable (BFD says so): end the session now rather than at hold timer expiry.
        The reconnect loop carries on with its backoff."""
        if self.session.state in (State.IDLE, State.CONNECT, State.ACTIVE):
            return
        self.session.stop(
            self._loop.time(), message=message, subcode=CeaseSubcode.BFD_DOWN, reason=CloseReason.PEER_DOWN
        )
        self._process()

    async def stop(self, *, keep_routes: bool = False, message: str = "", grace: float = 2.0) -> None:
        """Close with a Cease NOTIFICATION, or silently with ``keep_routes`` so a graceful restart helper
        keeps our routes until we are back."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await stopped(self._task)
        if self._pending is not None:
            self._drop_pending(self._pending[0])
        connection = self._connection
        self.session.stop(self._loop.time(), notify=not keep_routes, message=message)
        self._process()
        if connection is not None and connection.transport is not None:
            if keep_routes:
                connection.transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._disconnected.wait(), grace)
            if self._connection is connection and connection.transport is not None:
                connection.transport.abort()
        if self._timer is not None:
            self._timer.cancel()

    # --- the connection's calls ----------------------------------------------------------------------

    def attach(self, connection: Connection) -> bool:
        """Take ``connection`` for this session; a second one while the first is still opening is held until
        the peer's OPEN settles the collision (RFC 4271 §6.8)."""
        if self._stopping or connection.transport is None:
            return False
        now = self._loop.time()
        local = tcp.address_of(connection.transport.get_extra_info("sockname"))
        if self._connection is None and self.session.state in (State.IDLE, State.CONNECT, State.ACTIVE):
            self._connection = connection
            self._disconnected.clear()
            self.session.start(now, passive=True)
            self.session.connection_made(now, local_address=local)
            log.info("bgp connected peer=%s local=%s", self.config.peer_address, local)
            self._wakeup.set()
            self._process()
            return True
        if self._pending is None and self.session.state in (State.OPEN_SENT, State.OPEN_CONFIRM):
            core = Session(self.config.session)
            core.set_advertisements(self.session.desired)
            core.start(now, passive=True)
            core.connection_made(now, local_address=local)
            self._pending = (connection, core)
            self._loop.call_later(self.config.session.open_hold_time, self._drop_pending, connection)
            log.info("bgp second connection, collision pending peer=%s", self.config.peer_address)
            self._process_pending()
            return True
        return False

    def data_received(self, connection: Connection, data: bytes) -> None:
        if connection is self._connection:
            self.session.receive(data, self._loop.time())
            self._process()
        elif self._pending is not None and connection is self._pending[0]:
            self._pending[1].receive(data, self._loop.time())
            self._process_pending()

    def connection_lost(self, connection: Connection, exc: Exception | None) -> None:
        if self._pending is not None and connection is self._pending[0]:
            self._pending = None
            return
        if connection is not self._connection:
            return
        self._connection = None
        self.session.connection_lost(self._loop.time())
        self._process()
        self._disconnected.set()
        self._wakeup.set()

    # --- connection collisions (RFC 4271 §6.8) ---------------------------------------------------------

    def _process_pending(self) -> None:
        assert self._pending is not None
        connection, core = self._pending
        if core.peer_open is not None and not core.closed:  # the peer's OPEN arrived: decide now
            kept = resolve_collision(
                local_id=self.config.session.router_id,
                remote_id=core.peer_open.bgp_identifier,
                local_as=self.config.session.local_as,
                remote_as=core.peer_open.asn,
                existing=self._connection.initiator if self._connection is not None else Initiator.LOCAL,
                existing_state=self.session.state,
                new=connection.initiator,
            )
            if kept is Kept.NEW:
                self._promote_pending(close_current=True)
            else:
                core.data_to_send()  # never confirm the losing connection with a KEEPALIVE
                self._drop_pending(connection, collision=True)
            return
        data = core.data_to_send()
        if data and connection.transport is not None:
            connection.transport.write(data)
        if core.closed:
            self._drop_pending(connection)

    def _drop_pending(self, connection: Connection, *, collision: bool = False) -> None:
        if self._pending is None or self._pending[0] is not connection:
            return
        core = self._pending[1]
        self._pending = None
        if collision:
            core.stop(self._loop.time(), subcode=CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
        if connection.transport is not None:
            connection.transport.write(core.data_to_send())
            connection.transport.close()

    def _promote_pending(self, *, close_current: bool) -> None:
        """The held connection becomes the session; the current one is closed (Cease, collision)."""
        assert self._pending is not None
        connection, core = self._pending
        self._pending = None
        old_connection, old_session = self._connection, self.session
        if close_current:
            old_session.stop(self._loop.time(), subcode=CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
            if old_connection is not None and old_connection.transport is not None:
                old_connection.transport.write(old_session.data_to_send())
                old_connection.transport.close()
        while core.next_event() is not None:  # its Idle→OpenConfirm story is not news to our listeners
            pass
        log.info("bgp collision resolved, keeping the newer connection peer=%s opened_by=%s", self.config.peer_address,
                 connection.initiator.value)  # fmt: skip
        self.session, self._connection = core, connection
        self._disconnected.clear()
        self._process()

    # --- internals -------------------------------------------------------------------------------------

    def _process(self) -> None:
        """Write what the core wants written, deliver its events, re-arm its timer."""
        data = self.session.data_to_send()
        connection = self._connection
        if data and connection is not None and connection.transport is not None:
            connection.transport.write(data)
        while (event := self.session.next_event()) is not None:
            if isinstance(event, Established):
                self.established.set()
                self._was_established = True
            elif isinstance(event, Closed):
                self.established.clear()
                log.info("bgp closed peer=%s reason=%s", self.config.peer_address, event.describe())
                if connection is not None and connection.transport is not None:
                    connection.transport.close()  # after the NOTIFICATION is flushed
                if self._pending is not None and not self._stopping:
                    self._promote_pending(close_current=False)  # the peer closed ours: take its connection
                    return
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("bgp event callback failed peer=%s", self.config.peer_address)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.get_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self._loop.time())
        self._process()

    async def _run(self) -> None:
        backoff = self.config.min_backoff
        while not self._stopping:
            if self._connection is None:
                self._was_established = False
                self.session.start(self._loop.time())
                try:
                    await self._dial()
                except (OSError, TimeoutError) as error:
                    log.info("bgp connect failed peer=%s error=%r", self.config.peer_address, error)
                    self.session.connection_lost(self._loop.time())
                    self._process()
                except Exception:  # a bug must not end the reconnect loop: log it, back off, try again
                    log.exception("bgp connect attempt failed peer=%s", self.config.peer_address)
                    self.session.connection_lost(self._loop.time())
                    self._process()
            if self._connection is not None:
                await self._disconnected.wait()
                if self._was_established:
                    backoff = self.config.min_backoff
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), backoff)
            backoff = min(backoff * 2, self.config.connect_time)

    async def _dial(self) -> None:
        config = self.config
        sock = tcp.client_socket(
            peer=config.peer_address, source=config.source_address, password=config.password, ttl=config.ttl,
            device=config.device,
        )  # fmt: skip
        try:
            address = tcp.peer_sockaddr(config.peer_address, config.peer_port, device=config.device)
            async with asyncio.timeout(config.connect_timeout):
                await self._loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        if self._connection is not None or self._stopping:  # the peer dialled in meanwhile
            sock.close()
            return
        await self._loop.create_connection(lambda: Connection(self), sock=sock)
