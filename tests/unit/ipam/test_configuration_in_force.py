"""However large the configuration, every message the ipam writes fits the bus, and the last valid
configuration is recovered from the stream after a restart, even one in the middle of writing it."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.events import ConfigObjectObserved, ConfigurationEvaluated, ConfigurationPart, Event, InForceSlot
from schemas.events.codec import encode, wrap
from schemas.events.in_force import MAX_LISTED_PROBLEMS, MAX_PART_BYTES, InForceParts, split_in_force
from services.ipam.decider import Decider, Outgoing
from tests.builders import pool
from tests.large_config import large_configuration

#: NATS's default max_payload.
MAX_PAYLOAD = 1024 * 1024


def started(world: Iterable[Event], history: Iterable[Outgoing] = ()) -> tuple[Decider, list[Outgoing]]:
    """A replica that replayed ``history`` and observed ``world``, then took over."""
    decider = Decider()
    for out in history:
        decider.load_decision(out.event, out.sequence)
    for event in world:
        decider.load_observation(event)
    return decider, decider.activate()


def evaluation(outgoing: list[Outgoing]) -> ConfigurationEvaluated:
    [evaluated] = [o.event for o in outgoing if isinstance(o.event, ConfigurationEvaluated)]
    return evaluated


def broken(obj: ConfigObjectObserved) -> ConfigObjectObserved:
    """``obj`` edited into something invalid (a new resourceVersion)."""
    raw = {**obj.raw, "spec": {"addresses": ["not-a-cidr"]}}
    return obj.model_copy(update={"raw": raw, "ref": obj.ref.model_copy(update={"resource_version": "2"})})


LARGE = large_configuration(peers=5000, pools=2000)


def test_a_huge_configuration_is_recorded_in_messages_the_bus_accepts() -> None:
    _, outgoing = started(LARGE)
    assert evaluation(outgoing).valid
    sizes = [len(encode(wrap(o.event, producer="ipam/test"))) for o in outgoing]
    assert max(sizes) < MAX_PAYLOAD // 2
    parts = [o.event for o in outgoing if isinstance(o.event, ConfigurationPart)]
    assert sum(len(p.objects) for p in parts) == 7000


def test_a_restart_recovers_the_huge_configuration_in_force_while_the_observed_one_is_invalid() -> None:
    _, history = started(LARGE)
    decider, outgoing = started([*LARGE[1:], broken(LARGE[0])], history)
    evaluated = evaluation(outgoing)
    assert not evaluated.valid and evaluated.problems_total == 1
    assert len([o for o in decider.configuration.objects if o.kind == "IPAddressPool"]) == 2000
    assert len(decider.configuration.objects) == 7000


def test_a_new_configuration_cut_short_leaves_the_one_in_force_whole() -> None:
    first = [pool(f"p{i}", f"10.1.{i}.0/24") for i in range(40)]
    _, history = started(first)
    second = [pool(f"p{i}", f"10.2.{i}.0/24", version="2") for i in range(40)]
    decider = Decider()
    for out in history:
        decider.load_decision(out.event, out.sequence)
    for event in second:
        decider.load_observation(event)
    writing = decider.activate()
    parts = [o for o in writing if isinstance(o.event, ConfigurationPart)]
    assert parts and parts[0].event.slot is InForceSlot.B  # the slot not in force
    # The replica dies after its first part landed; the next one sees the second set broken.
    restarted, outgoing = started([*second[1:], broken(second[0])], [*history, parts[0]])
    assert not evaluation(outgoing).valid
    in_force = restarted.ledger.in_force.objects or ()
    addresses = {raw["metadata"]["name"]: raw["spec"]["addresses"] for raw in in_force}
    assert len(addresses) == 40 and addresses["p7"] == ["10.1.7.0/24"], "the first configuration stays in force"
    assert restarted.configuration.digest == evaluation(history).in_force_generation


def test_thousands_of_problems_are_counted_and_only_the_first_listed() -> None:
    _, history = started([pool("lan", "192.168.0.0/24")])
    bad = [pool(f"bad{i}", "x" * 2000 + str(i)) for i in range(3000)]
    _, outgoing = started([pool("lan", "192.168.0.0/24"), *bad], history)
    evaluated = evaluation(outgoing)
    assert evaluated.problems_total >= 3000
    assert len(evaluated.problems) == MAX_LISTED_PROBLEMS
    assert "more problems" in evaluated.unlisted_problems
    assert len(encode(wrap(evaluated, producer="ipam/test"))) < MAX_PAYLOAD // 2


def test_a_burst_of_configuration_objects_is_evaluated_once() -> None:
    decider, _ = started([])
    outgoing = [out for obj in LARGE[:500] for out in decider.observe(obj, defer_to_batch=True)]
    outgoing += decider.report_usage()
    assert len([o for o in outgoing if isinstance(o.event, ConfigurationEvaluated)]) == 1


def test_parts_reassemble_the_objects_in_order_and_stay_within_their_budget() -> None:
    objects = [o.raw for o in LARGE]
    parts = split_in_force(objects, generation="g1", slot=InForceSlot.A)
    assert all(len(p.model_dump_json()) < MAX_PART_BYTES + 4096 for p in parts)
    folded = InForceParts()
    for part in reversed(parts):
        folded.add(part)
    evaluated = ConfigurationEvaluated(valid=True, in_force_generation="g1", in_force_slot=InForceSlot.A,
                                       in_force_parts=len(parts))
    assert folded.settle(evaluated) == tuple(objects)
    missing = ConfigurationEvaluated(valid=True, in_force_generation="g2", in_force_slot=InForceSlot.B,
                                     in_force_parts=2)
    assert folded.settle(missing) is None and folded.generation == "g1", "an incomplete set is never taken"
