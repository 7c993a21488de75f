"""BFD (RFC 5880) in asynchronous mode, single hop (RFC 5881) or multihop (RFC 5883), without I/O.

:class:`ControlPacket` is the 24-octet control packet; :class:`BfdSession` is the state machine of §6.8 driven
like the BGP core: ``receive(data, now, ttl=)``, ``handle_timer(now)``, ``get_timer()``, ``datagrams_to_send()``,
``next_event()``; with an echo interval it also runs the echo function (``bfd_echo.EchoFunction``:
``echoes_to_send()``, ``receive_echo(payload, now, ttl=)``). Randomness (transmit jitter) is passed in, so a
test can make it exact.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.announcer.bgp.bfd_echo import EchoFunction

BFD_VERSION = 1
CONTROL_PORT = 3784  # RFC 5881 §4
MULTIHOP_CONTROL_PORT = 4784  # RFC 5883 §5
MAX_TTL = 255  # sent with it; single hop accepts nothing less (RFC 5881 §5)
DEFAULT_MINIMUM_TTL = 254  # multihop: MetalLB's default, one router on the way
ECHO_CONTROL_TX_INTERVAL = 1.0  # §6.8.3: control packets at most once a second while echoes come back
PACKET_LENGTH = 24
IDLE_TX_INTERVAL = 1.0  # §6.8.3: at least one second while the session is not Up
_US = 1_000_000


class BfdState(enum.IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diagnostic(enum.IntEnum):
    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class MalformedPacket(ValueError):
    """A control packet to discard (§6.8.6); never fatal."""


@dataclass(frozen=True)
class ControlPacket:
    state: BfdState
    my_discriminator: int
    your_discriminator: int = 0
    diagnostic: int = Diagnostic.NONE
    detect_mult: int = 3
    desired_min_tx: int = _US  # microseconds, as on the wire
    required_min_rx: int = _US
    required_min_echo_rx: int = 0
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    authentication: bool = False
    demand: bool = False
    multipoint: bool = False
    version: int = BFD_VERSION

    def encode(self) -> bytes:
        flags = (
            (self.state << 6)
            | (0x20 if self.poll else 0)
            | (0x10 if self.final else 0)
            | (0x08 if self.control_plane_independent else 0)
            | (0x04 if self.authentication else 0)
            | (0x02 if self.demand else 0)
            | (0x01 if self.multipoint else 0)
        )
        return (
            bytes(((self.version << 5) | (self.diagnostic & 0x1F), flags, self.detect_mult, PACKET_LENGTH))
            + self.my_discriminator.to_bytes(4, "big")
            + self.your_discriminator.to_bytes(4, "big")
            + self.desired_min_tx.to_bytes(4, "big")
            + self.required_min_rx.to_bytes(4, "big")
            + self.required_min_echo_rx.to_bytes(4, "big")
        )

    @classmethod
    def decode(cls, data: bytes) -> ControlPacket:
        """Decode and apply the reception checks of §6.8.6 that need no session state."""
        if len(data) < PACKET_LENGTH:
            raise MalformedPacket(f"{len(data)} octets")
        version, length = data[0] >> 5, data[3]
        if version != BFD_VERSION:
            raise MalformedPacket(f"version {version}")
        flags = data[1]
        authentication = bool(flags & 0x04)
        if length < PACKET_LENGTH or length > len(data) or (authentication and length < PACKET_LENGTH + 2):
            raise MalformedPacket(f"length field {length}")
        packet = cls(
            state=BfdState(flags >> 6),
            my_discriminator=int.from_bytes(data[4:8], "big"),
            your_discriminator=int.from_bytes(data[8:12], "big"),
            diagnostic=data[0] & 0x1F,
            detect_mult=data[2],
            desired_min_tx=int.from_bytes(data[12:16], "big"),
            required_min_rx=int.from_bytes(data[16:20], "big"),
            required_min_echo_rx=int.from_bytes(data[20:24], "big"),
            poll=bool(flags & 0x20),
            final=bool(flags & 0x10),
            control_plane_independent=bool(flags & 0x08),
            authentication=authentication,
            demand=bool(flags & 0x02),
            multipoint=bool(flags & 0x01),
        )
        if packet.detect_mult == 0:
            raise MalformedPacket("detect multiplier 0")
        if packet.multipoint:
            raise MalformedPacket("multipoint bit set")
        if packet.my_discriminator == 0:
            raise MalformedPacket("my discriminator 0")
        if packet.your_discriminator == 0 and packet.state not in (BfdState.DOWN, BfdState.ADMIN_DOWN):
            raise MalformedPacket(f"your discriminator 0 in state {packet.state.name}")
        if packet.poll and packet.final:
            raise MalformedPacket("poll and final both set")
        return packet

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.name,
            "diagnostic": self.diagnostic,
            "detect_mult": self.detect_mult,
            "my_discriminator": self.my_discriminator,
            "your_discriminator": self.your_discriminator,
            "desired_min_tx_us": self.desired_min_tx,
            "required_min_rx_us": self.required_min_rx,
            "poll": self.poll,
            "final": self.final,
        }


@dataclass(frozen=True, kw_only=True)
class BfdConfig:
    """A MetalLB BFDProfile's timers, in seconds."""

    desired_min_tx: float = 0.3
    required_min_rx: float = 0.3
    detect_mult: int = 3
    passive: bool = False  # wait for the peer's first packet before sending (RFC 5880 §6.1 passive role)
    echo_interval: float | None = None  # the echo function on: our echo transmit (and min echo receive) interval
    multihop: bool = False  # RFC 5883: port 4784, any TTL from minimum_ttl up
    minimum_ttl: int = DEFAULT_MINIMUM_TTL

    def __post_init__(self) -> None:
        if not 1 <= self.detect_mult <= 255:
            raise ValueError(f"detect multiplier {self.detect_mult}")
        if self.desired_min_tx <= 0 or self.required_min_rx < 0:
            raise ValueError("intervals must be positive")
        if self.echo_interval is not None and (self.echo_interval <= 0 or self.multihop):
            raise ValueError("the echo function needs a positive interval and a single hop (RFC 5883 §3)")
        if not 1 <= self.minimum_ttl <= MAX_TTL:
            raise ValueError(f"minimum TTL {self.minimum_ttl}")

    @property
    def port(self) -> int:
        return MULTIHOP_CONTROL_PORT if self.multihop else CONTROL_PORT

    def accepts_ttl(self, ttl: int) -> bool:
        """RFC 5881 §5: a single hop peer sends with 255 and nothing forwarded it; RFC 5883 §5 leaves multihop
        to the configuration: MetalLB's ``minimumTtl`` is the lowest accepted."""
        return ttl >= self.minimum_ttl if self.multihop else ttl == MAX_TTL


