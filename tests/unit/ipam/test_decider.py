"""The ipam decider as a story: what a cluster operator sees happen, event by event."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.events import (
    AllocationFailed,
    AllocationFailureReason,
    ConfigObjectObserved,
    ConfigProblemReason,
    ConfigurationEvaluated,
    Event,
    IPAllocated,
    IPReleased,
    NamespaceObserved,
    ObjectDeleted,
    ObjectRef,
    PoolUsageReported,
    ReleaseReason,
)
from services.ipam.decider import Decider, Outgoing
from tests.builders import pool, service, service_deleted
from tests.builders_l2 import node


def deleted(name: str) -> ObjectDeleted:
    return service_deleted(name)


def of_type(outgoing: list[Outgoing], kind: type[Event]) -> list[Any]:
    return [o.event for o in outgoing if isinstance(o.event, kind)]


def active(*world: Event) -> Decider:
    decider = Decider()
    for event in world:
        decider.load_observation(event)
    decider.activate()
    return decider


def test_a_service_gets_the_lowest_free_address_and_the_pool_reports_usage() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    out = decider.observe(service("web")) + decider.report_usage()
    [allocated] = of_type(out, IPAllocated)
    assert allocated.ips == ("192.168.10.0",) and allocated.pool == "lan"
    [usage] = of_type(out, PoolUsageReported)
    assert (usage.ipv4.assigned, usage.ipv4.available) == (1, 255)
    assert [o.sequence for o in out] == list(range(out[0].sequence, out[0].sequence + len(out)))


def test_the_same_observation_again_decides_nothing() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    decider.observe(service("web"))
    assert decider.observe(service("web")) == []
    assert decider.observe(service("web", version="2", labels={"team": "a"})) == []


def test_deleting_a_service_releases_its_address_for_the_next_one() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    decider.observe(service("web"))
    [released] = of_type(decider.observe(deleted("web")), IPReleased)
    assert released.ips == ("192.168.10.0",) and released.reason is ReleaseReason.SERVICE_DELETED
    [allocated] = of_type(decider.observe(service("db")), IPAllocated)
    assert allocated.ips == ("192.168.10.0",)


def test_a_bad_annotation_fails_that_service_with_a_reason_and_no_other() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    out = decider.observe_many([
        (service("bad", annotations={"metallb.io/loadBalancerIPs": "not-an-ip"}), None),
        (service("good"), None),
    ])
    [failed] = of_type(out, AllocationFailed)
    assert failed.service.name == "bad" and failed.reason is AllocationFailureReason.INVALID_REQUESTED_IP
    assert "not-an-ip" in failed.message
    assert [a.service.name for a in of_type(out, IPAllocated)] == ["good"]
    assert decider.observe(service("bad", annotations={"metallb.io/loadBalancerIPs": "not-an-ip"})) == []


def test_an_invalid_configuration_is_reported_and_the_last_valid_one_stays() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    decider.observe(service("web"))
    out = decider.observe(pool("overlap", "192.168.10.128/25"))
    [evaluated] = of_type(out, ConfigurationEvaluated)
    assert not evaluated.valid
    assert any(p.reason == "OverlappingAddresses" for p in evaluated.problems)
    assert of_type(out, IPReleased) == []
    [allocated] = of_type(decider.observe(service("db")), IPAllocated)
    assert allocated.pool == "lan"


def test_a_pool_change_that_uncovers_an_address_reallocates_with_a_reason() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    decider.observe(service("web"))
    out = decider.observe(pool("lan", "192.168.20.0/24"))
    [released] = of_type(out, IPReleased)
    assert released.reason is ReleaseReason.NOT_COVERED_BY_POOL and released.ips == ("192.168.10.0",)
    [allocated] = of_type(out, IPAllocated)
    assert allocated.ips == ("192.168.20.0",)


def test_a_restart_re_adopts_every_allocation_before_any_new_one() -> None:
    first = active(pool("lan", "192.168.10.0/30"))
    history = first.activate() + first.observe(service("a")) + first.observe(service("b"))
    history += first.observe(deleted("a"))  # .0 is free again
    replica = Decider()
    for outgoing in history:
        replica.load_decision(outgoing.event, outgoing.sequence)
    for event in (pool("lan", "192.168.10.0/30"), service("b"), service("c")):
        replica.load_observation(event)
    out = replica.activate()
    assert [(a.service.name, a.ips) for a in of_type(out, IPAllocated)] == [("c", ("192.168.10.0",))]
    assert of_type(out, IPReleased) == []
    assert out[0].sequence == first.ledger.last_sequence + 1


def test_a_service_migrating_from_metallb_keeps_the_address_its_status_shows() -> None:
    decider = active(pool("lan", "192.168.10.0/24"))
    [allocated] = of_type(decider.observe(service("web", ingress_ips=("192.168.10.77",))), IPAllocated)
    assert allocated.ips == ("192.168.10.77",)


def test_a_status_written_is_decided_again_only_for_a_service_holding_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The status writer's write comes back as the Service showing its addresses: a Service holding addresses
    keeps them whatever its status shows, so it is not decided again; one holding none may keep what its
    status shows (coming from MetalLB), so it is."""
    decider = active(pool("lan", "192.168.10.0/24"))
    [allocated] = of_type(decider.observe(service("web")), IPAllocated)
    assert of_type(decider.observe(service("asks", annotations={"metallb.io/address-pool": "gone"})), AllocationFailed)
    reconciled: list[str] = []
    reconcile = decider._reconcile

    def reconciling(key: str) -> None:
        reconciled.append(key)
        reconcile(key)

    monkeypatch.setattr(decider, "_reconcile", reconciling)
    assert decider.observe(service("web", version="2", ingress_ips=allocated.ips)) == []
    assert reconciled == []
    assert decider.world.services["default/web"].ingress_ips == allocated.ips
    decider.observe(service("asks", version="2", annotations={"metallb.io/address-pool": "gone"},
                            ingress_ips=("192.168.10.77",)))
    assert reconciled == ["default/asks"]


