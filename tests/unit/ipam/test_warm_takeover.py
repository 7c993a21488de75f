"""A standby kept warm takes over as a cold one would: every allocation kept, the same decisions for what
changed while no replica was deciding, without re-adopting what it had adopted already."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from schemas.events import Event, IPAllocated, ServiceObserved
from services.ipam.core import ParsedService
from services.ipam.decider import Decider, Outgoing
from services.ipam.ledger import Ledger
from services.ipam.warm_allocator import Adopted, WarmAllocator
from services.ipam.world import World
from tests.builders import pool, service, service_deleted

CONFIGURATION: list[Event] = [pool("lan", "10.50.0.0/24", "fd00:50::/120")]


def workload(count: int) -> list[Event]:
    """Services, every third dual-stack, every fifth sharing an address with its neighbour."""
    made: list[Event] = []
    for i in range(count):
        annotations = {"metallb.io/allow-shared-ip": f"pair-{i // 2}"} if i % 5 == 0 else {}
        dual = i % 3 == 0
        made.append(service(
            f"svc-{i}", annotations=annotations, ip_families=("IPv4", "IPv6") if dual else ("IPv4",),
            ip_family_policy="RequireDualStack" if dual else "SingleStack",
        ))
    return made


def follow(standby: Decider, observed: Sequence[Event], decided: list[Outgoing]) -> None:
    for event in observed:
        standby.load_observation(event)
    for out in decided:
        standby.load_decision(out.event, out.sequence)


def held(decider: Decider) -> dict[str, tuple[str, ...]]:
    return {key: event.ips for key, event in decider.ledger.allocations.items()}


def decisions(outgoing: list[Outgoing]) -> list[tuple[str, Event]]:
    return [(o.subject, o.event) for o in outgoing]


def test_a_warm_standby_takes_over_with_every_allocation_and_decides_as_a_cold_one() -> None:
    active = Decider()
    warm, cold = Decider(), Decider()
    world = CONFIGURATION + workload(60)
    decided = active.observe_many((event, None) for event in world)
    active.activate()
    for standby in (warm, cold):
        follow(standby, world, decided)
    warm.warm()
    before = held(active)

    # the active replica decides some more, then dies before deciding the last changes
    more = [service("late-1"), service_deleted("svc-7")]
    decided_more = active.observe_many((event, None) for event in more)
    unanswered = [service("late-2"), service_deleted("svc-8"), service("svc-9", annotations={
        "metallb.io/loadBalancerIPs": "10.50.0.200"})]
    for standby in (warm, cold):
        follow(standby, more + unanswered, decided_more)
    warm.warm()

    taken_over = {name: standby.activate() for name, standby in (("warm", warm), ("cold", cold))}

    assert decisions(taken_over["warm"]) == decisions(taken_over["cold"])
    assert held(warm) == held(cold)
    kept = {key: ips for key, ips in before.items() if key not in {"default/svc-7", "default/svc-8", "default/svc-9"}}
    assert {key: held(warm)[key] for key in kept} == kept, "an address moved on taking over"
    allocated = {o.event.service.name: o.event.ips for o in taken_over["warm"] if isinstance(o.event, IPAllocated)}
    assert allocated.keys() == {"late-2", "svc-9"}
    assert allocated["svc-9"] == ("10.50.0.200",)


def test_a_warm_standby_whose_pools_changed_takes_over_from_scratch() -> None:
    active = Decider()
    warm, cold = Decider(), Decider()
    world = CONFIGURATION + workload(20)
    decided = active.observe_many((event, None) for event in world)
    for standby in (warm, cold):
        follow(standby, world, decided)
    warm.warm()
    narrower = [pool("lan", "10.50.0.0/28", "fd00:50::/120", version="2")]  # observed, never decided
    for standby in (warm, cold):
        follow(standby, narrower, [])

    assert decisions(warm.activate()) == decisions(cold.activate())
    assert held(warm) == held(cold)


def test_a_prefer_dual_stack_service_gains_its_second_family_on_a_warm_takeover_as_on_a_cold_one() -> None:
    """Deciding it again depends on what is free elsewhere: its adoption is never taken as settled."""
    active = Decider()
    warm, cold = Decider(), Decider()
    world: list[Event] = [
        pool("lan", "10.50.0.0/24", "fd00:50::/127"),  # two IPv6 addresses
        *(service(f"v6-{i}", ip_families=("IPv6",)) for i in range(2)),
        service("both", ip_families=("IPv4", "IPv6"), ip_family_policy="PreferDualStack"),
    ]
    decided = active.observe_many((event, None) for event in world)
    assert held(active)["default/both"] == ("10.50.0.0",)
    for standby in (warm, cold):
        follow(standby, world, decided)
    warm.warm()
    gone = [service_deleted("v6-0")]  # never decided: an IPv6 address is free once taking over releases it
    for standby in (warm, cold):
        follow(standby, gone, [])

    assert decisions(warm.activate()) == decisions(cold.activate())
    assert held(warm) == held(cold)
    assert len(held(warm)["default/both"]) == 2


def test_keeping_warm_again_looks_only_at_the_services_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    active, standby = Decider(), Decider()
    world = CONFIGURATION + workload(30)
    decided = active.observe_many((event, None) for event in world)
    follow(standby, world, decided)
    parsed: list[str] = []
    checked: list[str] = []
    parse, still = standby._parse_with, WarmAllocator._still

    def parsing(observed: ServiceObserved, labels: dict[str, str]) -> ParsedService:
        parsed.append(observed.ref.name)
        return parse(observed, labels)

    def checking(key: str, adopted: Adopted, ledger: Ledger, world: World) -> bool:
        checked.append(key)
        return still(key, adopted, ledger, world)

    monkeypatch.setattr(standby, "_parse_with", parsing)
    monkeypatch.setattr(WarmAllocator, "_still", staticmethod(checking))
    standby.warm()
    assert len(parsed) == 30  # the first time, every allocation
    parsed.clear()
    standby.warm()
    assert parsed == [] and checked == []  # nothing changed: nothing looked at (not 50 000 checks a call)
    changed = [service("svc-4", annotations={"metallb.io/loadBalancerIPs": "10.50.0.201"}), service("late-1")]
    decided_more = active.observe_many((event, None) for event in changed)
    follow(standby, changed, decided_more)
    standby.warm()
    assert sorted(parsed) == ["late-1", "svc-4"] and checked == ["default/svc-4"]
    assert standby.ledger.allocations["default/svc-4"].ips == ("10.50.0.201",)
    cold = Decider()
    follow(cold, world + changed, decided + decided_more)
    assert decisions(standby.activate()) == decisions(cold.activate())  # and it takes over as a cold one


def shown(event: Event, ips: tuple[str, ...]) -> ServiceObserved:
    """``event`` as the status writer's write of ``ips`` makes it: a new version that shows its addresses."""
    assert isinstance(event, ServiceObserved)
    return event.model_copy(update={"ingress_ips": ips, "ref": event.ref.model_copy(update={"resource_version": "9"})})


