"""A peer's routes are checked as RFC 7606 asks and counted, never decoded: a full table costs the announcer
a walk over its bytes, while every malformation still gets the action the RFC names."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.announcer.bgp import nlri
from services.announcer.bgp.aspath import AsPath
from services.announcer.bgp.attributes import Attribute, Origin
from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST, AddressFamily
from services.announcer.bgp.events import Closed, CloseReason, EndOfRibReceived, RoutesCounted, State
from services.announcer.bgp.message import HEADER_LENGTH, MARKER, MessageType, split_message
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.notification import ErrorCode, Notification, UpdateSubcode
from services.announcer.bgp.update import Update, end_of_rib, pack_announcements, pack_withdrawals
from services.announcer.bgp.update_count import UpdateCount, count_update
from tests.unit.announcer.bgp.test_error_handling import (
    ATTRIBUTE_DISCARD,
    NEG,
    SESSION_RESET,
    TREAT_AS_WITHDRAW,
    update,
)
from tests.unit.announcer.bgp.test_fuzz import mutated
from tests.unit.announcer.bgp.test_session import Pair

ROUTER_V4 = ipaddress.IPv4Address("192.0.2.1")
ROUTER_V6 = ipaddress.IPv6Address("2001:db8::1")


def body(message: bytes) -> bytes:
    return message[HEADER_LENGTH:]


def full_table(count: int, *, v6: bool = False) -> list[Prefix]:
    if v6:
        base6 = int(ipaddress.IPv6Address("2001:db8::"))
        return [ipaddress.IPv6Network((base6 + (i << 64), 64)) for i in range(count)]
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    return [ipaddress.IPv4Network((base + (i << 8), 24)) for i in range(count)]


def announcements(prefixes: list[Prefix], family: AddressFamily) -> list[bytes]:
    next_hop = ROUTER_V6 if family == IPV6_UNICAST else ROUTER_V4
    attributes: list[Attribute] = [Origin(), AsPath.sequence(64513)]
    return pack_announcements(
        family=family, attributes=attributes, next_hops=[next_hop], prefixes=prefixes, negotiated=NEG
    )


@pytest.fixture
def no_prefix_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building any prefix object from received bytes fails the test."""

    def refuse(packed: bytes, length: int) -> Prefix:
        raise AssertionError("a received prefix was decoded")

    monkeypatch.setattr(nlri, "_v4", refuse)
    monkeypatch.setattr(nlri, "_v6", refuse)


def drain(pair: Pair) -> list[object]:
    events: list[object] = []
    while (event := pair.a.next_event()) is not None:
        events.append(event)
    return events


@pytest.mark.usefixtures("no_prefix_objects")
def test_a_full_table_is_counted_without_one_prefix_object() -> None:
    pair = Pair.established()
    drain(pair)
    updates_before = pair.a.updates_received  # the router's End-of-RIB markers
    v4, v6 = full_table(200_000), full_table(20_000, v6=True)
    stream = b"".join(announcements(v4, IPV4_UNICAST) + announcements(v6, IPV6_UNICAST))
    stream += b"".join(pack_withdrawals(family=IPV6_UNICAST, prefixes=v6, negotiated=NEG))
    stream += end_of_rib(IPV4_UNICAST, NEG) + end_of_rib(IPV6_UNICAST, NEG)
    for start in range(0, len(stream), 65536):  # as TCP hands it over, messages cut anywhere
        pair.a.receive(stream[start : start + 65536], pair.now)
    events = drain(pair)
    counted = [e for e in events if isinstance(e, RoutesCounted)]
    assert pair.a.state is State.ESTABLISHED
    assert sum(e.announced for e in counted) == 220_000
    assert sum(e.withdrawn for e in counted) == 20_000
    assert not any(e.errors for e in counted)
    assert [e for e in events if isinstance(e, EndOfRibReceived)] == [
        EndOfRibReceived(IPV4_UNICAST),
        EndOfRibReceived(IPV6_UNICAST),
    ]
    assert pair.a.prefixes_received == 240_000
    assert pair.a.updates_received - updates_before == len(counted) + 2


