"""BFD (RFC 5880) control packets and two session cores on a fake clock."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.announcer.bgp.bfd import (
    MAX_TTL,
    BfdConfig,
    BfdSession,
    BfdState,
    BfdStateChanged,
    ControlPacket,
    Diagnostic,
    MalformedPacket,
)
from services.announcer.bgp.bfd_echo import RETURNED_TTL

FAST = BfdConfig(desired_min_tx=0.3, required_min_rx=0.3, detect_mult=3)


def test_golden_packet() -> None:
    # version 1, diag 0, state Up (0xc0), detect mult 3, length 24, discriminators 1 and 2, 300 ms timers
    data = bytes.fromhex("20 c0 03 18 00000001 00000002 000493e0 000493e0 00000000")
    packet = ControlPacket.decode(data)
    assert packet.to_dict() == {
        "state": "UP",
        "diagnostic": 0,
        "detect_mult": 3,
        "my_discriminator": 1,
        "your_discriminator": 2,
        "desired_min_tx_us": 300_000,
        "required_min_rx_us": 300_000,
        "poll": False,
        "final": False,
    }
    assert packet.encode() == data


@pytest.mark.parametrize(
    "hexdata",
    [
        "20 c0 03 18 00000001 00000002 000493e0 000493e0",  # short
        "40 c0 03 18 00000001 00000002 000493e0 000493e0 00000000",  # version 2
        "20 c0 00 18 00000001 00000002 000493e0 000493e0 00000000",  # detect mult 0
        "20 c1 03 18 00000001 00000002 000493e0 000493e0 00000000",  # multipoint
        "20 c0 03 18 00000000 00000002 000493e0 000493e0 00000000",  # my discriminator 0
        "20 c0 03 18 00000001 00000000 000493e0 000493e0 00000000",  # Up without your discriminator
        "20 c0 03 30 00000001 00000002 000493e0 000493e0 00000000",  # length beyond the datagram
    ],
)
def test_malformed_packets(hexdata: str) -> None:
    with pytest.raises(MalformedPacket):
        ControlPacket.decode(bytes.fromhex("".join(hexdata.split())))


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedPacket):
        ControlPacket.decode(data)


@dataclass
class Link:
    a: BfdSession
    b: BfdSession
    now: float = 100.0
    up: bool = True
    ttl: int = MAX_TTL  # what a control packet arrives with
    loops_echoes: bool = True
    events: list[tuple[str, BfdStateChanged]] = field(default_factory=list)

    @classmethod
    def make(cls, a: BfdConfig = FAST, b: BfdConfig = FAST, *, ttl: int = MAX_TTL) -> Link:
        link = cls(BfdSession(a, 0x1111, lambda: 0.5), BfdSession(b, 0x2222, lambda: 0.5), ttl=ttl)
        link.a.start(link.now)
        link.b.start(link.now)
        return link

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None and t <= end]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            for session in (self.a, self.b):
                timer = session.get_timer()
                if timer is not None and timer <= self.now:
                    session.handle_timer(self.now)
            self.deliver()
        self.now = end

    def a_alone_until_down(self) -> float:
        """a's clock moved alone, whatever it sends lost, until it leaves Up; how long that took."""
        start = self.now
        while self.a.state is BfdState.UP:
            timer = self.a.get_timer()
            assert timer is not None
            self.now = timer
            self.a.handle_timer(self.now)
            self.a.datagrams_to_send()
            self.a.echoes_to_send()
        return self.now - start

    def deliver(self) -> None:
        for _ in range(10):
            moved = False
            for source, target in ((self.a, self.b), (self.b, self.a)):
                for datagram in source.datagrams_to_send():
                    moved = True
                    if self.up:
                        target.receive(datagram, self.now, ttl=self.ttl)
                for payload in source.echoes_to_send():  # the target's forwarding plane loops it back
                    if self.up and self.loops_echoes:
                        source.receive_echo(payload, self.now, ttl=RETURNED_TTL)
            for name, session in (("a", self.a), ("b", self.b)):
                while (event := session.next_event()) is not None:
                    self.events.append((name, event))
            if not moved:
                return


