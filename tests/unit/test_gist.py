"""The compact read of an L2 placement agrees with the full reader on what it reads, and leaves every body
it does not read plainly (another version, type or shape, not JSON) to the full reader."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import L2PlacementCleared, L2PlacementDecided, ServiceId
from schemas.events.codec import encode, read_envelope, wrap
from schemas.events.gist import PlacementGist, read_placement_gist
from schemas.refusal import Refused


def body(event: L2PlacementDecided | L2PlacementCleared) -> bytes:
    return encode(wrap(event, producer="ipam/test"))


def test_a_decided_placement_gives_its_ip_and_node() -> None:
    decided = L2PlacementDecided(ip="10.0.0.7", node="node-3", services=(ServiceId(namespace="a", name="b"),),
                                 interfaces=("eth0",))  # fmt: skip
    assert read_placement_gist(body(decided)) == PlacementGist(ip="10.0.0.7", node="node-3")


def test_a_cleared_placement_gives_no_node() -> None:
    assert read_placement_gist(body(L2PlacementCleared(ip="fd00::7"))) == PlacementGist(ip="fd00::7", node=None)


def test_whatever_it_does_not_read_plainly_goes_to_the_full_reader() -> None:
    decided = json.loads(body(L2PlacementDecided(ip="10.0.0.7", node="n", services=())))
    other_version = {**decided, "schema_version": 99}  # newer: the full reader refuses it as such
    no_node = {**decided, "event": {k: v for k, v in decided["event"].items() if k != "node"}}
    other_type = {**decided, "event": {"type": "IPReleased", "ip": "10.0.0.7"}}
    for data in (b"", b"not json", b"[]", json.dumps(other_version).encode(), json.dumps(no_node).encode(),
                 json.dumps(other_type).encode(), b'{"schema_version": 1, "event": {"type": 1}}'):  # fmt: skip
        assert read_placement_gist(data) is None


@given(st.binary(max_size=300))
def test_total_on_any_bytes(data: bytes) -> None:
    read_placement_gist(data)  # never raises


@given(st.sampled_from(["10.0.0.1", "fd00::1", "300.1.1.1", ""]), st.text(max_size=20))
def test_agrees_with_the_full_reader(ip: str, node: str) -> None:
    data = body(L2PlacementDecided(ip=ip, node=node, services=()))
    envelope = read_envelope(data)
    assert not isinstance(envelope, Refused) and isinstance(envelope.event, L2PlacementDecided)
    assert read_placement_gist(data) == PlacementGist(ip=envelope.event.ip, node=envelope.event.node)