def test_a_status_written_is_not_adopted_again_and_takes_over_as_a_cold_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every status the writer makes comes back as a Service that shows more: what was adopted holds."""
    active, standby = Decider(), Decider()
    world = CONFIGURATION + workload(20)
    decided = active.observe_many((event, None) for event in world)
    follow(standby, world, decided)
    standby.warm()
    parsed: list[str] = []
    parse = standby._parse_with

    def parsing(observed: ServiceObserved, labels: dict[str, str]) -> ParsedService:
        parsed.append(observed.ref.name)
        return parse(observed, labels)

    monkeypatch.setattr(standby, "_parse_with", parsing)
    echoes = [shown(event, active.ledger.allocations[f"default/{event.ref.name}"].ips)
              for event in world if isinstance(event, ServiceObserved)]
    assert active.observe_many((echo, None) for echo in echoes) == []
    follow(standby, echoes, [])
    standby.warm()
    assert parsed == []
    newest = {f"default/{echo.ref.name}": echo for echo in echoes}
    warm_allocator = standby._warm_allocator
    assert warm_allocator is not None
    assert all(adopted.service is standby.world.services[key] for key, adopted in warm_allocator.adopted.items())
    assert all(standby.world.services[key].ingress_ips == echo.ingress_ips for key, echo in newest.items())
    cold = Decider()
    follow(cold, world + echoes, decided)
    assert decisions(standby.activate()) == decisions(cold.activate()) == []