@dataclass(frozen=True)
class BfdStateChanged:
    old: BfdState
    new: BfdState
    diagnostic: Diagnostic


@dataclass
class _Remote:
    discriminator: int = 0
    state: BfdState = BfdState.DOWN
    desired_min_tx: float = 0.0
    required_min_rx: float = 1 / _US  # §6.8.1: initialised to 1 µs
    detect_mult: int = 0
    required_min_echo_rx: float = 0.0  # 0: the peer loops no echo
    heard: bool = False


@dataclass
class BfdSession:
    config: BfdConfig
    discriminator: int
    random: Callable[[], float]  # uniform in [0, 1), for jitter
    state: BfdState = BfdState.DOWN
    diagnostic: Diagnostic = Diagnostic.NONE
    remote: _Remote = field(default_factory=_Remote)
    _desired_tx: float = IDLE_TX_INTERVAL
    _polling: bool = False
    _next_tx: float | None = None
    _detect_deadline: float | None = None
    _out: list[bytes] = field(default_factory=list)
    _events: deque[BfdStateChanged] = field(default_factory=deque)
    echo: EchoFunction | None = None

    def __post_init__(self) -> None:
        if not 0 < self.discriminator < 1 << 32:
            raise ValueError("the local discriminator must be a non-zero 32-bit number")
        if self.config.echo_interval is not None:
            self.echo = EchoFunction(self.discriminator, self.config.echo_interval, self.config.detect_mult)

    @property
    def echo_active(self) -> bool:
        """Echoes come back: the echo function watches the path, control packets go slowly."""
        return self.echo is not None and self.echo.active

    def start(self, now: float) -> None:
        if not self.config.passive:
            self._next_tx = now

    def admin_down(self, now: float) -> None:
        self._set_state(BfdState.ADMIN_DOWN, Diagnostic.ADMINISTRATIVELY_DOWN)
        self._send(now)

    def receive(self, data: bytes, now: float, *, ttl: int = MAX_TTL) -> None:
        """One received control packet; malformed ones, those for other sessions and those whose TTL
        (or hop limit) the session does not accept are dropped."""
        if not self.config.accepts_ttl(ttl):
            return
        try:
            packet = ControlPacket.decode(data)
        except (MalformedPacket, ValueError):
            return
        if packet.authentication:  # no authentication configured: §6.8.6 says discard
            return
        if packet.your_discriminator not in (0, self.discriminator):
            return
        remote = self.remote
        remote.discriminator = packet.my_discriminator
        remote.state = packet.state
        remote.desired_min_tx = packet.desired_min_tx / _US
        remote.required_min_rx = packet.required_min_rx / _US
        remote.detect_mult = packet.detect_mult
        remote.required_min_echo_rx = packet.required_min_echo_rx / _US
        remote.heard = True
        if packet.final:
            self._polling = False
        if self.state is BfdState.ADMIN_DOWN:
            return
        if packet.state is BfdState.ADMIN_DOWN:
            if self.state is not BfdState.DOWN:
                self._set_state(BfdState.DOWN, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN)
        elif self.state is BfdState.DOWN:
            if packet.state is BfdState.DOWN:
                self._set_state(BfdState.INIT, Diagnostic.NONE)
            elif packet.state is BfdState.INIT:
                self._set_state(BfdState.UP, Diagnostic.NONE)
        elif self.state is BfdState.INIT:
            if packet.state in (BfdState.INIT, BfdState.UP):
                self._set_state(BfdState.UP, Diagnostic.NONE)
        elif packet.state is BfdState.DOWN:  # we are Up
            self._set_state(BfdState.DOWN, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN)
        self._detect_deadline = now + self._detection_time()
        self._follow_echo(now)
        if packet.poll:  # §6.8.7: answer a poll at once, with Final
            self._send(now, final=True)
        elif self._next_tx is None:  # a passive session starts sending once it hears the peer
            self._next_tx = now

    def receive_echo(self, payload: bytes, now: float, *, ttl: int) -> None:
        """One echo read off the link; ours coming back fresh keeps the echo function alive."""
        if self.echo is None:
            return
        was_active = self.echo.active
        if self.echo.receive(payload, now, ttl=ttl) and not was_active:
            self._retime()

    def handle_timer(self, now: float) -> None:
        if self._detect_deadline is not None and now >= self._detect_deadline:
            self._detect_deadline = None
            self.remote = _Remote()
            if self.state in (BfdState.INIT, BfdState.UP):
                self._set_state(BfdState.DOWN, Diagnostic.CONTROL_DETECTION_TIME_EXPIRED)
        if self.echo is not None and self.echo.handle_timer(now) and self.state is BfdState.UP:
            self._set_state(BfdState.DOWN, Diagnostic.ECHO_FUNCTION_FAILED)
        self._follow_echo(now)
        if self._next_tx is not None and now >= self._next_tx:
            self._send(now)

    def get_timer(self) -> float | None:
        echo = self.echo.get_timer() if self.echo is not None else None
        deadlines = [d for d in (self._next_tx, self._detect_deadline, echo) if d is not None]
        return min(deadlines) if deadlines else None

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def echoes_to_send(self) -> list[bytes]:
        """Echo payloads due (the shell puts them in packets to our own address, through the peer)."""
        return self.echo.payloads_to_send() if self.echo is not None else []

    def next_event(self) -> BfdStateChanged | None:
        return self._events.popleft() if self._events else None

    # --- internals ----------------------------------------------------------------------------------------

    def _detection_time(self) -> float:
        """§6.8.4, asynchronous mode: the remote multiplier times the agreed remote transmit interval."""
        return self.remote.detect_mult * max(self.config.required_min_rx, self.remote.desired_min_tx)

    def _tx_interval(self) -> float:
        interval = max(self._desired_tx, self.remote.required_min_rx)
        spread = 0.15 if self.config.detect_mult == 1 else 0.25  # §6.8.7 jitter
        return interval * (1 - spread * self.random())

    def _send(self, now: float, *, final: bool = False) -> None:
        if self.remote.required_min_rx == 0 and self.remote.heard:  # the peer asked us to stay silent
            self._next_tx = None
            return
        packet = ControlPacket(
            state=self.state,
            my_discriminator=self.discriminator,
            your_discriminator=self.remote.discriminator,
            diagnostic=self.diagnostic,
            detect_mult=self.config.detect_mult,
            desired_min_tx=round(self._desired_tx * _US),
            required_min_rx=round(self.config.required_min_rx * _US),
            required_min_echo_rx=round((self.config.echo_interval or 0) * _US),
            poll=self._polling and not final,
            final=final,
        )
        self._out.append(packet.encode())
        if not final:
            self._next_tx = now + self._tx_interval()

    def _follow_echo(self, now: float) -> None:
        """§6.8.9: echoes only while Up and while the peer's last packet asked for them (a non-zero Required
        Min Echo RX Interval), never faster than it asks."""
        echo = self.echo
        if echo is None:
            return
        wanted = self.state is BfdState.UP and self.remote.required_min_echo_rx > 0
        if wanted and not echo.running:
            echo.start(now, remote_min_echo_rx=self.remote.required_min_echo_rx)
        elif wanted:
            echo.retime(remote_min_echo_rx=self.remote.required_min_echo_rx)
        elif echo.running:
            echo.stop()
            self._retime()

    def _retime(self) -> None:
        """§6.8.3: one second while not Up; the configured interval when Up, but no faster than once a second
        while the echo function is active. A change is announced with a poll sequence."""
        desired = max(IDLE_TX_INTERVAL, self.config.desired_min_tx)
        if self.state is BfdState.UP:
            slowest = ECHO_CONTROL_TX_INTERVAL if self.echo_active else 0.0
            desired = max(slowest, self.config.desired_min_tx)
        if desired != self._desired_tx:
            self._desired_tx = desired
            self._polling = True

    def _set_state(self, new: BfdState, diagnostic: Diagnostic) -> None:
        if new is self.state:
            return
        old, self.state, self.diagnostic = self.state, new, diagnostic
        if new is not BfdState.UP and self.echo is not None:
            self.echo.stop()
        self._retime()
        self._events.append(BfdStateChanged(old, new, diagnostic))
