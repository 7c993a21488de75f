"""Another node's placement is told from its bytes alone, in agreement with the full reader; every body it
cannot tell plainly (this node's, another version, type or shape, not JSON) is left to the full reader."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import L2PlacementCleared, L2PlacementDecided, ServiceId
from schemas.events.codec import encode, read_envelope, wrap
from schemas.events.gist import NodeMark, placed_elsewhere
from schemas.refusal import Refused

ME = NodeMark("node-1")


def body(event: L2PlacementDecided | L2PlacementCleared) -> bytes:
    return encode(wrap(event, producer="ipam/test"))


def test_another_nodes_placement_is_elsewhere_this_nodes_is_read() -> None:
    def on(node: str) -> bytes:
        return body(L2PlacementDecided(ip="10.0.0.7", node=node, services=(ServiceId(namespace="a", name="b"),),
                                       interfaces=("eth0",)))  # fmt: skip

    assert placed_elsewhere(on("node-3"), ME)
    assert placed_elsewhere(on("node-10"), ME)  # a name this node's is the start of
    assert placed_elsewhere(on("node"), ME)
    assert not placed_elsewhere(on("node-1"), ME)


def test_a_cleared_placement_is_elsewhere() -> None:
    assert placed_elsewhere(body(L2PlacementCleared(ip="fd00::7")), ME)


def test_whatever_it_cannot_tell_plainly_goes_to_the_full_reader() -> None:
    decided = json.loads(body(L2PlacementDecided(ip="10.0.0.7", node="n", services=())))
    other_version = {**decided, "schema_version": 99}  # newer: the full reader refuses it as such
    no_node = {**decided, "event": {k: v for k, v in decided["event"].items() if k != "node"}}
    other_type = {**decided, "event": {"type": "IPReleased", "ip": "10.0.0.7"}}
    spaced = json.dumps(decided)  # another layout than the encoder's
    shapes = (other_version, no_node, other_type)
    for data in (b"", b"not json", b"[]", *(json.dumps(shape).encode() for shape in shapes), spaced.encode(),
                 b'{"schema_version": 1, "event": {"type": 1}}'):  # fmt: skip
        assert not placed_elsewhere(data, ME)


@given(st.binary(max_size=300))
def test_total_on_any_bytes(data: bytes) -> None:
    placed_elsewhere(data, ME)  # never raises


@given(st.sampled_from(["10.0.0.1", "fd00::1", "300.1.1.1", ""]), st.text(max_size=20), st.text(max_size=20),
       st.text(max_size=20))  # fmt: skip
def test_agrees_with_the_full_reader(ip: str, node: str, me: str, service: str) -> None:
    data = body(L2PlacementDecided(ip=ip, node=node, services=(ServiceId(namespace=service, name=node),),
                                   interfaces=(me,), reason=f'"node":"{node}"'))  # fmt: skip
    envelope = read_envelope(data)
    assert not isinstance(envelope, Refused) and isinstance(envelope.event, L2PlacementDecided)
    assert placed_elsewhere(data, NodeMark(me)) is (envelope.event.node != me)
