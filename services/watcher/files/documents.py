"""Ordinary Kubernetes YAML → the raw objects a Kubernetes list would return. Pure: text in, objects out.

A directory of manifests has no API server to give its objects a ``uid`` and a ``resourceVersion``,
so they are assigned here, deterministically:

- ``uid``: the one written in the file, else a UUID derived from kind, namespace and name — the same
  object keeps its uid across edits and restarts, as it would in a cluster;
- ``resourceVersion``: a digest of the object's content — an edit gives a new version, an untouched
  file the same one, so restarting the watcher on an unchanged directory publishes nothing.

Namespaced objects written without a namespace land where ``kubectl apply`` would put them
(``default``), except the metallb.io configuration, which goes to the configuration namespace.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from schemas.events import CONFIG_KINDS
from services.watcher.observe.translate import KUBE_PROXY_NAME, KUBE_PROXY_NAMESPACE, RawObject

#: Namespace of the UUIDs given to objects written without one.
UID_NAMESPACE = uuid.UUID("6d6f7b3e-1c55-4a8e-9b0f-6d6574616c62")
DEFAULT_NAMESPACE = "default"


class Resource(StrEnum):
    """What the watcher observes, per source list (the Kubernetes source has one reflector each)."""

    SERVICES = "services"
    ENDPOINT_SLICES = "endpointslices"
    NODES = "nodes"
    NAMESPACES = "namespaces"
    KUBE_PROXY = "kube-proxy"
    SECRETS = "secrets"
    IP_ADDRESS_POOLS = "ipaddresspools"
    L2_ADVERTISEMENTS = "l2advertisements"
    BGP_ADVERTISEMENTS = "bgpadvertisements"
    BGP_PEERS = "bgppeers"
    BFD_PROFILES = "bfdprofiles"
    COMMUNITIES = "communities"


CONFIG_RESOURCES: dict[str, Resource] = {
    "IPAddressPool": Resource.IP_ADDRESS_POOLS,
    "L2Advertisement": Resource.L2_ADVERTISEMENTS,
    "BGPAdvertisement": Resource.BGP_ADVERTISEMENTS,
    "BGPPeer": Resource.BGP_PEERS,
    "BFDProfile": Resource.BFD_PROFILES,
    "Community": Resource.COMMUNITIES,
}
assert set(CONFIG_RESOURCES) == set(CONFIG_KINDS)

_CLUSTER_SCOPED = frozenset({"Node", "Namespace"})


class Problem(StrEnum):
    UNREADABLE_YAML = "UnreadableYAML"
    NOT_AN_OBJECT = "NotAnObject"
    NO_NAME = "NoName"
    DUPLICATE = "Duplicate"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A document that was not taken, and why (shown in the log; the rest of the directory still counts)."""

    origin: str
    problem: Problem
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Document:
    """One object as written, with where it came from."""

    origin: str
    obj: RawObject


@dataclass
class Loaded:
    """The objects of a directory by resource, with identities assigned; plus what was skipped."""

    objects: dict[Resource, list[RawObject]] = field(default_factory=lambda: {r: [] for r in Resource})
    skipped: list[Skipped] = field(default_factory=list)
    ignored_kinds: dict[str, int] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(items) for items in self.objects.values())


def parse_documents(text: str, *, origin: str) -> tuple[list[Document], list[Skipped]]:
    """Every object of a (multi-document) YAML text; ``kind: List`` is unpacked."""
    try:
        raw_documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        return [], [Skipped(origin, Problem.UNREADABLE_YAML, str(error).splitlines()[0] if str(error) else "")]
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for number, document in enumerate(raw_documents, 1):
        where = f"{origin}#{number}"
        items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else None
        for item in items if isinstance(items, list) else [document]:
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                skipped.append(Skipped(where, Problem.NOT_AN_OBJECT, "a document without a kind"))
                continue
            meta = item.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
                skipped.append(Skipped(where, Problem.NO_NAME, f"a {item['kind']} without metadata.name"))
                continue
            documents.append(Document(where, item))
    return documents, skipped


def resource_of(obj: Mapping[str, Any]) -> Resource | None:
    """Which observed resource ``obj`` belongs to; None for kinds the watcher does not read."""
    kind = obj.get("kind")
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.split("/")[0] if "/" in api_version else ""
    if kind in CONFIG_RESOURCES and group in ("", "metallb.io"):
        return CONFIG_RESOURCES[str(kind)]
    if group not in ("", "discovery.k8s.io"):
        return None
    if kind == "Service":
        return Resource.SERVICES
    if kind == "EndpointSlice":
        return Resource.ENDPOINT_SLICES
    if kind == "Node":
        return Resource.NODES
    if kind == "Namespace":
        return Resource.NAMESPACES
    if kind == "Secret":
        return Resource.SECRETS
    meta = obj.get("metadata") or {}
    if kind == "ConfigMap" and (meta.get("namespace"), meta.get("name")) == (KUBE_PROXY_NAMESPACE, KUBE_PROXY_NAME):
        return Resource.KUBE_PROXY
    return None


def content_version(obj: Mapping[str, Any]) -> str:
    """A digest of everything but the identity fields: the object's resourceVersion."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("uid", "resourceVersion")}
    body = {**obj, "metadata": meta}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def derived_uid(kind: str, namespace: str, name: str) -> str:
    return str(uuid.uuid5(UID_NAMESPACE, f"{kind}/{namespace}/{name}"))


def with_identity(obj: RawObject, *, config_namespace: str) -> RawObject:
    """A copy of ``obj`` with its namespace defaulted, a uid and a content resourceVersion."""
    kind = str(obj.get("kind"))
    meta = dict(obj.get("metadata") or {})
    if kind in _CLUSTER_SCOPED:
        meta.pop("namespace", None)
    elif not meta.get("namespace"):
        meta["namespace"] = config_namespace if kind in CONFIG_RESOURCES else DEFAULT_NAMESPACE
    out = {**obj, "metadata": meta}
    meta["resourceVersion"] = content_version(out)
    if not isinstance(meta.get("uid"), str) or not meta.get("uid"):
        meta["uid"] = derived_uid(kind, str(meta.get("namespace") or ""), str(meta["name"]))
    return out


def load_documents(documents: Iterable[Document], *, config_namespace: str) -> Loaded:
    """Sort documents into resources. The same object written twice: the later document wins
    (files are read in name order), the earlier one is reported as a duplicate."""
    loaded = Loaded()
    seen: dict[tuple[str, str, str], tuple[Resource, int, str]] = {}
    for document in documents:
        resource = resource_of(document.obj)
        if resource is None:
            kind = str(document.obj.get("kind"))
            loaded.ignored_kinds[kind] = loaded.ignored_kinds.get(kind, 0) + 1
            continue
        obj = with_identity(document.obj, config_namespace=config_namespace)
        meta = obj["metadata"]
        key = (str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))
        items = loaded.objects[resource]
        if key in seen:
            _, index, origin = seen[key]
            loaded.skipped.append(Skipped(origin, Problem.DUPLICATE, f"{key[0]} {key[1]}/{key[2]} again in "
                                                                     f"{document.origin}"))
            items[index] = obj
            seen[key] = (resource, index, document.origin)
        else:
            seen[key] = (resource, len(items), document.origin)
            items.append(obj)
    return loaded
