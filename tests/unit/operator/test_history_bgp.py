"""`metalbus history` tells ipam's BGP decisions about an IP: advertised how and from where, withdrawn why."""

from __future__ import annotations

from schemas.events import BGPAdvertisementDecided, BGPAdvertisementWithdrawn, BGPRoute, BGPWithdrawReason
from services.operator.history import describe

ROUTE = BGPRoute(advertisement="edge", prefix="10.1.0.0/24", communities=(), large_communities=())


def test_bgp_decisions_in_words() -> None:
    cluster = BGPAdvertisementDecided(ip="10.1.0.7", services=(), routes=(ROUTE,), nodes=None)
    local = cluster.model_copy(update={"nodes": ("a", "b")})
    assert describe(cluster) == "10.1.0.7 advertised over BGP as 10.1.0.0/24 by edge, from every node"
    assert describe(local) == ("10.1.0.7 advertised over BGP as 10.1.0.0/24 by edge,"
                               " from 2 nodes with a serving endpoint")
    withdrawn = BGPAdvertisementWithdrawn(ip="10.1.0.7", reason=BGPWithdrawReason.NO_SERVING_ENDPOINTS)
    assert describe(withdrawn) == "10.1.0.7 withdrawn from BGP (NoServingEndpoints)"
