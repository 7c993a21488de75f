"""Observed events and ipam decisions for BGP tests: the world as the watcher and the ipam would publish it.

The BGP agent reads ipam's decisions (``decided`` / ``withdrawn``, ``in_force``) and its own Node; the
observed Services, endpoints and metallb.io objects are for tests that run a real ipam."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPRoute,
    BGPWithdrawReason,
    ConfigObjectObserved,
    ConfigurationEvaluated,
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
from schemas.metallb.common import LabelSelector
from services.common.bus import Bus
from services.common.subjects import (
    IPAM_CONFIG_SUBJECT,
    bgp_decision_subject,
    ipam_allocation_subject,
    observed_subject,
)
from services.ipam.decider import Decider, Outgoing
from tests.builders import CONFIG_NAMESPACE, service

__all__ = [
    "allocated",
    "bgp_advertisement",
    "bgp_peer",
    "config_object",
    "decided",
    "deleted",
    "endpoints",
    "in_force",
    "node",
    "publish_allocation",
    "publish_decisions",
    "publish_observed",
    "read_back",
    "released",
    "route",
    "secret",
    "service",
    "withdrawn",
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


# --- ipam's decisions, as the BGP agent reads them ---------------------------------------------------------


def in_force(*objects: ConfigObjectObserved) -> ConfigurationEvaluated:
    """ipam putting ``objects`` in force (carried whole: a small configuration)."""
    return ConfigurationEvaluated(valid=True, in_force_generation=f"g{len(objects)}-" + "-".join(
        f"{o.ref.name}.{o.ref.resource_version}" for o in objects), in_force=tuple(dict(o.raw) for o in objects))


def route(
    advertisement: str, prefix: str, *, communities: tuple[int, ...] = (),
    large: tuple[tuple[int, int, int], ...] = (), local_pref: int = 0, peers: tuple[str, ...] = (),
    node_selectors: tuple[dict[str, Any], ...] = (),
) -> BGPRoute:  # fmt: skip
    return BGPRoute(
        advertisement=advertisement, prefix=prefix, communities=communities, large_communities=large,
        local_pref=local_pref, peers=peers,
        node_selectors=tuple(LabelSelector.model_validate(s) for s in node_selectors),
    )  # fmt: skip


def decided(
    ip: str, *routes: BGPRoute, services: tuple[str, ...] = ("web",), nodes: tuple[str, ...] | None = None
) -> BGPAdvertisementDecided:
    """ipam's decision for ``ip``: ``routes`` (default: one /32 or /128 of advertisement ``ads``) from every
    node (``nodes`` None) or only ``nodes``; ``services`` by name in ``default``."""
    own = routes or (route("ads", f"{ip}/{32 if ':' not in ip else 128}"),)
    return BGPAdvertisementDecided(
        ip=ip, services=tuple(ServiceId(namespace="default", name=name) for name in services), routes=own,
        nodes=nodes,
    )  # fmt: skip


def withdrawn(ip: str, reason: BGPWithdrawReason = BGPWithdrawReason.RELEASED) -> BGPAdvertisementWithdrawn:
    return BGPAdvertisementWithdrawn(ip=ip, reason=reason)


async def publish_decisions(
    bus: Bus, *events: BGPAdvertisementDecided | BGPAdvertisementWithdrawn | ConfigurationEvaluated
) -> None:
    for event in events:
        subject = IPAM_CONFIG_SUBJECT if isinstance(event, ConfigurationEvaluated) else bgp_decision_subject(event.ip)
        await bus.publish(subject, event)


def read_back(history: Sequence[Outgoing], observed: Sequence[Event]) -> Decider:
    """An ipam replica that read ``history`` back from the stream (as JSON, as a standby does) and observed
    ``observed``, not active yet."""
    decider = Decider()
    for outgoing in history:
        event = outgoing.event
        decider.load_decision(type(event).model_validate_json(event.model_dump_json()), outgoing.sequence)
    for event in observed:
        decider.load_observation(event)
    return decider
