"""Observed events and ipam decisions for BGP tests: the world as the watcher and the ipam would publish it."""

from __future__ import annotations

from typing import Any

from schemas.events import (
    ConfigObjectObserved,
    EndpointsObserved,
    Event,
    IPAllocated,
    IPReleased,
    NodeAddress,
    NodeEndpoints,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    ReleaseReason,
    SecretObserved,
    ServiceId,
)
from services.common.bus import Bus
from services.common.subjects import ipam_allocation_subject, observed_subject
from tests.builders import CONFIG_NAMESPACE, service

__all__ = [
    "allocated",
    "bgp_advertisement",
    "bgp_peer",
    "config_object",
    "deleted",
    "endpoints",
    "node",
    "publish_allocation",
    "publish_observed",
    "released",
    "secret",
    "service",
]  # fmt: skip


def config_object(kind: str, name: str, spec: dict[str, Any], *, version: str = "1") -> ConfigObjectObserved:
    api_version = "metallb.io/v1beta2" if kind == "BGPPeer" else "metallb.io/v1beta1"
    raw = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": CONFIG_NAMESPACE, "uid": f"uid-{name}", "resourceVersion": version},
        "spec": spec,
    }
    return ConfigObjectObserved(
        ref=ObjectRef(namespace=CONFIG_NAMESPACE, name=name, uid=f"uid-{name}", resource_version=version),
        kind=kind, api_version=api_version, raw=raw,
    )  # fmt: skip


def bgp_peer(name: str, address: str, *, my_asn: int, peer_asn: int, version: str = "1", **spec: Any) -> Any:
    return config_object(
        "BGPPeer", name, {"myASN": my_asn, "peerASN": peer_asn, "peerAddress": address, **spec}, version=version
    )


def bgp_advertisement(name: str, *, version: str = "1", **spec: Any) -> ConfigObjectObserved:
    return config_object("BGPAdvertisement", name, spec, version=version)


def node(name: str, *addresses: str, labels: dict[str, str] | None = None, version: str = "1") -> NodeObserved:
    return NodeObserved(
        ref=ObjectRef(name=name, uid=f"uid-{name}", resource_version=version),
        labels=labels or {},
        addresses=tuple(NodeAddress(type="InternalIP", address=a) for a in addresses),
    )


def endpoints(name: str, serving: dict[str, int], namespace: str = "default") -> EndpointsObserved:
    return EndpointsObserved(
        namespace=namespace, service=name,
        nodes=tuple(NodeEndpoints(node=n, ready=c, serving=c) for n, c in sorted(serving.items())),
    )  # fmt: skip


def secret(name: str, password: str, namespace: str = CONFIG_NAMESPACE) -> SecretObserved:
    return SecretObserved(
        ref=ObjectRef(namespace=namespace, name=name, uid=f"uid-{name}", resource_version="1"),
        secret_type="kubernetes.io/basic-auth", data={"password": password},
    )  # fmt: skip


def deleted(kind: ObjectKind, name: str, namespace: str = "default") -> ObjectDeleted:
    return ObjectDeleted(kind=kind, namespace=namespace, name=name, uid=f"uid-{name}")


def allocated(name: str, *ips: str, pool: str, namespace: str = "default") -> IPAllocated:
    return IPAllocated(service=ServiceId(namespace=namespace, name=name), ips=ips, pool=pool, reason="test")


def released(name: str, *ips: str, namespace: str = "default") -> IPReleased:
    return IPReleased(service=ServiceId(namespace=namespace, name=name), ips=ips, reason=ReleaseReason.SERVICE_DELETED)


async def publish_observed(bus: Bus, *events: Event) -> None:
    for event in events:
        await bus.publish(observed_subject(event), event)


async def publish_allocation(bus: Bus, event: IPAllocated | IPReleased) -> None:
    await bus.publish(ipam_allocation_subject(event.service.namespace, event.service.name), event)
