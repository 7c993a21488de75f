"""Server-side defaulting for the few kinds whose defaults a controller reads."""

from __future__ import annotations

import hashlib
from typing import Any

Obj = dict[str, Any]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def service(obj: Obj) -> None:
    """Default a Service spec like the API server does (cluster IP, families, node ports, policies)."""
    meta = obj.get("metadata", {})
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] == "ExternalName":
        return
    h = _hash(key)
    if "clusterIP" not in spec:
        spec["clusterIP"] = spec["clusterIPs"][0] if spec.get("clusterIPs") else f"10.96.{h >> 8 & 255}.{h & 255}"
    if spec["clusterIP"] != "None":
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    families = ["IPv6" if ":" in ip else "IPv4" for ip in spec.get("clusterIPs", []) if ip != "None"]
    spec.setdefault("ipFamilies", families or ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack" if len(spec["ipFamilies"]) < 2 else "RequireDualStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    external = spec["type"] in ("NodePort", "LoadBalancer")
    if external:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    node_ports = external and spec.get("allocateLoadBalancerNodePorts", True)
    for i, port in enumerate(spec.get("ports") or []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if node_ports:
            port.setdefault("nodePort", 30000 + (h + i) % 2768)
