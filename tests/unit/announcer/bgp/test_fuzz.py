"""Hostile input: whatever the bytes, decoders raise a NOTIFICATION and nothing else."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.announcer.bgp.attributes import Attribute
from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST, Negotiated
from services.announcer.bgp.message import MARKER, MessageReader
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.notification import Notification
from services.announcer.bgp.wire import decode_message
from tests.unit.announcer.bgp.test_golden import GOLDEN, h

NEGOTIATED = st.sampled_from(
    [
        Negotiated(four_octet_as=True, families=frozenset({IPV4_UNICAST, IPV6_UNICAST})),
        Negotiated(four_octet_as=False),
    ]
)
VALID = [h(g[2]) for g in GOLDEN]


def framed(message_type: int, body: bytes) -> bytes:
    return MARKER + (19 + len(body)).to_bytes(2, "big") + bytes((message_type,)) + body


def decode_only_notifications(data: bytes, negotiated: Negotiated) -> None:
    try:
        message = decode_message(data, negotiated)
    except Notification as error:
        assert 1 <= error.code <= 7
        error.encode()  # and it can always be sent back
        return
    message.to_dict()


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), negotiated=NEGOTIATED)
def test_arbitrary_bytes(data: bytes, negotiated: Negotiated) -> None:
    decode_only_notifications(data, negotiated)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_type=st.integers(0, 7), body=st.binary(max_size=300), negotiated=NEGOTIATED)
def test_arbitrary_bodies_behind_a_valid_header(message_type: int, body: bytes, negotiated: Negotiated) -> None:
    decode_only_notifications(framed(message_type, body), negotiated)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    message = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "byte"]))
        position = draw(st.integers(19, max(19, len(message) - 1)))
        if kind == "flip" and position < len(message):
            message[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and position < len(message):
            message[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del message[position : position + draw(st.integers(1, 8))]
        else:
            message[position:position] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):  # mostly keep the header consistent, so the body parsers get exercised
        message[16:18] = len(message).to_bytes(2, "big")
    return bytes(message)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), negotiated=NEGOTIATED)
def test_mutated_valid_messages(data: bytes, negotiated: Negotiated) -> None:
    decode_only_notifications(data, negotiated)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.one_of(mutated(), st.binary(max_size=64)), max_size=6))
def test_stream_reader_only_raises_notifications(chunks: list[bytes]) -> None:
    reader = MessageReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
            for _ in reader:
                pass
    except Notification:
        pass


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.one_of(mutated(), st.binary(max_size=64)), min_size=1, max_size=6))
def test_session_survives_garbage(chunks: list[bytes]) -> None:
    """An Established session fed garbage closes with a NOTIFICATION; it never raises."""
    from tests.unit.announcer.bgp.test_session import Pair

    pair = Pair.established()
    for chunk in chunks:
        pair.a.receive(chunk, pair.now)
    pair.a.data_to_send()
    while pair.a.next_event() is not None:
        pass


def test_prefix_host_bits_are_cleared() -> None:
    message = decode_message(framed(2, bytes.fromhex("0000 0000 17 c63365")), Negotiated())
    assert message.to_dict()["nlri"] == ["198.51.100.0/23"]


PREFIXES_V4: st.SearchStrategy[Prefix] = st.builds(
    lambda a, n: ipaddress.IPv4Network((a, n), strict=False), st.integers(0, 2**32 - 1), st.integers(0, 32)
)
PREFIXES_V6: st.SearchStrategy[Prefix] = st.builds(
    lambda a, n: ipaddress.IPv6Network((a, n), strict=False), st.integers(0, 2**128 - 1), st.integers(0, 128)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    v6=st.booleans(),
    data=st.data(),
    communities=st.lists(st.integers(0, 2**32 - 1), max_size=20),
    negotiated=NEGOTIATED,
)
def test_packed_announcements_and_withdrawals_round_trip(
    v6: bool, data: st.DataObject, communities: list[int], negotiated: Negotiated
) -> None:
    from services.announcer.bgp.aspath import AsPath
    from services.announcer.bgp.attributes import Communities, Origin
    from services.announcer.bgp.update import Update, pack_announcements, pack_withdrawals

    drawn = data.draw(st.lists(PREFIXES_V6 if v6 else PREFIXES_V4, min_size=1, max_size=1500))
    prefixes = sorted(set(drawn), key=lambda p: (int(p.network_address), p.prefixlen))
    family = IPV6_UNICAST if v6 else IPV4_UNICAST
    next_hop = ipaddress.ip_address("2001:db8::1" if v6 else "192.0.2.1")
    attributes: list[Attribute] = [Origin(), AsPath.sequence(64512)]
    if communities:
        attributes.append(Communities(tuple(communities)))
    sent = pack_announcements(
        family=family, attributes=attributes, next_hops=(next_hop,), prefixes=prefixes, negotiated=negotiated
    )
    withdrawn = pack_withdrawals(family=family, prefixes=prefixes, negotiated=negotiated)
    announced_back: list[Prefix] = []
    withdrawn_back: list[Prefix] = []
    for message in sent + withdrawn:
        assert len(message) <= 4096
        update = decode_message(message, negotiated)
        assert isinstance(update, Update) and not update.treat_as_withdraw
        announced_back += [p for _, p in update.announced()]
        withdrawn_back += [p for _, p in update.withdrawals()]
    assert announced_back == prefixes
    assert withdrawn_back == prefixes
