"""FRR 8 as a BFD-watching router, for the BFD network tests and bench/bgp.py: bgpd's neighbours with ``bfd``
and bfdd's peers (single hop on an interface, multihop from a local address, echo mode), and bfdd's view of a
peer read back as JSON."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.netlab import Lab
from tests.network.bgp.routers import Frr


@dataclass(frozen=True)
class BfdNeighbor:
    """One node as FRR sees it: a passive BGP neighbour with BFD, and its bfdd peer."""

    address: str
    remote_as: int
    local: str  # the router's own address towards it
    interface: str | None = "eth0"  # single hop: the link; None for multihop (ebgp-multihop on the BGP side)
    interval_ms: int = 300
    echo_ms: int | None = None  # echo mode with this transmit and receive interval

    def bgpd_lines(self) -> list[str]:
        n = self.address
        multihop = [f" neighbor {n} ebgp-multihop 255", f" neighbor {n} update-source {self.local}"]
        return [
            f" neighbor {n} remote-as {self.remote_as}",
            f" neighbor {n} passive",
            *(multihop if self.interface is None else []),
            f" neighbor {n} timers 30 90",
            f" neighbor {n} bfd",
        ]

    def bfdd_lines(self) -> list[str]:
        where = f"interface {self.interface}" if self.interface is not None else ""
        head = f" peer {self.address} {'multihop ' if self.interface is None else ''}local-address {self.local} {where}"
        echo = [" echo-mode", f" echo transmit-interval {self.echo_ms}", f" echo receive-interval {self.echo_ms}"]
        return [head.rstrip(), f"  receive-interval {self.interval_ms}", f"  transmit-interval {self.interval_ms}",
                *(f" {line}" for line in (echo if self.echo_ms is not None else [])), " exit"]  # fmt: skip


def bgpd_config(*, router_as: int, router_id: str, neighbors: Sequence[BfdNeighbor]) -> str:
    """bgpd with each neighbour passive, BFD on, IPv4 unicast."""
    lines = ["frr defaults traditional", "hostname router", f"router bgp {router_as}", f" bgp router-id {router_id}",
             " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast"]  # fmt: skip
    for neighbor in neighbors:
        lines += neighbor.bgpd_lines()
    lines += [" address-family ipv4 unicast", *(f"  neighbor {n.address} activate" for n in neighbors)]
    return "\n".join([*lines, " exit-address-family"]) + "\n"


def bfdd_config(neighbors: Sequence[BfdNeighbor]) -> str:
    return "\n".join(["hostname router", "bfd", *(line for n in neighbors for line in n.bfdd_lines())]) + "\n"


def bfd_peer(frr: Frr, address: str, *, counters: bool = False) -> dict[str, Any]:
    """bfdd's ``show bfd peers [counters] json`` entry for ``address`` ({} while it has none)."""
    peers = json.loads(frr.vtysh(f"show bfd peers{' counters' if counters else ''} json").stdout or "[]")
    return next((p for p in peers if p.get("peer") == address), {})


@contextmanager
def frr_directory(lab: Lab) -> Iterator[Path]:
    """A directory the daemons (user frr) can enter, which a test's tmp_path is not; ``lab`` is closed before
    the directory goes, so the daemons go first."""
    with tempfile.TemporaryDirectory(prefix="mbbgp-frr-") as directory:
        try:
            yield Path(directory)
        finally:
            lab.close()
