"""Never decide on an incomplete world: what ipam does while the watcher's lists are not all in ``K8S``.

A K8S stream purged, lost with every NATS store or restored from an old backup holds less than the cluster.
Deciding on it would release the addresses of every Service it lacks, record an empty configuration as the
one in force, and hand a Service an address another one's status still shows."""

from __future__ import annotations

from typing import Any

from schemas.events import (
    DECISION_KINDS,
    ConfigurationEvaluated,
    Event,
    IPAllocated,
    IPReleased,
    KindListed,
    ObjectKind,
)
from services.ipam.decider import Decider, Outgoing
from tests.builders import pool, service, service_deleted


def of_type(outgoing: list[Outgoing], kind: type[Event]) -> list[Any]:
    return [o.event for o in outgoing if isinstance(o.event, kind)]


def listed(*kinds: ObjectKind, complete: bool = True) -> list[KindListed]:
    return [KindListed(kind=kind, complete=complete, resource_version="7") for kind in kinds or DECISION_KINDS]


def decided(history: list[Outgoing]) -> Decider:
    """A replica that replayed ``history`` (the IPAM stream) and nothing of K8S yet."""
    decider = Decider()
    for out in history:
        decider.load_decision(out.event, out.sequence)
    return decider


def cluster() -> tuple[Decider, list[Outgoing]]:
    """Three Services decided on a complete world; the decisions made."""
    decider = Decider()
    for event in (*listed(), pool("lan", "10.1.0.0/24"), service("a"), service("b"), service("c")):
        decider.load_observation(event)
    history = decider.activate()
    assert len(of_type(history, IPAllocated)) == 3
    return decider, history


def test_taking_over_a_purged_world_releases_nothing_and_records_no_configuration() -> None:
    _, history = cluster()
    after_purge = decided(history)
    assert after_purge.activate() == []  # K8S holds nothing: not "every Service was deleted"
    assert after_purge.waiting_for is not None and "stream was lost" in after_purge.waiting_for
    # the watcher lists again: marks first, then the objects, then marks complete
    out = []
    for event in (*listed(complete=False), pool("lan", "10.1.0.0/24"), service("c"), service("a")):
        out += after_purge.observe(event, defer_to_batch=True)
    out += after_purge.report_usage()
    assert out == [] and "service" in (after_purge.waiting_for or "")
    out = after_purge.observe(service("b"))
    for mark in listed():
        out += after_purge.observe(mark)
    assert after_purge.waiting_for is None
    assert of_type(out, IPReleased) == [] and of_type(out, IPAllocated) == []  # every address kept
    assert of_type(out, ConfigurationEvaluated) == []  # the configuration in force is the observed one
    assert {k: a.ips for k, a in after_purge.ledger.allocations.items()} == {
        "default/a": ("10.1.0.0",), "default/b": ("10.1.0.1",), "default/c": ("10.1.0.2",)}


def test_a_service_deleted_while_the_stream_was_lost_is_released_once_the_lists_are_complete() -> None:
    _, history = cluster()
    after_purge = decided(history)
    for event in (*listed(complete=False), pool("lan", "10.1.0.0/24"), service("a"), service("c")):
        after_purge.load_observation(event)
    after_purge.adopt()
    assert after_purge.start_placing(frozenset()) == []
    out = [o for mark in listed() for o in after_purge.observe(mark)]
    [released] = of_type(out, IPReleased)
    assert released.service.name == "b" and released.ips == ("10.1.0.1",)


def test_an_active_replica_decides_nothing_from_a_list_begun_until_it_is_complete() -> None:
    decider, _ = cluster()
    assert decider.observe(KindListed(kind=ObjectKind.SERVICE, complete=False)) == []
    assert decider.observe(service("d")) == [] and decider.observe(service_deleted("a")) == []
    assert decider.set_live_nodes(frozenset({"node-a"})) == [] and decider.report_usage() == []
    out = decider.observe(KindListed(kind=ObjectKind.SERVICE, complete=True))
    assert [a.service.name for a in of_type(out, IPReleased)] == ["a"]
    assert [(a.service.name, a.ips) for a in of_type(out, IPAllocated)] == [("d", ("10.1.0.0",))]


def test_after_every_decision_is_lost_services_keep_the_addresses_their_status_shows() -> None:
    """A new Service, listed before the ones showing addresses, takes none of them."""
    decider = Decider()  # the IPAM stream is empty: lost with the NATS store
    for event in (*listed(complete=False), pool("lan", "10.1.0.0/24"), service("aaa-new"),
                  service("b", ingress_ips=("10.1.0.0",)), service("c", ingress_ips=("10.1.0.1",))):
        decider.load_observation(event)
    decider.adopt()
    assert decider.start_placing(frozenset()) == []
    out = [o for mark in listed() for o in decider.observe(mark)]
    assert {a.service.name: a.ips for a in of_type(out, IPAllocated)} == {
        "b": ("10.1.0.0",), "c": ("10.1.0.1",), "aaa-new": ("10.1.0.2",)}


def test_a_stream_without_marks_is_decided_on_as_its_release_did() -> None:
    """A K8S written by a watcher that predates list marks (v0.1.0) is decided on at once, as that release did."""
    decider = Decider()
    for event in (pool("lan", "10.1.0.0/24"), service("a")):
        decider.load_observation(event)
    out = decider.activate()
    assert decider.waiting_for is None and len(of_type(out, IPAllocated)) == 1


def test_a_routine_relist_complete_again_changes_nothing() -> None:
    decider, _ = cluster()
    assert [o for mark in listed() for o in decider.observe(mark)] == []
    assert decider.waiting_for is None
