"""Observed events for L2 placement: nodes, endpoints, L2Advertisements — with sensible defaults."""

from __future__ import annotations

from typing import Any

from schemas.events import ConfigObjectObserved, EndpointsObserved, NodeEndpoints, NodeObserved, ObjectRef
from tests.builders import CONFIG_NAMESPACE


def node(name: str, *, unavailable: bool = False, version: str = "1", **labels: str) -> NodeObserved:
    return NodeObserved(
        ref=ObjectRef(name=name, uid=f"uid-{name}", resource_version=version),
        labels={"kubernetes.io/hostname": name, **labels},
        network_unavailable=unavailable,
    )


def endpoints(name: str, *nodes: str, namespace: str = "default") -> EndpointsObserved:
    return EndpointsObserved(
        namespace=namespace, service=name, nodes=tuple(NodeEndpoints(node=n, ready=1, serving=1) for n in nodes)
    )


def l2(name: str = "all", version: str = "1", **spec: Any) -> ConfigObjectObserved:
    """An L2Advertisement (``spec`` in MetalLB's camelCase)."""
    raw = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name, "namespace": CONFIG_NAMESPACE, "uid": f"uid-l2-{name}", "resourceVersion": version},
        "spec": spec,
    }
    return ConfigObjectObserved(
        ref=ObjectRef(namespace=CONFIG_NAMESPACE, name=name, uid=f"uid-l2-{name}", resource_version=version),
        kind="L2Advertisement", api_version="metallb.io/v1beta1", raw=raw,
    )


def labelled(observed: ConfigObjectObserved, **labels: str) -> ConfigObjectObserved:
    raw = dict(observed.raw)
    raw["metadata"] = {**raw["metadata"], "labels": labels}
    return observed.model_copy(update={"raw": raw})
