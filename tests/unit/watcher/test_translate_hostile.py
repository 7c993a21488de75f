"""Translation of raw Kubernetes objects is total: hostile values skip one object with a reason, never the rest.

Every projection the watcher runs is fed objects whose fields hold the wrong types, nulls, huge strings, control
characters and any unicode; each object is either translated into an event the bus can carry, or reported to
``on_error`` and skipped, and an ordinary object next to it is always published.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import ObjectKind
from schemas.events.codec import encode, read_envelope, wrap
from services.watcher.observe.projection import (
    EndpointsProjection,
    ObjectProjection,
    PeerPasswordProjection,
    PeerProjection,
    Projection,
    SecretProjection,
    SecretReferences,
)
from services.watcher.observe.translate import (
    RawObject,
    config_observed,
    kube_proxy_observed,
    kube_proxy_settings,
    namespace_observed,
    node_observed,
    secret_observed,
    service_observed,
)

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
huge = st.sampled_from(["x" * 100_000, "é" * 50_000, "\x00\r\n" * 1000, "\ud800", "a\udfffb"])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text | huge
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                      max_leaves=12)
#: Field names the translations read, so that hostile values land where they are looked at.
FIELDS = ("metadata", "spec", "status", "data", "kind", "apiVersion", "endpoints", "type", "name", "namespace", "uid",
          "resourceVersion", "labels", "annotations", "ports", "port", "protocol", "ipFamilies", "ipFamilyPolicy",
          "clusterIPs", "loadBalancer", "ingress", "ip", "conditions", "addresses", "address", "nodeName", "ready",
          "serving", "selector", "externalTrafficPolicy", "passwordSecret", "config.conf", "kubernetes.io/service-name",
          "metallb.io/loadBalancerIPs", "loadBalancerIP", "loadBalancerClass", "managedFields", "password",
          "metalbusInlinePassword", "kubectl.kubernetes.io/last-applied-configuration")
keyed = st.recursive(
    values,
    lambda inner: st.dictionaries(st.sampled_from(FIELDS) | text, inner, max_size=6),
    max_leaves=30,
)


def _identified(fields: Any) -> RawObject:
    """An object with a usable identity around hostile fields (so translation gets past the identity)."""
    obj: RawObject = dict(fields) if isinstance(fields, dict) else {"spec": fields}
    found = obj.get("metadata")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    obj["metadata"] = {"name": "n", "namespace": "ns", "uid": "u", "resourceVersion": "1", **meta}
    obj.setdefault("kind", "IPAddressPool")
    return obj


def _ordinary(name: str) -> RawObject:
    return {"kind": "IPAddressPool", "apiVersion": "metallb.io/v1beta1",
            "metadata": {"name": name, "namespace": "metallb-system", "uid": f"uid-{name}", "resourceVersion": "7",
                         "labels": {"kubernetes.io/service-name": name}},
            "data": {"config.conf": "mode: ipvs"}, "spec": {"ports": [{"port": 80}], "password": "pw"},
            "endpoints": [{"nodeName": "node-1"}]}


def _projections(errors: list[Exception]) -> list[Projection]:
    def record(obj: RawObject, error: Exception) -> None:
        errors.append(error)

    references, wanted = SecretReferences(), SecretReferences()  # the peers' own, and a fixed set for secrets
    wanted.update(frozenset({"n", "ordinary", "other"}))
    simple: list[tuple[ObjectKind, Callable[[RawObject], Any]]] = [
        (ObjectKind.SERVICE, service_observed), (ObjectKind.NODE, node_observed),
        (ObjectKind.NAMESPACE, namespace_observed), (ObjectKind.KUBE_PROXY, kube_proxy_observed),
        (ObjectKind.IP_ADDRESS_POOL, config_observed),
    ]
    return [
        *(ObjectProjection(kind, translate, on_error=record) for kind, translate in simple),
        EndpointsProjection(on_error=record),
        PeerProjection(config_observed, namespace="metallb-system", references=references, on_error=record),
        PeerPasswordProjection(),
        SecretProjection(secret_observed, references=wanted, on_error=record),
    ]


def _publishable(projection: Projection) -> None:
    for subject in projection.subjects():
        observation = projection.desired(subject)
        assert observation is not None
        body = encode(wrap(observation.event, producer="watcher/test"))
        assert read_envelope(body) == read_envelope(body)  # the bus can carry it and read it back


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150, deadline=None)
@given(st.one_of(keyed, keyed.map(_identified)))
def test_a_hostile_object_is_translated_or_skipped_and_the_ordinary_one_goes_on(hostile: Any) -> None:
    errors: list[Exception] = []
    for projection in _projections(errors):
        ordinary = _ordinary("ordinary")
        if not isinstance(hostile, dict):
            continue  # a list holds objects; the API and the YAML reader hand over mappings only
        projection.replace([hostile, ordinary], "1")
        projection.apply("MODIFIED", hostile)
        projection.apply("DELETED", hostile)
        projection.apply("ADDED", _ordinary("other"))
        assert projection.subjects(), f"{type(projection).__name__} lost the ordinary objects"
        _publishable(projection)


@pytest.mark.parametrize(
    "text_", ["[" * 10_000 + "]" * 10_000, "a: &a [*a]", "{[1]: 2}", "\x00", "mode: [\ud800]", "- " * 5000],
)
def test_unreadable_kube_proxy_configuration_reads_as_unset(text_: str) -> None:
    assert kube_proxy_settings(text_) in {("", False)}
