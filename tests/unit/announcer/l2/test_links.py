"""rtnetlink link messages: parsed from crafted bytes, hostile bytes never raise, a real dump works."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from services.announcer.l2.interfaces import InterfaceFacts
from services.announcer.l2.links import (
    IFF_LOWER_UP,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    NLMSG_DONE,
    RTM_DELLINK,
    RTM_NEWLINK,
    dump_links,
    parse_link_messages,
)


def attr(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + bytes(-len(data) % 4)


def message(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 1, 0) + body


def link(kind: int, *, index: int, name: str, flags: int, mac: bytes, extra: bytes = b"") -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    body += attr(IFLA_IFNAME, name.encode() + b"\x00") + attr(IFLA_ADDRESS, mac) + extra
    return message(kind, body)


MAC = bytes.fromhex("020000000001")


def test_parse_new_and_deleted_links_then_done() -> None:
    data = (
        link(RTM_NEWLINK, index=2, name="eth0", flags=IFF_UP | IFF_LOWER_UP, mac=MAC)
        + link(
            RTM_NEWLINK,
            index=3,
            name="veth0",
            flags=IFF_UP,
            mac=MAC,
            extra=attr(IFLA_MASTER, struct.pack("=I", 7)) + attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"veth\x00")),
        )
        + link(RTM_DELLINK, index=4, name="eth9", flags=0, mac=MAC)
        + message(NLMSG_DONE, b"\x00" * 4)
    )
    links, done = parse_link_messages(data)
    assert done
    assert [(m.facts, m.deleted) for m in links] == [
        (InterfaceFacts(name="eth0", index=2, mac=MAC, up=True, carrier=True), False),
        (InterfaceFacts(name="veth0", index=3, mac=MAC, up=True, carrier=False, kind="veth", master=7), False),
        (InterfaceFacts(name="eth9", index=4, mac=MAC, up=False, carrier=False), True),
    ]


@given(st.binary(max_size=300))
def test_fuzz_never_raises(data: bytes) -> None:
    links, _done = parse_link_messages(data)
    assert isinstance(links, list)


@given(st.lists(st.tuples(st.integers(0, 90), st.integers(0, 255)), max_size=8), st.integers(0, 40))
def test_fuzz_mutated(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(link(RTM_NEWLINK, index=2, name="eth0", flags=IFF_UP, mac=MAC))
    for offset, value in flips:
        if offset < len(data):
            data[offset] = value
    parse_link_messages(bytes(data[: len(data) - cut]))


def test_dump_lists_loopback() -> None:
    links = dump_links()
    assert any(f.name == "lo" and f.index == 1 and f.up for f in links)
