"""RFC 4271 §6 and RFC 7606: which malformation resets the session, which withdraws, which is shrugged off."""

from __future__ import annotations

import pytest

from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST, Negotiated
from services.announcer.bgp.message import MARKER
from services.announcer.bgp.notification import ErrorCode, HeaderSubcode, Notification, OpenSubcode, UpdateSubcode
from services.announcer.bgp.open import Open
from services.announcer.bgp.update import Update
from services.announcer.bgp.wire import decode_message

NEG = Negotiated(four_octet_as=True, families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
ORIGIN = "40 01 01 00"
AS_PATH = "40 02 06 02 01 0000fde9"
NEXT_HOP = "40 03 04 c0000201"
NLRI = "18 c63364"


def update(attributes: str, nlri: str = NLRI, withdrawn: str = "") -> bytes:
    a, w, n = (bytes.fromhex("".join(x.split())) for x in (attributes, withdrawn, nlri))
    body = len(w).to_bytes(2, "big") + w + len(a).to_bytes(2, "big") + a + n
    return MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


def decoded(data: bytes) -> Update:
    message = decode_message(data, NEG)
    assert isinstance(message, Update)
    return message


# (story, attributes) -> the UPDATE is kept, but its routes count as withdrawn
TREAT_AS_WITHDRAW = [
    ("ORIGIN of two octets", f"40 01 02 0000 {AS_PATH} {NEXT_HOP}"),
    ("AS_PATH segment overruns", f"{ORIGIN} 40 02 06 02 02 0000fde9 {NEXT_HOP}"),
    ("AS_PATH empty segment", f"{ORIGIN} 40 02 02 02 00 {NEXT_HOP}"),
    ("AS_PATH unknown segment type", f"{ORIGIN} 40 02 06 09 01 0000fde9 {NEXT_HOP}"),
    ("NEXT_HOP of 0.0.0.0", f"{ORIGIN} {AS_PATH} 40 03 04 00000000"),
    ("NEXT_HOP of five octets", f"{ORIGIN} {AS_PATH} 40 03 05 c000020101"),
    ("missing NEXT_HOP", f"{ORIGIN} {AS_PATH}"),
    ("missing ORIGIN", f"{AS_PATH} {NEXT_HOP}"),
    ("missing AS_PATH", f"{ORIGIN} {NEXT_HOP}"),
    ("ORIGIN flagged optional", f"c0 01 01 00 {AS_PATH} {NEXT_HOP}"),
    ("COMMUNITIES of 3 octets", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 08 03 000001"),
    ("LARGE_COMMUNITIES of 8 octets", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 20 08 0000000100000002"),
    ("LOCAL_PREF of 2 octets", f"{ORIGIN} {AS_PATH} {NEXT_HOP} 40 05 02 0064"),
    ("last attribute overruns the list", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 08 08 00000001"),
    ("list ends inside an attribute header", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 08"),
]


@pytest.mark.parametrize(("story", "attributes"), TREAT_AS_WITHDRAW, ids=[t[0] for t in TREAT_AS_WITHDRAW])
def test_treat_as_withdraw(story: str, attributes: str) -> None:
    message = decoded(update(attributes))
    assert message.treat_as_withdraw
    assert message.announced() == []
    assert (IPV4_UNICAST, message.nlri[0]) in message.withdrawals()
    assert message.errors


# (story, attributes) -> the bad attribute is dropped, the routes stand
ATTRIBUTE_DISCARD = [
    ("ATOMIC_AGGREGATE with a value", f"{ORIGIN} {AS_PATH} {NEXT_HOP} 40 06 01 00"),
    ("AGGREGATOR of 5 octets", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 07 05 0000000000"),
    ("AS4_PATH malformed", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 11 03 020100"),
    ("a repeated COMMUNITIES", f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 08 04 00000001 c0 08 04 00000002"),
]


@pytest.mark.parametrize(("story", "attributes"), ATTRIBUTE_DISCARD, ids=[t[0] for t in ATTRIBUTE_DISCARD])
def test_attribute_discard(story: str, attributes: str) -> None:
    message = decoded(update(attributes))
    assert not message.treat_as_withdraw
    assert message.announced() == [(IPV4_UNICAST, message.nlri[0])]
    assert message.errors


def test_unknown_optional_transitive_attribute_is_kept_with_partial() -> None:
    message = decoded(update(f"{ORIGIN} {AS_PATH} {NEXT_HOP} c0 63 02 abcd"))
    assert message.to_dict()["attributes"]["TYPE_99"] == {"flags": 0xE0, "value": "abcd"}


# (story, bytes) -> NOTIFICATION (code, subcode): the session resets
SESSION_RESET = [
    (
        "bad marker",
        bytes(16) + bytes.fromhex("0013 04"),
        (ErrorCode.MESSAGE_HEADER, HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED),
    ),
    (
        "keepalive with a body",
        MARKER + bytes.fromhex("0014 04 00"),
        (ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH),
    ),
    (
        "length beyond 4096",
        MARKER + bytes.fromhex("1001 02"),
        (ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH),
    ),
    ("unknown type 9", MARKER + bytes.fromhex("0013 09"), (ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_TYPE)),
    (
        "withdrawn length overruns",
        MARKER + bytes.fromhex("0017 02 0005 0000"),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST),
    ),
    (
        "attribute length overruns the message",
        MARKER + bytes.fromhex("0017 02 0000 0009"),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST),
    ),
    (
        "NLRI prefix length 33",
        update(f"{ORIGIN} {AS_PATH} {NEXT_HOP}", nlri="21 c6336400 00"),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.INVALID_NETWORK_FIELD),
    ),
    (
        "repeated MP_REACH_NLRI",
        update(
            f"{ORIGIN} {AS_PATH} 80 0e 0e 0001 01 04 c0000201 00 20 c0000205"
            " 80 0e 0e 0001 01 04 c0000201 00 20 c0000205",
            nlri="",
        ),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST),
    ),
    (
        "MP_REACH_NLRI with a 5-octet IPv6 next hop",
        update(f"{ORIGIN} {AS_PATH} 80 0e 0f 0002 01 05 0000000000 00 20 20010db8", nlri=""),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR),
    ),
    (
        "MP_UNREACH_NLRI with a bad prefix",
        update("80 0f 05 0002 01 81 00", nlri=""),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR),
    ),
    (
        "unrecognized well-known attribute",
        update(f"{ORIGIN} {AS_PATH} {NEXT_HOP} 40 63 00"),
        (ErrorCode.UPDATE_MESSAGE, UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE),
    ),
    (
        "OPEN version 3",
        MARKER + bytes.fromhex("001d 01 03 fde9 005a 0a000001 00"),
        (ErrorCode.OPEN_MESSAGE, OpenSubcode.UNSUPPORTED_VERSION_NUMBER),
    ),
    (
        "OPEN hold time 2",
        MARKER + bytes.fromhex("001d 01 04 fde9 0002 0a000001 00"),
        (ErrorCode.OPEN_MESSAGE, OpenSubcode.UNACCEPTABLE_HOLD_TIME),
    ),
    (
        "OPEN identifier 0.0.0.0",
        MARKER + bytes.fromhex("001d 01 04 fde9 005a 00000000 00"),
        (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_BGP_IDENTIFIER),
    ),
    (
        "OPEN with an authentication parameter (type 1)",
        MARKER + bytes.fromhex("0020 01 04 fde9 005a 0a000001 03 01 01 00"),
        (ErrorCode.OPEN_MESSAGE, OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER),
    ),
    (
        "OPEN capability overruns its parameter",
        MARKER + bytes.fromhex("0021 01 04 fde9 005a 0a000001 04 02 02 41 04"),
        (ErrorCode.OPEN_MESSAGE, OpenSubcode.UNSPECIFIC),
    ),
    (
        "NOTIFICATION without a code",
        MARKER + bytes.fromhex("0014 03 06"),
        (ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH),
    ),
    (
        "ROUTE-REFRESH of 3 octets",
        MARKER + bytes.fromhex("0016 05 000101"),
        (ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH),
    ),
    ("ROUTE-REFRESH of 5 octets", MARKER + bytes.fromhex("0018 05 0001000100"), (ErrorCode.ROUTE_REFRESH, 1)),
]


@pytest.mark.parametrize(("story", "data", "expected"), SESSION_RESET, ids=[t[0] for t in SESSION_RESET])
def test_session_reset(story: str, data: bytes, expected: tuple[int, int]) -> None:
    with pytest.raises(Notification) as caught:
        decode_message(data, NEG)
    assert (caught.value.code, caught.value.subcode) == expected


def test_bad_message_length_carries_the_length() -> None:
    with pytest.raises(Notification) as caught:
        decode_message(MARKER + bytes.fromhex("1001 02"), NEG)
    assert caught.value.data == bytes.fromhex("1001")


def test_unsupported_version_names_the_version_we_speak() -> None:
    with pytest.raises(Notification) as caught:
        decode_message(MARKER + bytes.fromhex("001d 01 03 fde9 005a 0a000001 00"), NEG)
    assert caught.value.data == bytes.fromhex("0004")


def test_extended_optional_parameters_rfc_9072() -> None:
    caps = bytes.fromhex("41 04 0000fde9")
    params = bytes.fromhex("02") + len(caps).to_bytes(2, "big") + caps
    body = bytes.fromhex("04 fde9 005a 0a000001 ff ff") + len(params).to_bytes(2, "big") + params
    data = MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x01" + body
    message = decode_message(data, NEG)
    assert isinstance(message, Open) and message.asn == 65001
