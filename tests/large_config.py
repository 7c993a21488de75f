"""A metallb.io configuration far larger than one NATS message: thousands of BGPPeers and pools."""

from __future__ import annotations

from schemas.events import ConfigObjectObserved
from tests.bgp_world import bgp_peer
from tests.builders import pool


def large_configuration(*, peers: int = 5000, pools: int = 2000) -> list[ConfigObjectObserved]:
    """``pools`` /28 pools in 10.0.0.0/8 and ``peers`` BGPPeers at distinct addresses of 172.16.0.0/12."""
    objects: list[ConfigObjectObserved] = [
        pool(f"pool-{i:05d}", f"10.{i // 4096}.{(i // 16) % 256}.{(i % 16) * 16}/28") for i in range(pools)
    ]
    objects += [
        bgp_peer(f"peer-{i:05d}", f"172.16.{i // 250}.{i % 250 + 1}", my_asn=64500, peer_asn=64512 + i % 1000)
        for i in range(peers)
    ]
    return objects
