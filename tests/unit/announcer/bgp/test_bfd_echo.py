"""The BFD echo function (RFC 5880 §6.4, §6.8.9) on a fake clock: two session cores, the link between them
looping each side's echoes back (or not), and the packets the shell puts on the wire."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.announcer.bgp.bfd import BfdConfig, BfdState, ControlPacket, Diagnostic
from services.announcer.bgp.bfd_echo import (
    ECHO_PORT,
    RETURNED_TTL,
    SENT_TTL,
    EchoPayload,
    echo_datagram,
    returned_echo,
)
from services.announcer.bgp.bfd_echo_link import Neighbour, neighbour_in
from tests.unit.announcer.bgp.test_bfd import FAST, Link

ECHO = BfdConfig(desired_min_tx=0.3, required_min_rx=0.3, detect_mult=3, echo_interval=0.05)
NODE = ipaddress.IPv4Address("10.77.0.2")


def next_control(link: Link, side: str = "a") -> ControlPacket:
    """The next control packet ``side`` sends, its clock moved alone to it (echoes meanwhile dropped)."""
    session = link.a if side == "a" else link.b
    now = link.now
    while True:
        timer = session.get_timer()
        assert timer is not None
        now = max(now, timer)
        session.handle_timer(now)
        session.echoes_to_send()
        if sent := session.datagrams_to_send():
            return ControlPacket.decode(sent[0])


def test_echo_runs_once_up_and_control_packets_slow_to_a_second() -> None:
    link = Link.make(ECHO, ECHO)
    link.run(5)
    assert link.a.state is BfdState.UP and link.a.echo_active and link.b.echo_active
    packet = next_control(link)
    assert packet.desired_min_tx == 1_000_000  # §6.8.3
    assert packet.required_min_echo_rx == 50_000  # echoInterval: what we loop back at most


def test_the_echo_interval_is_advertised_only_with_echo_mode() -> None:
    link = Link.make(ECHO, FAST)
    link.run(5)
    assert next_control(link, "a").required_min_echo_rx == 50_000
    assert next_control(link, "b").required_min_echo_rx == 0


def test_no_echo_towards_a_peer_that_does_not_loop_them() -> None:
    """A peer advertising Required Min Echo RX 0 gets no echo (§6.8.9); control packets keep their pace."""
    link = Link.make(ECHO, FAST)
    link.run(5)
    assert link.a.state is BfdState.UP
    assert link.a.echo is not None and not link.a.echo.running
    assert next_control(link).desired_min_tx == 300_000


def test_a_path_that_never_loops_echoes_leaves_the_session_on_control_packets() -> None:
    link = Link.make(ECHO, ECHO)
    link.loops_echoes = False
    link.run(5)
    assert link.a.state is BfdState.UP and not link.a.echo_active
    assert next_control(link).desired_min_tx == 300_000


def test_lost_echoes_take_the_session_down_within_interval_times_multiplier() -> None:
    link = Link.make(ECHO, ECHO)
    link.run(5)
    link.loops_echoes = False  # the forwarding path broke; control packets still pass
    assert link.a_alone_until_down() <= 3 * 0.05 + 1e-9
    assert link.a.diagnostic is Diagnostic.ECHO_FUNCTION_FAILED
    link.loops_echoes = True
    link.run(10)
    assert link.a.state is BfdState.UP and link.a.echo_active


def test_the_peer_s_slower_echo_rx_interval_wins() -> None:
    slow = BfdConfig(desired_min_tx=0.3, required_min_rx=0.3, echo_interval=0.2)
    link = Link.make(ECHO, slow)
    link.run(5)
    assert link.a.echo is not None and link.a.echo.detection_time == pytest.approx(3 * 0.2)


def test_stale_and_foreign_echoes_do_not_count() -> None:
    link = Link.make(ECHO, ECHO)
    link.run(5)
    echo = link.a.echo
    assert echo is not None
    deadline = echo.get_timer()
    for payload in (
        EchoPayload(0x1111, 10_000).encode(),  # not sent yet
        EchoPayload(0x2222, 1).encode(),  # another session's
        b"\x01\x18",  # short
    ):
        link.a.receive_echo(payload, link.now + 0.01, ttl=RETURNED_TTL)
    assert echo.get_timer() == deadline
    own = EchoPayload(0x1111, 1).encode()
    link.a.receive_echo(own, link.now, ttl=SENT_TTL)  # never left this host
    assert echo.get_timer() == deadline


def test_admin_down_stops_the_echoes() -> None:
    link = Link.make(ECHO, ECHO)
    link.run(5)
    link.a.admin_down(link.now)
    link.a.echoes_to_send()
    link.run(1)
    assert link.a.echoes_to_send() == []


# --- the packet on the link --------------------------------------------------------------------------------


def test_golden_echo_datagram() -> None:
    payload = EchoPayload(0x01020304, 7).encode()
    packet = echo_datagram(NODE, payload)
    ip_checksum, udp_checksum = packet[10:12].hex(), packet[26:28].hex()
    expected = (
        f"45c00034 00004000 ff11{ip_checksum} 0a4d0002 0a4d0002"  # TTL 255, UDP, from and to our own address
        f" 0ec90ec9 0020{udp_checksum} 0118 0000 01020304 0000000000000007 0000000000000000"
    )
    assert packet.hex() == expected.replace(" ", "")
    assert sum(int.from_bytes(packet[i : i + 2], "big") for i in range(0, 20, 2)) % 0xFFFF == 0
    back = bytes([*packet[:8], RETURNED_TTL, *packet[9:]])  # forwarded once, by the peer
    read = returned_echo(back, NODE)
    assert read is not None and read.ttl == RETURNED_TTL
    assert EchoPayload.decode(read.payload) == EchoPayload(0x01020304, 7)
    assert ECHO_PORT == 3785


def test_other_packets_are_not_echoes() -> None:
    packet = echo_datagram(NODE, EchoPayload(1, 1).encode())
    assert returned_echo(packet, ipaddress.IPv4Address("10.77.0.1")) is None  # the router's own echo
    assert returned_echo(packet[:20], NODE) is None
    tcp = bytes([*packet[:9], 6, *packet[10:]])
    assert returned_echo(tcp, NODE) is None


@given(st.binary(max_size=80))
def test_any_bytes_read_as_an_echo_or_nothing(data: bytes) -> None:
    read = returned_echo(data, NODE)
    if read is not None:
        EchoPayload.decode(read.payload)


ARP_TABLE = """IP address       HW type     Flags       HW address            Mask     Device
10.77.0.9        0x1         0x0         00:00:00:00:00:00     *        eth0
10.77.0.1        0x1         0x2         52:54:00:12:34:56     *        eth0
"""


def test_the_peer_s_mac_and_interface_come_from_the_neighbour_table() -> None:
    assert neighbour_in(ARP_TABLE, ipaddress.IPv4Address("10.77.0.1")) == Neighbour(
        "eth0", bytes.fromhex("525400123456")
    )
    assert neighbour_in(ARP_TABLE, ipaddress.IPv4Address("10.77.0.9")) is None  # incomplete
    assert neighbour_in(ARP_TABLE, ipaddress.IPv4Address("10.77.0.7")) is None
    assert neighbour_in("garbage\n10.77.0.1 0x1 0x2 zz *", ipaddress.IPv4Address("10.77.0.1")) is None
