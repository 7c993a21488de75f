"""The BGP decision contract between ipam and the announcers: round trip, refusals, subjects."""

from __future__ import annotations

import json

import pytest

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPRoute,
    BGPWithdrawReason,
    ServiceId,
)
from schemas.events.codec import InvalidEvent, decode, encode, wrap
from schemas.metallb.common import LabelSelector, LabelSelectorRequirement, SelectorOperator
from services.common.subjects import IPAM_BGP_DECISIONS, StreamName, bgp_decision_subject, decode_token, stream_spec

ROUTE = BGPRoute(
    advertisement="edge",
    prefix="10.1.0.0/24",
    communities=(65000 << 16 | 100, 65000 << 16 | 200),
    large_communities=((65000, 1, 2),),
    local_pref=150,
    peers=("tor-a", "tor-b"),
    node_selectors=(
        LabelSelector(
            match_labels={"rack": "r1"},
            match_expressions=(LabelSelectorRequirement(key="zone", operator=SelectorOperator.IN, values=("a",)),),
        ),
    ),
)


@pytest.mark.parametrize(
    "event",
    [
        BGPAdvertisementDecided(
            ip="10.1.0.7",
            services=(ServiceId(namespace="default", name="web", uid="u-1"),),
            routes=(ROUTE, BGPRoute(advertisement="plain", prefix="10.1.0.7/32", communities=(), large_communities=())),
            nodes=None,
        ),
        BGPAdvertisementDecided(
            ip="2001:db8::7", services=(ServiceId(namespace="a", name="b"),), routes=(ROUTE,), nodes=("n1", "n2")
        ),
        BGPAdvertisementDecided(ip="10.1.0.8", services=(), routes=(ROUTE,), nodes=()),
        BGPAdvertisementWithdrawn(ip="10.1.0.7", reason=BGPWithdrawReason.NO_SERVING_ENDPOINTS),
        BGPAdvertisementWithdrawn(ip="10.1.0.7", reason=BGPWithdrawReason.RELEASED),
    ],
)
def test_bgp_decisions_round_trip_through_the_envelope(event: BGPAdvertisementDecided) -> None:
    envelope = wrap(event, producer="ipam/i-1")
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert decoded.event == event


def test_cluster_and_local_policies_stay_apart_on_the_wire() -> None:
    """None (every usable node) and () (no node) must not collapse into one another."""
    cluster = BGPAdvertisementDecided(ip="10.1.0.7", services=(), routes=(ROUTE,), nodes=None)
    local = cluster.model_copy(update={"nodes": ()})
    assert decode(encode(wrap(cluster, producer="p"))).event.nodes is None  # type: ignore[union-attr]
    assert decode(encode(wrap(local, producer="p"))).event.nodes == ()  # type: ignore[union-attr]


def test_node_selectors_keep_metallb_wire_names() -> None:
    body = encode(wrap(BGPAdvertisementDecided(ip="10.1.0.7", services=(), routes=(ROUTE,), nodes=None), producer="p"))
    assert b'"matchLabels"' in body and b'"matchExpressions"' in body


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "BGPAdvertisementDecided", "ip": "10.1.0.7", "services": [], "routes": [], "nodes": None},
         "at least 1"),
        ({"type": "BGPAdvertisementWithdrawn", "ip": "10.1.0.7", "reason": "Gone"}, "reason"),
        ({"type": "BGPAdvertisementWithdrawn", "ip": "10.1.0.7", "reason": "Released", "extra": 1},
         "Extra inputs"),
    ],
)
def test_bad_bgp_decisions_are_refused(payload: dict[str, object], reason: str) -> None:
    body = json.dumps({"schema_version": 1, "event_id": "e", "time": "2026-01-01T00:00:00Z", "producer": "p",
                       "event": payload}).encode()
    with pytest.raises(InvalidEvent, match=reason):
        decode(body)


def test_bgp_decision_subjects_are_per_ip_inside_the_ipam_stream() -> None:
    v4, v6 = bgp_decision_subject("10.1.0.7"), bgp_decision_subject("2001:db8::7")
    assert v4.startswith("ipam.bgp.") and v4.count(".") == 2
    assert decode_token(v4.split(".", 2)[2]) == "10.1.0.7"
    assert decode_token(v6.split(".", 2)[2]) == "2001:db8::7"
    assert IPAM_BGP_DECISIONS == "ipam.bgp.>"
    assert "ipam.>" in stream_spec(StreamName.IPAM).subjects
