"""The BGP lab: a node and a router namespace on one bridge, and the speaker as a driven subprocess.

    bridge namespace: br0 ── node   (eth0 10.77.0.2/24, fd77::2/64)  runs tests.network.bgp.speaker_proc
                         ── router (eth0 10.77.0.1/24, fd77::1/64)  runs the peer daemon (passive)
One session over IPv4 carries IPv4 and IPv6 unicast (MP-BGP); the IPv6 next hop is fd77::2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.netlab import Lab, wait_for
from tests.network.bgp.routers import Peering, Router, RouteView

NODE4, NODE6 = "10.77.0.2", "fd77::2"
ROUTER4, ROUTER6 = "10.77.0.1", "fd77::1"
PASSWORD = "md5-s3cret"


@dataclass
class Net:
    lab: Lab
    node: str
    router: str
    directory: Path
    node_port: str = ""  # the node's port on the bridge: set it down to cut the node's link
    bridge: str = ""


@contextmanager
def lab_net(directory: Path) -> Iterator[Net]:
    with Lab("mbbgp") as lab:
        bridge = lab.namespace("br")
        lab.bridge(bridge)
        node, router = lab.namespace("node"), lab.namespace("router")
        port = lab.link(node, bridge_ns=bridge, addresses=[f"{NODE4}/24", f"{NODE6}/64"])
        lab.link(router, bridge_ns=bridge, addresses=[f"{ROUTER4}/24", f"{ROUTER6}/64"])
        yield Net(lab, node, router, directory, node_port=port, bridge=bridge)


def peering(
    *,
    local_as: int = 64512,
    peer_as: int = 64512,
    password: str | None = None,
    passive: bool = True,
    hold_time: int = 9,
    graceful_restart: bool = True,
    bfd_interval_ms: int | None = None,
    ipv6: bool = False,
) -> Peering:
    """The router's side of the session: ``local_as`` is the router's, ``peer_as`` the node's; with ``ipv6``
    the session runs between fd77::1 and fd77::2."""
    return Peering(
        router_id=ROUTER4,
        local=ROUTER6 if ipv6 else ROUTER4,
        local_as=local_as,
        neighbor=NODE6 if ipv6 else NODE4,
        neighbor_as=peer_as,
        password=password,
        passive=passive,
        hold_time=hold_time,
        graceful_restart=graceful_restart,
        bfd_interval_ms=bfd_interval_ms,
    )


class SpeakerProcess:
    """tests.network.bgp.speaker_proc in the node namespace; commands go in as JSON lines on stdin."""

    def __init__(self, net: Net, name: str, **config: Any) -> None:
        self.log = net.directory / f"{name}.log"
        settings = {
            "local_as": 64512,
            "peer_as": 64512,
            "router_id": NODE4,
            "peer_address": ROUTER4,
            "source_address": NODE4,
            "next_hop_v6": NODE6,
            "hold_time": 9,
            **config,
        }
        module = "tests.network.bgp.speaker_proc"
        self.proc = net.lab.popen(net.node, sys.executable, "-m", module, json.dumps(settings), str(self.log))

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def announce(self, *routes: dict[str, Any]) -> None:
        self.send({"routes": list(routes)})

    def stop(self, *, keep_routes: bool = False) -> None:
        self.send({"stop": {"keep_routes": keep_routes, "message": "test done"}})
        self.proc.wait(timeout=10)

    def events(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def route(prefix: str, **attributes: Any) -> dict[str, Any]:
    return {"prefix": prefix, **attributes}


def wait_established(router: Router, speaker: SpeakerProcess, *, timeout: float = 15) -> None:
    try:
        wait_for(router.established, timeout=timeout, message=f"{router.NAME} session Established")
    except TimeoutError:
        print(speaker.events(), router.diagnostics(), sep="\n----\n")
        raise


def wait_route(router: Router, prefix: str, *, timeout: float = 10) -> RouteView:
    return wait_for(lambda: router.route(prefix), timeout=timeout, message=f"{prefix} at {router.NAME}")


def wait_no_route(router: Router, prefix: str, *, timeout: float = 10) -> None:
    wait_for(lambda: router.route(prefix) is None, timeout=timeout, message=f"{prefix} gone from {router.NAME}")
