"""The BGP agent takes the configuration in force from the ipam's parts, however many there are."""

from __future__ import annotations

from schemas.events import ConfigurationEvaluated, ConfigurationPart
from services.announcer.agents.bgp_inputs import BgpInputs
from services.ipam.decider import Decider
from tests.large_config import large_configuration


def test_the_agent_assembles_a_huge_configuration_in_force_from_its_parts() -> None:
    decider = Decider()
    for obj in large_configuration(peers=5000, pools=2000):
        decider.load_observation(obj)
    recorded = [o.event for o in decider.activate() if isinstance(o.event, ConfigurationPart | ConfigurationEvaluated)]
    assert len(recorded) > 2
    world = BgpInputs(node="node1")
    changed = [world.apply(event) for event in recorded]
    assert changed[-1] and not any(changed[:-1]), "parts alone change nothing; the evaluation puts them in force"
    assert world.in_force is not None and len(world.in_force) == 7000
    assert len(world.configuration.peers) == 5000