# (story, NLRI field or MP attribute, expected subcode): RFC 7606 §5.3 and §7.11 say: session reset
MALFORMED_NLRI = [
    ("IPv4 prefix length 33", update("40 01 01 00 40 02 00 40 03 04 c0000201", nlri="21 0a000000 00"),
     UpdateSubcode.INVALID_NETWORK_FIELD),
    ("IPv4 prefix overruns the message", update("40 01 01 00 40 02 00 40 03 04 c0000201", nlri="18 0a00 "),
     UpdateSubcode.INVALID_NETWORK_FIELD),
    ("withdrawn prefix length 40", update("", nlri="", withdrawn="28 0a000000 00"),
     UpdateSubcode.INVALID_NETWORK_FIELD),
    ("IPv6 prefix length 129 in MP_REACH_NLRI",
     update("40 01 01 00 40 02 00 80 0e 17 0002 01 10 20010db8000000000000000000000001 00 81 20", nlri=""),
     UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR),
    ("IPv6 prefix overruns MP_UNREACH_NLRI", update("80 0f 07 0002 01 40 2001 0d", nlri=""),
     UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR),
]  # fmt: skip


@pytest.mark.usefixtures("no_prefix_objects")
@pytest.mark.parametrize(("story", "message", "subcode"), MALFORMED_NLRI, ids=[m[0] for m in MALFORMED_NLRI])
def test_malformed_nlri_resets_the_session(story: str, message: bytes, subcode: UpdateSubcode) -> None:
    pair = Pair.established()
    drain(pair)
    pair.a.receive(message, pair.now)
    closed = [e for e in drain(pair) if isinstance(e, Closed)]
    assert pair.a.state is State.IDLE
    assert closed and closed[0].reason is CloseReason.PROTOCOL_ERROR
    sent = Notification.decode(split_message(pair.a.data_to_send())[1])
    assert (sent.code, sent.subcode) == (ErrorCode.UPDATE_MESSAGE, subcode)


def test_routes_without_origin_are_counted_as_withdrawn_and_the_session_stays() -> None:
    pair = Pair.established()
    drain(pair)
    pair.a.receive(update("40 02 00 40 03 04 c0000201", nlri="18 0a0000 18 0a0001"), pair.now)
    assert drain(pair) == [RoutesCounted(announced=0, withdrawn=2, errors=("missing ORIGIN",))]
    assert pair.a.state is State.ESTABLISHED


# --- the same verdict as the decoder, whatever the bytes --------------------------------------------------


def decoded_count(message: Update) -> UpdateCount:
    """What :func:`count_update` must say about a message the decoder read as ``message``."""
    return UpdateCount(len(message.announced()), len(message.withdrawals()), message.errors, message.end_of_rib())


def same_verdict(data: bytes) -> None:
    try:
        message_type, raw = split_message(data)
    except Notification:
        return
    if message_type is not MessageType.UPDATE:
        return
    try:
        expected: UpdateCount | tuple[int, int] = decoded_count(Update.decode(raw, NEG))
    except Notification as error:
        expected = (error.code, error.subcode)
    try:
        counted: UpdateCount | tuple[int, int] = count_update(raw, NEG)
    except Notification as error:
        counted = (error.code, error.subcode)
    assert counted == expected


RFC_7606_CASES = [update(a) for _, a in TREAT_AS_WITHDRAW + ATTRIBUTE_DISCARD] + [
    data for _, data, _ in SESSION_RESET
] + [m for _, m, _ in MALFORMED_NLRI]  # fmt: skip


@pytest.mark.parametrize("data", RFC_7606_CASES)
def test_every_rfc_7606_case_gets_the_decoders_verdict(data: bytes) -> None:
    same_verdict(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_messages_get_the_decoders_verdict(data: bytes) -> None:
    same_verdict(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=300))
def test_arbitrary_update_bodies_get_the_decoders_verdict(payload: bytes) -> None:
    same_verdict(MARKER + (HEADER_LENGTH + len(payload)).to_bytes(2, "big") + b"\x02" + payload)


def test_packed_announcements_are_counted_as_decoded() -> None:
    for message in announcements(full_table(3000), IPV4_UNICAST) + announcements(
        full_table(500, v6=True), IPV6_UNICAST
    ):
        same_verdict(message)
        assert count_update(body(message), NEG).announced == len(Update.decode(body(message), NEG).announced())
