"""What ipam keeps is compacted: repeated values become one shared object, and nothing a reader sees changes."""

from __future__ import annotations

import pytest

from schemas.events import AnnouncementMode, AnnouncementReported, ServiceId, ServiceObserved
from schemas.events.codec import decode, encode, wrap
from services.common.compact import Compactor, add_member, discard_member
from tests.builders import service
from tests.builders_l2 import endpoints


def decoded(event: ServiceObserved) -> ServiceObserved:
    """A fresh copy, as the bus hands it over (no object shared with any other)."""
    copy = decode(encode(wrap(event, producer="test"))).event
    assert isinstance(copy, ServiceObserved)
    return copy


def test_two_services_share_their_repeated_values_and_read_the_same() -> None:
    compact = Compactor()
    web, db = (decoded(service(name, namespace="shop", selector={"app": name})) for name in ("web", "db"))
    before = (web.model_dump(exclude_unset=True), db.model_dump(exclude_unset=True))

    assert compact(web) is web and compact(db) is db
    assert web.ports is db.ports  # equal tuples of equal ports: one object
    assert web.ref.namespace is db.ref.namespace
    assert web.__pydantic_fields_set__ is db.__pydantic_fields_set__
    assert (web.model_dump(exclude_unset=True), db.model_dump(exclude_unset=True)) == before
    assert web == decoded(service("web", namespace="shop", selector={"app": "web"}))


def test_a_newer_value_of_a_model_shares_what_did_not_change_with_the_one_before() -> None:
    compact = Compactor()
    before = compact(decoded(service("web", selector={"app": "web"}, labels={"tier": "front"})))
    after = decoded(service("web", version="2", selector={"app": "web"}, labels={"tier": "back"},
                            ingress_ips=("10.0.0.1",)))
    expected = after.model_dump(exclude_unset=True)
    assert compact(after, like=before) is after
    assert after.selector is before.selector  # equal: the one before's, not a copy
    assert after.labels == {"tier": "back"} and after.labels is not before.labels
    assert after.model_dump(exclude_unset=True) == expected and after.ingress_ips == ("10.0.0.1",)


def test_empty_dictionaries_are_one_that_nobody_can_change() -> None:
    compact = Compactor()
    web, db = (compact(decoded(service(name, namespace="shop"))) for name in ("web", "db"))
    assert web.annotations is db.annotations == {} and web.labels is web.annotations
    assert web.model_dump_json() == decoded(service("web", namespace="shop")).model_dump_json()
    with pytest.raises(TypeError):
        web.labels["app"] = "web"
    assert db.labels == {}, "a change to one model's empty dictionary reached another"


def test_endpoint_entries_on_the_same_node_are_one_object() -> None:
    compact = Compactor()
    first = compact(endpoints("web", "node-a", "node-b"))
    second = compact(endpoints("db", "node-b", "node-c"))
    assert first.nodes[1] is second.nodes[0]


def test_values_that_never_repeat_do_not_grow_the_table_past_its_limit() -> None:
    compact = Compactor(limit=10)
    kept = [compact(decoded(service(f"svc-{i}", cluster_ips=(f"10.96.0.{i}",)))) for i in range(50)]
    assert len(compact._values) <= 10
    assert [s.cluster_ips for s in kept] == [(f"10.96.0.{i}",) for i in range(50)]


def test_a_compacted_model_reads_writes_compares_and_hashes_as_before() -> None:
    """Its fields are held in a dictionary whose keys are shared with the other models of its class (less
    memory): what it encodes to, equals and hashes to does not change."""
    compact = Compactor()
    original = decoded(service("web", namespace="shop", selector={"app": "web"}, labels={"tier": "front"}))
    written = encode(wrap(original, producer="test"))
    kept = compact(decoded(service("web", namespace="shop", selector={"app": "web"}, labels={"tier": "front"})))
    assert kept == original and original == kept
    assert kept.ref == original.ref and hash(kept.ref) == hash(original.ref)
    assert kept.labels == {"tier": "front"} and kept.ref.name == "web"
    assert decode(encode(wrap(kept, producer="test"))).event == decode(written).event
    assert kept.model_copy(update={"load_balancer_ip": "192.0.2.1"}).load_balancer_ip == "192.0.2.1"


def test_announcement_reports_of_two_nodes_share_their_repeated_values_and_keep_their_enums() -> None:
    """The watcher keeps a report per node per IP: their enum values stay members, their field sets are one."""
    compact = Compactor()
    shop = ServiceId(namespace="shop", name="web")
    reports = [compact(AnnouncementReported(node=node, ip="192.0.2.10", mode=AnnouncementMode.BGP,
                                            announcing=True, services=(shop,), peers=("router",)))
               for node in ("node-a", "node-b")]
    assert all(report.mode is AnnouncementMode.BGP for report in reports)
    assert reports[0].__pydantic_fields_set__ is reports[1].__pydantic_fields_set__
    assert reports[0].peers is reports[1].peers
    assert reports[1] == AnnouncementReported(node="node-b", ip="192.0.2.10", mode=AnnouncementMode.BGP,
                                              announcing=True, services=(shop,), peers=("router",))


def test_models_first_seen_after_the_table_filled_up_still_share_their_field_sets_and_entries() -> None:
    """Values that never repeat (each Service's addresses) fill the table first: the models compacted after
    them (endpoints, decided later in a cold start) still share their sets of given fields and their entries."""
    compact = Compactor(limit=10)
    for i in range(50):
        compact(decoded(service(f"svc-{i}", cluster_ips=(f"10.96.0.{i}",))))
    first = compact(endpoints("web", "node-a", "node-b"))
    second = compact(endpoints("db", "node-b", "node-c"))
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert first.nodes[0].__pydantic_fields_set__ is second.nodes[1].__pydantic_fields_set__
    assert first.nodes[1] is second.nodes[0]


def test_an_index_of_small_sets_kept_as_tuples_adds_once_and_forgets_a_key_with_its_last_member() -> None:
    holders: dict[str, tuple[str, ...]] = {}
    add_member(holders, "192.0.2.1", "shop/web")
    add_member(holders, "192.0.2.1", "shop/web")
    add_member(holders, "192.0.2.1", "shop/api")
    assert holders == {"192.0.2.1": ("shop/web", "shop/api")}
    discard_member(holders, "192.0.2.1", "shop/web")
    discard_member(holders, "192.0.2.9", "shop/web")  # nothing there: nothing happens
    assert holders == {"192.0.2.1": ("shop/api",)}
    discard_member(holders, "192.0.2.1", "shop/api")
    assert holders == {}