def test_three_way_handshake_brings_both_up() -> None:
    link = Link.make()
    link.run(3)
    assert link.a.state is BfdState.UP and link.b.state is BfdState.UP
    # Down -> Init -> Up on at least one side; no side ever went back down
    assert [e.new for n, e in link.events if n == "a"][-1] is BfdState.UP
    assert not [e for _, e in link.events if e.new is BfdState.DOWN]


def test_a_cut_link_is_detected_within_the_detection_time() -> None:
    link = Link.make()
    link.run(5)
    assert link.a.state is BfdState.UP
    link.up = False
    link.run(2)
    down = [(n, e) for n, e in link.events if e.new is BfdState.DOWN]
    assert {n for n, _ in down} == {"a", "b"}
    assert all(e.diagnostic is Diagnostic.CONTROL_DETECTION_TIME_EXPIRED for _, e in down)
    link.up = True
    link.run(5)
    assert link.a.state is BfdState.UP and link.b.state is BfdState.UP


def test_detection_time_is_multiplier_times_the_slower_interval() -> None:
    link = Link.make()
    link.run(5)
    link.up = False
    assert 0.6 <= link.a_alone_until_down() <= 0.9 + 1e-9


def test_admin_down_is_signalled_to_the_neighbour() -> None:
    link = Link.make()
    link.run(5)
    link.a.admin_down(link.now)
    link.deliver()
    assert link.b.state is BfdState.DOWN
    assert link.b.diagnostic is Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN


def test_poll_is_answered_with_final() -> None:
    link = Link.make()
    link.run(5)
    poll = ControlPacket(BfdState.UP, 0x2222, 0x1111, poll=True, desired_min_tx=300_000, required_min_rx=300_000)
    link.a.receive(poll.encode(), link.now)
    sent = [ControlPacket.decode(d) for d in link.a.datagrams_to_send()]
    assert [p.final for p in sent] == [True]


def test_passive_waits_for_the_peer() -> None:
    link = Link.make(b=BfdConfig(passive=True))
    assert link.b.get_timer() is None
    link.run(3)
    assert link.b.state is BfdState.UP


def test_packets_for_another_session_are_ignored() -> None:
    link = Link.make()
    link.run(5)
    stray = ControlPacket(BfdState.DOWN, 0x9999, 0x4242)
    link.a.receive(stray.encode(), link.now)
    assert link.a.state is BfdState.UP


# --- multihop (RFC 5883): the TTL is checked against the configured minimum ----------------------------------

MULTIHOP = BfdConfig(desired_min_tx=0.3, required_min_rx=0.3, multihop=True, minimum_ttl=253)


def test_single_hop_accepts_only_ttl_255() -> None:
    link = Link.make(ttl=254)
    link.run(5)
    assert link.a.state is BfdState.DOWN and link.b.state is BfdState.DOWN


@pytest.mark.parametrize(("ttl", "up"), [(255, True), (254, True), (253, True), (252, False)])
def test_multihop_accepts_from_the_minimum_ttl_up(ttl: int, up: bool) -> None:
    link = Link.make(MULTIHOP, MULTIHOP, ttl=ttl)
    link.run(5)
    assert (link.a.state is BfdState.UP) is up
    assert (link.b.state is BfdState.UP) is up


def test_multihop_uses_port_4784_and_single_hop_3784() -> None:
    assert MULTIHOP.port == 4784 and FAST.port == 3784
    assert BfdConfig(multihop=True).minimum_ttl == 254  # MetalLB's default: one router between


def test_echo_cannot_run_over_several_hops() -> None:
    with pytest.raises(ValueError, match="RFC 5883"):
        BfdConfig(multihop=True, echo_interval=0.05)
