"""The asyncio shell around :class:`BfdSession`: single hop (RFC 5881, UDP 3784) or multihop (RFC 5883, UDP
4784), sent with TTL 255 from a source port in 49152-65535; what arrives goes to the session registered for its
source address, with its TTL, which the session checks. With the echo function, a :class:`EchoLink` beside it.

Beside a session in a VRF or over an interface (BGP unnumbered), both sockets are bound to that device
(SO_BINDTODEVICE): a VRF's master makes the kernel route them in the VRF's table; an interface scopes a
link-local address, ours and the peer's, to that link."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import sys
from collections.abc import Callable

from services.announcer.bgp import tcp
from services.announcer.bgp.bfd import CONTROL_PORT, MAX_TTL, BfdConfig, BfdSession, BfdState, BfdStateChanged
from services.announcer.bgp.bfd_echo import ReturnedEcho
from services.announcer.bgp.bfd_echo_link import EchoLink
from services.announcer.bgp.nlri import IPAddress

log = logging.getLogger(__name__)

IP_RECVTTL = 12  # linux/in.h; not exported by Python's socket module
SOURCE_PORTS = (49152, 65535)  # RFC 5881 §4, RFC 5883 §5


class BfdEndpoint:
    """The receiving socket for one local address and port (3784 single hop, 4784 multihop); packets go to
    the peer registered for their source address (RFC 5883 §3: multihop sessions are told apart by addresses,
    never by interface). With ``device`` (a VRF's master or the interface of a link-local address) it hears
    only what arrives through that device."""

    def __init__(self, *, address: IPAddress, port: int = CONTROL_PORT, device: str | None = None) -> None:
        self.address, self.device = address, device
        self._peers: dict[IPAddress, BfdPeer] = {}
        self._sock = _device_socket(address, device)
        if address.version == 4:
            self._sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        else:
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        self._sock.bind(tcp.peer_sockaddr(address, port, device=device))
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    @property
    def bound_port(self) -> int:
        return int(self._sock.getsockname()[1])

    def add(self, peer: BfdPeer) -> None:
        self._peers[peer.peer] = peer

    def remove(self, peer: BfdPeer) -> None:
        if self._peers.get(peer.peer) is peer:
            del self._peers[peer.peer]

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _readable(self) -> None:
        for _ in range(64):  # drain what is queued, then yield to the loop
            try:
                data, ancillary, _flags, source = self._sock.recvmsg(256, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("bfd receive failed address=%s error=%r", self.address, error)
                return
            peer = self._peers.get(tcp.address_of(source))  # type: ignore[arg-type]
            if peer is not None:
                peer.datagram_received(data, ttl=_ttl(ancillary))


def _ttl(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The TTL (hop limit) the packet arrived with; 0 (accepted by no session) when the kernel did not say."""
    for level, kind, value in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            return int.from_bytes(value[:4], sys.byteorder) if len(value) >= 4 else value[0]
    return 0


class BfdPeer:
    """One BFD session to ``peer``; ``on_change`` hears every state change (Down is what BGP acts on)."""

    def __init__(
        self,
        endpoint: BfdEndpoint,
        *,
        peer: IPAddress,
        config: BfdConfig,
        peer_port: int | None = None,
        on_change: Callable[[BfdStateChanged], None] | None = None,
    ) -> None:
        self.peer = peer
        self.peer_port = config.port if peer_port is None else peer_port
        self._closed = False
        self.up = asyncio.Event()
        self._endpoint = endpoint
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        rng = random.SystemRandom()
        self.session = BfdSession(config, rng.randrange(1, 1 << 32), rng.random)
        self._sock = _source_socket(endpoint.address, rng, device=endpoint.device)
        self._destination = tcp.peer_sockaddr(peer, self.peer_port, device=endpoint.device)
        self._timer: asyncio.TimerHandle | None = None
        self._echo: EchoLink | None = None
        self._echo_active = False
        if config.echo_interval is not None and endpoint.address.version == 4 and peer.version == 4:
            self._echo = EchoLink(local=endpoint.address, peer=peer, on_echo=self._echo_received)
        endpoint.add(self)
        self.session.start(self._loop.time())
        self._process()

    @property
    def state(self) -> BfdState:
        return self.session.state

    @property
    def echo_active(self) -> bool:
        return self.session.echo_active

    def close(self) -> None:
        """Tell the peer we are going (AdminDown), then stop."""
        if self._closed:
            return
        self.session.admin_down(self._loop.time())
        self._process()
        self._endpoint.remove(self)
        if self._timer is not None:
            self._timer.cancel()
        self._closed = True
        self._sock.close()
        if self._echo is not None:
            self._echo.close()

    def datagram_received(self, data: bytes, *, ttl: int = MAX_TTL) -> None:
        if self._closed:
            return
        self.session.receive(data, self._loop.time(), ttl=ttl)
        self._process()

    def _echo_received(self, echo: ReturnedEcho) -> None:
        if self._closed:
            return
        self.session.receive_echo(echo.payload, self._loop.time(), ttl=echo.ttl)
        self._process()

    def _process(self) -> None:
        for datagram in self.session.datagrams_to_send():
            if self._closed:
                break
            with contextlib.suppress(OSError):  # a cut link: the detection timer will tell
                self._sock.sendto(datagram, self._destination)
        for payload in self.session.echoes_to_send():
            if self._echo is not None and not self._closed:
                self._echo.send(payload)
        if self.session.echo_active != self._echo_active:
            self._echo_active = self.session.echo_active
            log.info("bfd echo changed peer=%s active=%s", self.peer, self._echo_active)
            if not self._echo_active and self._echo is not None:
                self._echo.forget_neighbour()  # echoes lost: maybe the peer's MAC changed
        while (event := self.session.next_event()) is not None:
            log.info(
                "bfd state changed peer=%s old=%s new=%s diag=%s",
                self.peer,
                event.old.name,
                event.new.name,
                event.diagnostic.name,
            )
            if event.new is BfdState.UP:
                self.up.set()
            else:
                self.up.clear()
            if self._on_change is not None:
                try:
                    self._on_change(event)
                except Exception:
                    log.exception("bfd state callback failed peer=%s", self.peer)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.get_timer()
        if deadline is not None and not self._closed:
            self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.session.handle_timer(self._loop.time())
        self._process()


def _device_socket(address: IPAddress, device: str | None) -> socket.socket:
    """A non-blocking UDP socket for ``address``, bound to ``device`` if given."""
    sock = socket.socket(tcp.family_of(address), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if device is not None:
            tcp.bind_to_device(sock, device)
    except BaseException:
        sock.close()
        raise
    return sock


def _source_socket(address: IPAddress, rng: random.SystemRandom, *, device: str | None = None) -> socket.socket:
    sock = _device_socket(address, device)
    tcp.set_ttl(sock, MAX_TTL)
    for _ in range(64):
        try:
            sock.bind(tcp.peer_sockaddr(address, rng.randint(*SOURCE_PORTS), device=device))
            return sock
        except OSError:
            continue
    sock.close()
    raise OSError("no free BFD source port")
