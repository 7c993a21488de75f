"""The resource table: which kinds the stand-in serves, and how.

One row per served (group, version, plural). Rows that share ``group`` and ``plural`` (BGPPeer v1beta1 and
v1beta2) share one storage: an object written through one version is read through the other with only
``apiVersion`` rewritten (no schema conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.kubeapi import defaults

Obj = dict[str, Any]
Defaulter = Callable[[Obj], None]

_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False
    """True when the kind has a ``/status`` subresource (main writes keep status, status writes keep the rest)."""
    custom: bool = False
    """Custom resources refuse an update that carries no metadata.resourceVersion."""
    fields: tuple[str, ...] = ()
    """Field-selector keys beyond metadata.name and metadata.namespace."""
    defaulter: Defaulter | None = field(default=None, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> str:
        """Key of the shared storage of all versions of this resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def field_keys(self) -> frozenset[str]:
        base = {"metadata.name"} | ({"metadata.namespace"} if self.namespaced else set())
        return frozenset(base | set(self.fields))


def _metallb(plural: str, kind: str, version: str = "v1beta1") -> Resource:
    return Resource("metallb.io", version, plural, kind, namespaced=True, status=True, custom=True)


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, status=True, fields=("status.phase",)),
    Resource("", "v1", "nodes", "Node", namespaced=False, status=True, fields=("spec.unschedulable",)),
    Resource("", "v1", "services", "Service", namespaced=True, status=True, defaulter=defaults.service),
    Resource("", "v1", "secrets", "Secret", namespaced=True, fields=("type",)),
    Resource("", "v1", "configmaps", "ConfigMap", namespaced=True),
    Resource("", "v1", "events", "Event", namespaced=True, fields=_EVENT_FIELDS),
    Resource("", "v1", "pods", "Pod", namespaced=True, status=True, fields=("spec.nodeName", "status.phase")),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    Resource("events.k8s.io", "v1", "events", "Event", namespaced=True, fields=("reason", "type")),
    _metallb("ipaddresspools", "IPAddressPool"),
    _metallb("l2advertisements", "L2Advertisement"),
    _metallb("bgpadvertisements", "BGPAdvertisement"),
    _metallb("bfdprofiles", "BFDProfile"),
    _metallb("communities", "Community"),
    _metallb("servicel2statuses", "ServiceL2Status"),
    _metallb("servicebgpstatuses", "ServiceBGPStatus"),
    _metallb("configurationstates", "ConfigurationState"),
    _metallb("bgppeers", "BGPPeer", "v1beta2"),
    _metallb("bgppeers", "BGPPeer", "v1beta1"),
)


class ResourceTable:
    """Look-ups over a tuple of rows."""

    def __init__(self, rows: tuple[Resource, ...] = RESOURCES) -> None:
        self.rows = rows
        self._by_path = {(r.group, r.version, r.plural): r for r in rows}
        self._by_kind = {(r.api_version, r.kind): r for r in rows}

    def by_path(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        return self._by_kind.get((api_version, kind))

    def by_name(self, name: str) -> Resource:
        """``"services"``, ``"leases"``, ``"events.events.k8s.io"``, ``"bgppeers.metallb.io"``.

        A bare plural means the core group when it has one, else the first row with that plural.
        """
        plural, _, group = name.partition(".")
        rows = [r for r in self.rows if r.plural == plural and (not group or r.group == group)]
        if not rows:
            raise KeyError(name)
        core = [r for r in rows if r.group == ""]
        return (core or rows)[0]

    def groups(self) -> dict[str, list[str]]:
        """Group name → served versions, in table order."""
        out: dict[str, list[str]] = {}
        for r in self.rows:
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        return out
