"""One real router (BIRD 2, FRR 8 or GoBGP 3) in the agent lab's router namespace, peering with node1 alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.network.bgp.routers import ROUTERS, Bird, Frr, GoBgp, Peering, Router
from tests.network.bgp_agent.harness import NODES, ROUTER4, Fabric

Daemon = type[Bird] | type[Frr] | type[GoBgp]
NODE1 = NODES["node1"][0]


def daemon_params() -> list[object]:
    """Each router kind, skipped with the reason where its daemon is not installed."""
    return [
        pytest.param(
            kind, id=kind.NAME, marks=pytest.mark.skipif((r := kind.skip_reason()) is not None, reason=r or "")
        )
        for kind in ROUTERS
    ]


def node1_peering(*, router_as: int, node_as: int, passive: bool = True, graceful_restart: bool = False) -> Peering:
    """The router's side: it expects node1 with ``node_as``; not ``passive``, it dials node1 every 2 s."""
    return Peering(router_id=ROUTER4, local=ROUTER4, local_as=router_as, neighbor=NODE1, neighbor_as=node_as,
                   passive=passive, graceful_restart=graceful_restart)  # fmt: skip


@contextmanager
def router_for(fab: Fabric, kind: Daemon, directory: Path, peering: Peering) -> Iterator[Router]:
    """The router started; on a failure, what the announcers and the router said is printed."""
    router = kind.start(fab.lab, fab.router, directory, peering)
    try:
        yield router
    except BaseException:
        print(fab.diagnostics(), router.diagnostics(), sep="\n")
        raise