def test_a_namespace_label_change_reaches_pool_selection() -> None:
    decider = active(
        pool("lan", "192.168.10.0/24"),
        pool("gold", "10.0.0.0/24", serviceAllocation={
            "priority": 1, "namespaceSelectors": [{"matchLabels": {"tier": "gold"}}]}),
    )
    [first] = of_type(decider.observe(service("web", namespace="shop")), IPAllocated)
    assert first.pool == "lan"
    decider.observe(deleted("web"))
    decider.observe(NamespaceObserved(ref=ObjectRef(name="shop", uid="ns", resource_version="2"),
                                      labels={"tier": "gold"}))
    [second] = of_type(decider.observe(service("api", namespace="shop")), IPAllocated)
    assert second.pool == "gold"


def test_deprecated_annotations_are_named_in_the_decision() -> None:
    decider = active(pool("lan", "192.168.10.0/24"), pool("dmz", "10.1.0.0/24", autoAssign=False))
    [allocated] = of_type(
        decider.observe(service("web", annotations={"metallb.universe.tf/address-pool": "dmz"})), IPAllocated
    )
    assert allocated.pool == "dmz"
    assert allocated.deprecated_annotations == ("metallb.universe.tf/address-pool",)
    assert "deprecated" in allocated.reason


def test_a_failed_service_that_leaves_metalbus_has_its_failure_withdrawn() -> None:
    """A failure is withdrawn by a release of nothing when the Service goes to another controller or is
    deleted, so no reader keeps speaking for a Service metalbus no longer serves."""
    decider = active()
    [failed] = of_type(decider.observe(service("web")), AllocationFailed)
    assert failed.reason is AllocationFailureReason.NO_POOLS
    [withdrawn] = of_type(decider.observe(service("web", version="2", load_balancer_class="other.io/lb")),
                          IPReleased)
    assert (withdrawn.ips, withdrawn.reason) == ((), ReleaseReason.CLASS_CHANGED)
    assert decider.observe(service("web", version="3", load_balancer_class="other.io/lb")) == []

    [failed] = of_type(decider.observe(service("db")), AllocationFailed)
    [withdrawn] = of_type(decider.observe(deleted("db")), IPReleased)
    assert (withdrawn.ips, withdrawn.reason) == ((), ReleaseReason.SERVICE_DELETED)
    assert decider.ledger.failures == {}


