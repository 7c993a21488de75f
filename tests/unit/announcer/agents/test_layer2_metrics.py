"""The L2 metrics keep MetalLB's exact names (no `_total` suffix) and are read from an immutable snapshot."""

from __future__ import annotations

from ipaddress import ip_address

from prometheus_client import CollectorRegistry, generate_latest

from schemas.events import ServiceId
from services.announcer.agents.layer2_metrics import L2Collector, L2Snapshot
from services.announcer.agents.layer2_ownership import Answering
from services.announcer.l2.responder import L2Stats

VIP = ip_address("192.0.2.10")


def test_metallb_names_and_labels() -> None:
    stats = L2Stats()
    stats.requests_received[VIP] += 3
    stats.responses_sent[VIP] += 3
    stats.gratuitous_sent[VIP] += 10
    stats.conflicts[VIP] += 1
    registry = CollectorRegistry()
    collector = L2Collector()
    registry.register(collector)
    answering = {VIP: Answering(interfaces=("eth0",), epoch=7, services=(ServiceId(namespace="ns", name="web"),))}
    collector.update(L2Snapshot.of(node="n1", stats=stats, answering=answering, yields={}, partitioned=True))
    lines = set(generate_latest(registry).decode().splitlines())
    assert {
        'metallb_layer2_requests_received{ip="192.0.2.10"} 3.0',
        'metallb_layer2_responses_sent{ip="192.0.2.10"} 3.0',
        'metallb_layer2_gratuitous_sent{ip="192.0.2.10"} 10.0',
        'metalbus_layer2_conflicts{ip="192.0.2.10"} 1.0',
        "metalbus_layer2_partitioned 1.0",
    } <= lines
    # The live counters move on; what is served changes only with the next snapshot.
    stats.responses_sent[VIP] += 1
    assert 'metallb_layer2_responses_sent{ip="192.0.2.10"} 3.0' in generate_latest(registry).decode()
