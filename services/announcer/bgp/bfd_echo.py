"""The BFD echo function (RFC 5880 §6.4, §6.8.9) over IPv4, single hop, without I/O.

An echo packet goes out with our own address as both source and destination, to the peer's MAC: the peer's
forwarding plane routes it straight back (TTL 255 out, 254 back), never its BFD process. What comes back
says the path works both ways; ``echo interval x detect multiplier`` without one takes the session down
(diagnostic 2, Echo Function Failed).

:class:`EchoFunction` keeps the timers: ``start``, ``receive(payload, now, ttl=)``, ``handle_timer(now)``,
``get_timer()``, ``payloads_to_send()``. It is *active* once an echo came back since it started: only then
does the session slow its control packets (§6.8.3) and only then can the echo function fail, so a path
that never loops echoes (a peer that does not forward them) leaves the session on its control packets.
``echo_datagram`` and ``returned_echo`` build and read the IPv4/UDP packet the shell puts on the link.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

ECHO_PORT = 3785  # RFC 5881 §4
SENT_TTL = 255
RETURNED_TTL = 254  # one forwarding hop: the peer's
PAYLOAD_LENGTH = 24
_VERSION = 1
_PAYLOAD = struct.Struct("!BBHIQQ")  # version, length, reserved, discriminator, sequence, reserved
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_UDP_PROTOCOL = 17


@dataclass(frozen=True)
class EchoPayload:
    """What an echo carries: a local matter (RFC 5880 §4.5). The layout FRR's bfdd uses (version, length,
    reserved, discriminator, 16 octets of its own), with a sequence number in ours to tell stale echoes."""

    discriminator: int
    sequence: int

    def encode(self) -> bytes:
        return _PAYLOAD.pack(_VERSION, PAYLOAD_LENGTH, 0, self.discriminator, self.sequence, 0)

    @classmethod
    def decode(cls, data: bytes) -> EchoPayload | None:
        if len(data) < PAYLOAD_LENGTH:
            return None
        version, length, _, discriminator, sequence, _ = _PAYLOAD.unpack_from(data)
        if version != _VERSION or length != PAYLOAD_LENGTH:
            return None
        return cls(discriminator, sequence)


@dataclass
class EchoFunction:
    """One session's echo function: ``interval`` is ours (MetalLB's ``echoInterval``), never below the peer's
    Required Min Echo RX Interval; the detection time is ``detect_mult`` of those intervals."""

    discriminator: int
    interval: float
    detect_mult: int
    active: bool = False
    _running: bool = False
    _tx_interval: float = 0.0
    _sequence: int = 0
    _first_of_run: int = 1
    _next_tx: float | None = None
    _deadline: float | None = None
    _out: list[bytes] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def detection_time(self) -> float:
        return self.detect_mult * self._tx_interval

    def start(self, now: float, *, remote_min_echo_rx: float) -> None:
        """Start sending (session Up, the peer loops echoes); echoes sent before this are stale."""
        self._running, self.active = True, False
        self._tx_interval = max(self.interval, remote_min_echo_rx)
        self._first_of_run = self._sequence + 1
        self._next_tx, self._deadline = now, None

    def retime(self, *, remote_min_echo_rx: float) -> None:
        """The peer asked for another minimum interval (§6.8.9: never send faster than it)."""
        self._tx_interval = max(self.interval, remote_min_echo_rx)

    def stop(self) -> None:
        self._running = self.active = False
        self._next_tx = self._deadline = None

    def receive(self, payload: bytes, now: float, *, ttl: int) -> bool:
        """One echo back from the link; True when it is ours and fresh (it proves the path)."""
        echo = EchoPayload.decode(payload)
        if not self._running or echo is None or ttl != RETURNED_TTL:
            return False
        if echo.discriminator != self.discriminator or not self._first_of_run <= echo.sequence <= self._sequence:
            return False
        self.active = True
        self._deadline = now + self.detection_time
        return True

    def handle_timer(self, now: float) -> bool:
        """Send what is due; True when the echo function failed (no echo back for a detection time)."""
        if self._deadline is not None and now >= self._deadline:
            self.stop()
            return True
        if self._next_tx is not None and now >= self._next_tx:
            self._sequence += 1
            self._out.append(EchoPayload(self.discriminator, self._sequence).encode())
            self._next_tx = now + self._tx_interval
        return False

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._next_tx, self._deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def payloads_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out


# --- the packet on the link ------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def echo_datagram(address: ipaddress.IPv4Address, payload: bytes) -> bytes:
    """The IPv4 packet of one echo: from and to ``address``, UDP 3785 to 3785, TTL 255."""
    own = address.packed
    length = _UDP.size + len(payload)
    pseudo = own + own + struct.pack("!BBH", 0, _UDP_PROTOCOL, length)
    udp_checksum = _checksum(pseudo + _UDP.pack(ECHO_PORT, ECHO_PORT, length, 0) + payload) or 0xFFFF
    udp = _UDP.pack(ECHO_PORT, ECHO_PORT, length, udp_checksum) + payload
    header = _IPV4.pack(0x45, 0xC0, _IPV4.size + len(udp), 0, 0x4000, SENT_TTL, _UDP_PROTOCOL, 0, own, own)
    header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
    return header + udp


@dataclass(frozen=True)
class ReturnedEcho:
    ttl: int
    payload: bytes


def returned_echo(packet: bytes, address: ipaddress.IPv4Address) -> ReturnedEcho | None:
    """An IPv4 packet read off the link, if it is an echo to ``address`` from ``address`` (ours, back)."""
    if len(packet) < _IPV4.size + _UDP.size or packet[0] >> 4 != 4:
        return None
    header_length = (packet[0] & 0x0F) * 4
    _, _, total, _, fragment, ttl, protocol, _, source, destination = _IPV4.unpack_from(packet)
    if protocol != _UDP_PROTOCOL or fragment & 0x3FFF or source != address.packed or destination != source:
        return None
    if header_length < _IPV4.size or len(packet) < min(total, header_length + _UDP.size):
        return None
    _, port, udp_length, _ = _UDP.unpack_from(packet, header_length)
    if port != ECHO_PORT or udp_length < _UDP.size:
        return None
    end = min(len(packet), header_length + udp_length)
    return ReturnedEcho(ttl, packet[header_length + _UDP.size : end])