def bgp_advertisement(name: str, **spec: Any) -> ConfigObjectObserved:
    raw = {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
           "metadata": {"name": name, "namespace": "metallb-system", "uid": f"uid-{name}", "resourceVersion": "1"},
           "spec": spec}
    return ConfigObjectObserved(ref=ObjectRef(namespace="metallb-system", name=name, uid=f"uid-{name}",
                                              resource_version="1"),
                                kind="BGPAdvertisement", api_version="metallb.io/v1beta1", raw=raw)


def test_advertisements_naming_missing_pools_or_peers_do_not_hold_new_pools_back() -> None:
    decider = active(bgp_advertisement("bgp", ipAddressPools=["later"], peers=["nobody"]))
    out = decider.observe(pool("lan", "192.168.10.0/24"))
    [verdict] = of_type(out, ConfigurationEvaluated)
    assert verdict.valid and verdict.problems == ()
    [allocated] = of_type(decider.observe(service("web")), IPAllocated)
    assert allocated.pool == "lan"


def test_local_prefs_that_come_to_share_a_node_make_the_configuration_invalid() -> None:
    """Two advertisements of one pool with different localPrefs, on disjoint nodes: valid; a node that
    comes to be selected by both makes them refused (MetalLB's rule, over the nodes there are)."""
    decider = active(
        pool("lan", "192.168.10.0/24"), node("a", rack="1"), node("b", rack="2"),
        bgp_advertisement("one", localPref=100, nodeSelectors=[{"matchLabels": {"rack": "1"}}]),
        bgp_advertisement("two", localPref=200, nodeSelectors=[{"matchLabels": {"spine": "yes"}}]),
    )
    assert decider.ledger.configuration is not None and decider.ledger.configuration.valid
    [verdict] = of_type(decider.observe(node("a", version="2", rack="1", spine="yes")), ConfigurationEvaluated)
    assert not verdict.valid
    [problem] = verdict.problems
    assert (problem.name, problem.field, problem.reason) == ("two", "spec.localPref",
                                                             ConfigProblemReason.CONFLICTING_LOCAL_PREF)
    [verdict] = of_type(decider.observe(node("a", version="3", rack="1")), ConfigurationEvaluated)
    assert verdict.valid


def test_the_first_node_makes_two_local_prefs_for_every_node_meet() -> None:
    """MetalLB judges over the nodes there are: with none, two advertisements for every node never meet."""
    decider = active(pool("lan", "192.168.10.0/24"), bgp_advertisement("one", localPref=100),
                     bgp_advertisement("two", localPref=200))
    assert decider.ledger.configuration is not None and decider.ledger.configuration.valid
    [verdict] = of_type(decider.observe(node("a")), ConfigurationEvaluated)
    assert not verdict.valid and verdict.problems[0].reason is ConfigProblemReason.CONFLICTING_LOCAL_PREF
    assert of_type(decider.observe(node("b")), ConfigurationEvaluated) == []  # the same verdict: nothing anew


def test_a_failure_whose_service_went_while_no_replica_was_active_is_withdrawn_on_taking_over() -> None:
    first = active()
    recorded = first.observe(service("web")) + first.observe(service("db"))
    assert len(of_type(recorded, AllocationFailed)) == 2  # no pool
    successor = Decider()
    for out in recorded:
        successor.load_decision(out.event, out.sequence)
    successor.load_observation(service("db"))  # web was deleted while no replica was active
    [withdrawn] = of_type(successor.activate(), IPReleased)
    assert (withdrawn.service.name, withdrawn.ips, withdrawn.reason) == ("web", (), ReleaseReason.SERVICE_DELETED)
    assert set(successor.ledger.failures) == {"default/db"}
