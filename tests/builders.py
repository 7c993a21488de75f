"""Observed events as tests need them: a pool, a Service, a deletion — with sensible defaults."""

from __future__ import annotations

from typing import Any

from schemas.events import ConfigObjectObserved, ObjectDeleted, ObjectKind, ObjectRef, ServiceObserved, ServicePort

CONFIG_NAMESPACE = "metallb-system"


def pool(name: str, *addresses: str, version: str = "1", **spec: Any) -> ConfigObjectObserved:
    """An IPAddressPool as the watcher would observe it (``spec`` in MetalLB's camelCase)."""
    raw = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": CONFIG_NAMESPACE, "uid": f"uid-{name}", "resourceVersion": version},
        "spec": {"addresses": list(addresses), **spec},
    }
    return ConfigObjectObserved(
        ref=ObjectRef(namespace=CONFIG_NAMESPACE, name=name, uid=f"uid-{name}", resource_version=version),
        kind="IPAddressPool", api_version="metallb.io/v1beta1", raw=raw,
    )


def service(name: str, *, version: str = "1", namespace: str = "default", **fields: Any) -> ServiceObserved:
    """A single-stack IPv4 LoadBalancer Service on TCP/80 unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "service_type": "LoadBalancer",
        "ports": (ServicePort(protocol="TCP", port=80),),
        "ip_families": ("IPv4",),
        "cluster_ips": ("10.96.0.10",),
    }
    values.update(fields)
    return ServiceObserved(
        ref=ObjectRef(namespace=namespace, name=name, uid=f"uid-{namespace}-{name}", resource_version=version),
        **values,
    )


def service_deleted(name: str, namespace: str = "default") -> ObjectDeleted:
    return ObjectDeleted(kind=ObjectKind.SERVICE, namespace=namespace, name=name, uid=f"uid-{namespace}-{name}")
