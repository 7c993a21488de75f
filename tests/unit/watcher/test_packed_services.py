"""The Services' projection keeps each observation packed and gives back exactly what was translated."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.watcher.observe.projection import LoadBalancerServices, ServiceProjection
from services.watcher.observe.translate import PackedObservation, service_observed


def _service(name: str, rv: str, kind: str = "LoadBalancer") -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}", "resourceVersion": rv,
                         "labels": {"app": name}, "annotations": {"metallb.io/address-pool": "lan"}},
            "spec": {"type": kind, "ports": [{"port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53,
                                                                               "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}}}


def _fail(obj: dict[str, Any], error: Exception) -> None:
    raise AssertionError(error)


def test_a_packed_service_is_given_back_as_translated_and_load_balancers_are_told() -> None:
    load_balancers = LoadBalancerServices()
    projection = ServiceProjection(service_observed, load_balancers=load_balancers, on_error=_fail)
    web, dns = _service("web", "5"), _service("dns", "6", kind="ClusterIP")
    projection.replace([web, dns], "6")
    for obj in (web, dns):
        expected = service_observed(obj)
        assert projection.desired(expected.subject) == expected
    assert load_balancers.names == {("default", "web")}
    assert load_balancers.seen == {("default", "web"), ("default", "dns")}
    changed = projection.apply("MODIFIED", _service("dns", "7"))
    assert projection.desired(changed[0]) == service_observed(_service("dns", "7"))
    assert load_balancers.names == {("default", "web"), ("default", "dns")}
    projection.apply("DELETED", _service("web", "8"))
    assert projection.desired(changed[0].replace("dns", "web")) is None
    assert load_balancers.names == {("default", "dns")}


def test_a_packed_observation_is_a_small_part_of_the_model() -> None:
    """Deflated against the first Service packed, a Service much like it takes a tenth of its JSON."""
    for name in ("web", "api"):
        observation = service_observed(_service(name, "5"))
        packed = PackedObservation.of(observation)
        assert packed.unpacked(observation.subject) == observation
    assert len(packed.payload) < 150 < len(observation.event.model_dump_json())


def test_any_observation_is_given_back_whole_whatever_it_holds() -> None:
    """A Service unlike the others (annotations of 100 kB), a message id of its own: nothing is lost."""
    large = _service("large", "5")
    large["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] = "10.0.0.7," * 12_000
    for observation in (service_observed(large), replace(service_observed(_service("db", "5")), msg_id="other-id")):
        packed = PackedObservation.of(observation)
        assert packed.unpacked(observation.subject) == observation


def test_a_list_folded_a_page_at_a_time_becomes_the_world_when_it_ends() -> None:
    load_balancers = LoadBalancerServices()
    projection = ServiceProjection(service_observed, load_balancers=load_balancers, on_error=_fail)
    projection.replace([_service("web", "5"), _service("old", "6")], "6")
    projection.begin_list("9")
    for page in ([_service("web", "7")], [_service("dns", "8", kind="ClusterIP"), _service("api", "9")]):
        for _ in projection.folding(page):
            pass
    # until the list is whole, the world before still answers (nothing else reads it meanwhile)
    assert sorted(projection.subjects()) == ["k8s.service.default.old", "k8s.service.default.web"]
    for _ in projection.ending_list():
        pass
    assert sorted(projection.subjects()) == [f"k8s.service.default.{name}" for name in ("api", "dns", "web")]
    assert projection.desired("k8s.service.default.web") == service_observed(_service("web", "7"))
    assert projection.desired("k8s.service.default.old") is None  # not listed: gone, to be tombstoned
    assert load_balancers.names == {("default", "web"), ("default", "api")}
    assert load_balancers.seen == {("default", "web"), ("default", "dns"), ("default", "api")}
