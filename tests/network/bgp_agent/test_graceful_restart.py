"""Graceful restart (RFC 4724) through a real announcer's restart, against FRR 8 (with zebra: the route in the
router's kernel, where traffic is forwarded) and GoBGP 3, as the BIRD story in test_bird.py: a BGPPeer with
``enableGracefulRestart: true``, the announcer stopped (SIGTERM: it closes without a Cease) and started again.
The route is sampled every few milliseconds from the stop until the new session's End-of-RIB: never missing."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, endpoints, node, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Frr, GoBgp, kernel_next_hops, start_frr_with_zebra
from tests.network.bgp_agent.harness import NODES, ROUTER4, Fabric, fabric
from tests.network.bgp_agent.one_router import node1_peering, router_for

_SKIP = skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

IP4 = "198.51.100.9"
V4 = f"{IP4}/32"
NODE_AS, ROUTER_AS = 64512, 64513
NODE4 = NODES["node1"][0]


def publish_world(fab: Fabric) -> None:
    fab.observe(
        pool("lan", "198.51.100.0/24"),
        bgp_peer("router", ROUTER4, my_asn=NODE_AS, peer_asn=ROUTER_AS, holdTime="9s", enableGracefulRestart=True),
        bgp_advertisement("ads"),
        *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
        endpoints("web", {"node1": 1}),
        service("web"),
    )
    fab.allocate(allocated("web", IP4, pool="lan"))


@dataclass
class Sampler:
    """Samples ``present()`` in a thread until stopped; keeps the times it found nothing."""

    present: Callable[[], bool]
    samples: int = 0
    missing: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        started = time.monotonic()

        def run() -> None:
            while not self._stop.is_set():
                if not self.present():
                    self.missing.append(time.monotonic() - started)
                self.samples += 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)


def restart_node1(fab: Fabric, *, session_down: Callable[[], bool], back: Callable[[], bool]) -> float:
    """SIGTERM (the announcer leaves without a Cease for a graceful restart peer), wait until the router saw the
    session go, start it again, wait until the router is done helping. Returns the seconds that took."""
    started = time.monotonic()
    assert fab.terminate("node1") == 0
    wait_for(session_down, timeout=15, message="the router saw the session go")
    fab.start_announcer("node1")
    wait_for(back, timeout=30, message="the session back and the restart over at the router")
    return time.monotonic() - started


# --- FRR with zebra ---------------------------------------------------------------------------------------


def bgpd_config() -> str:
    return "\n".join([
        "frr defaults traditional", "hostname router", f"router bgp {ROUTER_AS}", f" bgp router-id {ROUTER4}",
        " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast", " bgp graceful-restart",
        f" neighbor {NODE4} remote-as {NODE_AS}", f" neighbor {NODE4} passive", f" neighbor {NODE4} timers 3 9",
        " address-family ipv4 unicast", f"  neighbor {NODE4} activate", " exit-address-family",
    ]) + "\n"  # fmt: skip


@pytest.fixture
def frr_lab(tmp_path: Path) -> Iterator[tuple[Fabric, Frr]]:
    reason = skip_reason() or Frr.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with fabric(tmp_path) as fab, tempfile.TemporaryDirectory(prefix="mbbga-frr-") as frr_dir:
        # zebra runs as user frr, which cannot enter pytest's private tmp_path
        frr = start_frr_with_zebra(fab.lab, fab.router, Path(frr_dir), bgpd_config(), neighbor=NODE4)
        try:
            yield fab, frr
        except BaseException:
            print(fab.diagnostics(), frr.vtysh(f"show bgp neighbors {NODE4}", check=False).stdout, sep="\n")
            raise
        finally:
            fab.lab.close()  # the daemons go before their directory does


def test_frr_keeps_the_route_in_its_kernel_through_an_announcer_restart(frr_lab: tuple[Fabric, Frr]) -> None:
    fab, frr = frr_lab
    publish_world(fab)
    fab.start_announcer("node1")
    in_kernel = lambda: kernel_next_hops(fab.lab, fab.router, V4) == {NODE4}  # noqa: E731
    wait_for(in_kernel, timeout=30, message="the route in FRR's kernel table")
    restart_info = frr.neighbor().get("gracefulRestartInfo", {})
    assert restart_info.get("remoteGrMode") == "Restart", restart_info  # the announcer offered it

    def down() -> bool:
        return not frr.established() and "stale" in frr.vtysh(f"show bgp ipv4 unicast {V4}", check=False).stdout

    def back() -> bool:  # Established again, and the End-of-RIB cleared the stale mark
        shown = frr.vtysh(f"show bgp ipv4 unicast {V4}", check=False).stdout
        return frr.established() and V4 in shown and "stale" not in shown

    with Sampler(in_kernel) as sampler:
        took = restart_node1(fab, session_down=down, back=back)
    print(
        f"FRR: restart over in {took:.2f} s, the kernel route sampled {sampler.samples} times, missing "
        f"{len(sampler.missing)}"
    )
    assert sampler.samples > 50, sampler.samples
    assert sampler.missing == [], f"the route left FRR's kernel {len(sampler.missing)} times of {sampler.samples}"
    assert in_kernel()


# --- GoBGP ------------------------------------------------------------------------------------------------


@pytest.fixture
def gobgp_lab(tmp_path: Path) -> Iterator[tuple[Fabric, GoBgp]]:
    reason = skip_reason() or GoBgp.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    peering = node1_peering(router_as=ROUTER_AS, node_as=NODE_AS, graceful_restart=True)
    with fabric(tmp_path) as fab, router_for(fab, GoBgp, tmp_path / "gobgp", peering) as gobgp:
        assert isinstance(gobgp, GoBgp)
        yield fab, gobgp


def test_gobgp_keeps_the_route_through_an_announcer_restart(gobgp_lab: tuple[Fabric, GoBgp]) -> None:
    fab, gobgp = gobgp_lab
    publish_world(fab)
    fab.start_announcer("node1")
    wait_for(gobgp.established, timeout=30, message="GoBGP session")
    wait_for(lambda: gobgp.route(V4), timeout=15, message=f"{V4} at GoBGP")
    present = lambda: gobgp.route(V4) is not None  # noqa: E731

    def stale() -> bool:
        out = gobgp.cli("global", "rib", "-a", "ipv4", V4, check=False).stdout
        return "stale" in out.lower() or "(stale)" in out

    with Sampler(present) as sampler:
        took = restart_node1(fab, session_down=lambda: not gobgp.established() and present(),
                             back=lambda: gobgp.established() and present() and not stale())  # fmt: skip
    print(
        f"GoBGP: restart over in {took:.2f} s, the route sampled {sampler.samples} times, missing "
        f"{len(sampler.missing)}"
    )
    assert sampler.samples > 20, sampler.samples
    assert sampler.missing == [], f"the route left GoBGP's table {len(sampler.missing)} times of {sampler.samples}"
