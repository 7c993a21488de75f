"""A standby whose L2 placement bookkeeping is kept warm takes over as a cold one would: the same placements
decided (and the same reasons) for what changed while no replica was deciding — Services, endpoints, nodes,
the announcers live, placements the active replica appended after the warm-up — and no IP moves that a cold
takeover would keep."""

from __future__ import annotations

import pytest

from schemas.events import Event, L2PlacementCleared, L2PlacementDecided, ServicePort
from services.ipam.decider import Decider
from tests.builders import pool, service, service_deleted
from tests.builders_l2 import endpoints, l2, node
from tests.unit.ipam.test_warm_takeover import decisions, follow

NODES = tuple(f"n{i}" for i in range(8))
CONFIGURATION: list[Event] = [
    pool("lan", "10.60.0.0/24", "fd00:60::/120"),
    l2("most", nodeSelectors=[{"matchExpressions": [{"key": "edge", "operator": "DoesNotExist"}]}]),
    l2("edge", interfaces=["eth1"], nodeSelectors=[{"matchLabels": {"edge": "yes"}}]),
]


def nodes() -> list[Event]:
    return [node(name, edge="yes") if i % 4 == 0 else node(name) for i, name in enumerate(NODES)]


def workload(count: int, *, prefix: str = "svc") -> list[Event]:
    """Services and their endpoints: the 2nd and 3rd of every ten share an address, of the others every third
    is ``Local`` and every fourth dual-stack; every seventh has no serving endpoint."""
    made: list[Event] = []
    for i in range(count):
        name = f"{prefix}-{i}"
        shared = i % 10 in (1, 2)
        local = i % 3 == 0 and not shared
        annotations = {"metallb.io/allow-shared-ip": f"{prefix}-{i // 10}"} if shared else {}
        dual = i % 4 == 0 and not shared
        made.append(
            service(
                name,
                annotations=annotations,
                external_traffic_policy="Local" if local else "Cluster",
                ip_families=("IPv4", "IPv6") if dual else ("IPv4",),
                ip_family_policy="RequireDualStack" if dual else "SingleStack",
                ports=(ServicePort(protocol="TCP", port=80 + i),),
            )
        )
        if i % 7:
            made.append(endpoints(name, NODES[i % len(NODES)], NODES[(i * 3 + 1) % len(NODES)]))
    return made


def placed(decider: Decider) -> dict[str, str]:
    return {ip: p.decision.node for ip, p in decider.ledger.placements.items()}


@pytest.mark.parametrize("gone", [{"n3", "n5"}, {"n3", "n2"}], ids=["announcers-warmed-with", "others"])
def test_a_standby_with_warm_placements_takes_over_as_a_cold_one(gone: set[str]) -> None:
    active, warm, cold = Decider(), Decider(), Decider()
    everyone = frozenset(NODES)
    world = CONFIGURATION + nodes() + workload(80)
    decided = active.activate() + active.set_live_nodes(everyone - {"n7"})
    decided += active.observe_many((event, None) for event in world)
    for standby in (warm, cold):
        follow(standby, world, decided)
    warm.warm(everyone - {"n7"})
    assert warm.ledger.placements and placed(warm) == placed(active)

    # the active replica decides more (a node dies, n7 comes, Services change), the standby follows and warms
    # again, then the active decides a little more the standby follows without warming
    more = [service("late-1"), endpoints("late-1", "n2"), service_deleted("svc-4"), endpoints("svc-6", "n5")]
    decided_more = active.set_live_nodes(everyone - {"n3"}) + active.observe_many((e, None) for e in more)
    for standby in (warm, cold):
        follow(standby, more, decided_more)
    warm.warm(everyone - {"n3"})
    last = [node("n1", edge="yes", version="2"), service("late-2"), endpoints("late-2", "n1")]
    decided_last = active.observe_many((e, None) for e in last) + active.set_live_nodes(everyone - {"n3", "n5"})
    assert any(isinstance(o.event, L2PlacementDecided) for o in decided_last)

    # then it dies before deciding these; the standby takes over hearing the announcers it warmed with, or others
    unanswered = [
        endpoints("svc-1"),
        endpoints("svc-2", "n4"),
        service_deleted("svc-10"),
        endpoints("svc-3", "n0", "n4"),
        node("n6", unavailable=True, version="2"),
        service("late-3"),
        endpoints("late-3", "n6"),
        *workload(6, prefix="burst"),
    ]
    for standby in (warm, cold):
        follow(standby, last + unanswered[:5], decided_last)
    warm.warm(everyone - {"n3", "n5"})  # some of what it warms with differs from the ledger
    for standby in (warm, cold):
        follow(standby, unanswered[5:], [])
    live = everyone - gone
    taken_over = {}
    for name, standby in (("warm", warm), ("cold", cold)):
        standby.adopt()
        taken_over[name] = standby.start_placing(live)

    assert decisions(taken_over["warm"]) == decisions(taken_over["cold"])
    assert placed(warm) == placed(cold)
    assert any(isinstance(o.event, L2PlacementCleared) for o in taken_over["warm"])
    kept = {key: a.ips for key, a in active.ledger.allocations.items() if key not in {"default/svc-10"}}
    assert {key: warm.ledger.allocations[key].ips for key in kept} == kept, "an address moved on taking over"


def test_a_standby_warmed_with_another_l2_configuration_takes_over_as_a_cold_one() -> None:
    active, warm, cold = Decider(), Decider(), Decider()
    world = CONFIGURATION + nodes() + workload(30)
    decided = active.activate() + active.set_live_nodes(frozenset(NODES))
    decided += active.observe_many((event, None) for event in world)
    for standby in (warm, cold):
        follow(standby, world, decided)
    warm.warm(frozenset(NODES))
    changed: list[Event] = [l2("most", version="2", interfaces=["eth2"])]  # observed, never decided
    for standby in (warm, cold):
        follow(standby, changed, [])

    taken_over = []
    for standby in (warm, cold):
        standby.adopt()
        taken_over.append(standby.start_placing(frozenset(NODES)))
    assert decisions(taken_over[0]) == decisions(taken_over[1])
    assert placed(warm) == placed(cold)
