"""The local compose stack as a user brings it up with Debian's docker-compose: a Service's IP is answered
through ARP by the node metalbus placed it on, another's route reaches the FRR router from both nodes, and
taking it down leaves nothing of it in the engine."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from typing import Any

import pytest
import yaml

from schemas.metallb import IPAddressPool, parse_config_object
from tests.containers.compose_stack import Stack, compose_skip_reason, local_stack, stack_definition
from tests.containers.engine import Engine
from tests.containers.images import REPO
from tests.unit.deploy.kustomize import load_documents
from tests.waiting import wait_until

# Asked before the session's engine and images are made for this test.
pytestmark = pytest.mark.skipif(compose_skip_reason() is not None, reason=str(compose_skip_reason()))

CONVERGE_TIMEOUT = 90.0
L2_SERVICE, BGP_SERVICE = ("demo", "echo-local"), ("demo", "echo-bgp")


def pool(name: str) -> IPAddressPool:
    for document in load_documents(REPO / "compose" / "config" / "lab.yaml"):
        parsed = parse_config_object(document)
        if isinstance(parsed, IPAddressPool) and parsed.name == name:
            return parsed
    raise AssertionError(f"no pool {name} in compose/config/lab.yaml")


def node_services() -> dict[str, str]:
    """Node name → the service that is that node (its hostname)."""
    return {service["hostname"]: name for name, service in stack_definition()["services"].items()
            if name.startswith("announcer-")}


def node_address(node: str) -> str:
    address: str = stack_definition()["services"][node_services()[node]]["networks"]["lab"]["ipv4_address"]
    return address


def service_status(stack: Stack, service: tuple[str, str]) -> dict[str, Any]:
    """What the watcher wrote for ``service`` (its status as a cluster would show it); empty until written."""
    namespace, name = service
    shown = stack.exec("watcher", "cat", f"/objects/status/{namespace}_{name}.yaml")
    document: dict[str, Any] = yaml.safe_load(shown.stdout) if shown.returncode == 0 else {}
    return document or {}


def ingress_ip(stack: Stack, service: tuple[str, str]) -> str | None:
    ingress = service_status(stack, service).get("status", {}).get("loadBalancer", {}).get("ingress", [])
    return str(ingress[0]["ip"]) if ingress else None


def arp_answer(stack: Stack, ip: str) -> str | None:
    """The MAC address that answers the client's ARP request for ``ip``, if any does within a second."""
    answered = stack.exec("client", "arping", "-c", "1", "-w", "1", "-I", "eth0", ip)
    found = re.search(rf"reply from {re.escape(ip)} \[([0-9A-Fa-f:]{{17}})\]", answered.stdout)
    return found.group(1).lower() if found else None


def bgp_next_hops(stack: Stack, ip: str) -> set[str]:
    """The next hops of the router's BGP paths to ``ip``/32 (``show ip bgp``)."""
    shown = stack.exec("router", "vtysh", "-c", "show ip bgp json")
    if shown.returncode != 0:
        return set()
    paths = json.loads(shown.stdout).get("routes", {}).get(f"{ip}/32", [])
    return {hop["ip"] for path in paths if path.get("valid") for hop in path.get("nexthops", [])}


def test_the_local_stack_answers_arp_and_bgp_and_leaves_nothing(
        container_engine: Engine, metalbus_image: str, python_base_image: str) -> None:
    started = time.monotonic()
    # The router's and the client's images are built on the Python base: Debian bookworm with its apt
    # sources, whether the stand-in (debootstrap) or the official image (Debian's slim).
    with local_stack(container_engine, metalbus_image=metalbus_image, debian_image=python_base_image) as stack:
        up = time.monotonic()
        assert all(stack.left_behind().values())  # containers, the network, the volume: what down must remove
        # Layer 2: the watcher reports an IP of the lab-l2 pool and the node announcing it; the client's ARP
        # request for that IP is answered with that node's MAC address.
        wait_until(lambda: bool(service_status(stack, L2_SERVICE).get("metalbus", {}).get("announcedBy")),
                   timeout=CONVERGE_TIMEOUT, interval=0.5, what=f"{L2_SERVICE} announced")
        l2_ip = ingress_ip(stack, L2_SERVICE)
        assert l2_ip is not None
        assert any(ipaddress.ip_address(l2_ip) in r for r in pool("lab-l2").ranges())
        (announcing,) = service_status(stack, L2_SERVICE)["metalbus"]["announcedBy"]
        node_mac = stack.exec(node_services()[announcing["node"]], "cat", "/sys/class/net/eth0/address",
                              check=True).stdout.strip()
        wait_until(lambda: arp_answer(stack, l2_ip) == node_mac, timeout=CONVERGE_TIMEOUT, interval=0.2,
                   what=f"the client's ARP for {l2_ip} answered by {announcing['node']} ({node_mac})")

        # BGP: the router learns the other Service's IP from both nodes and routes it over both.
        wait_until(lambda: ingress_ip(stack, BGP_SERVICE) is not None, timeout=CONVERGE_TIMEOUT, interval=0.5,
                   what=f"an IP for {BGP_SERVICE}")
        bgp_ip = ingress_ip(stack, BGP_SERVICE)
        assert bgp_ip is not None
        assert any(ipaddress.ip_address(bgp_ip) in r for r in pool("lab-bgp").ranges())
        nodes = {node_address(node) for node in node_services()}
        wait_until(lambda: bgp_next_hops(stack, bgp_ip) == nodes, timeout=CONVERGE_TIMEOUT, interval=0.5,
                   what=f"the router's BGP paths to {bgp_ip} through {sorted(nodes)}")
        routed = json.loads(stack.exec("router", "ip", "-json", "route", "show", bgp_ip, check=True).stdout)
        assert {hop["gateway"] for route in routed for hop in route.get("nexthops", [])} == nodes
        converged = time.monotonic()
    print(f"local stack: images built and up in {up - started:.1f} s, converged in {converged - up:.1f} s,"
          f" down in {time.monotonic() - converged:.1f} s")
    assert stack.left_behind() == {"containers": [], "networks": [], "volumes": []}
