"""Every build reads the log release v0.1.0 wrote (``tests/fixtures/golden/``) to the same state, decides nothing
new on it, and would still do so after an event gains a field (its version bumped, an upcaster added)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import create_model

from schemas.events import EVENT_TYPES
from schemas.events import upcasting as upcasting_module
from schemas.events.base import Event
from schemas.events.codec import read_envelope
from schemas.events.upcasting import up_to_date
from schemas.refusal import Refused
from tests.golden_log import LIVE_AT_END, RELEASE, fold, read_log, read_state, state_of


def test_the_golden_log_reads_back_to_the_state_it_was_written_with() -> None:
    assert state_of(fold(read_log())) == read_state()


def test_taking_over_on_the_golden_log_decides_nothing_new() -> None:
    """What v0.1.0 decided stands: no address, placement or advertisement moves because a later build read it."""
    decider = fold(read_log())
    decider.adopt()
    assert decider.start_placing(LIVE_AT_END) == []
    assert state_of(decider) == read_state()


def _with_a_new_field(event_type: type[Event]) -> type[Event]:
    """``event_type`` as a later release might make it: one more field, the version bumped, an upcaster from the
    current version that fills the field in."""
    version = event_type.version

    def upcast(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "added_later": "filled by the upcaster"}

    later: type[Event] = create_model(f"{event_type.__name__}Later", __base__=event_type, added_later=(str, ...))
    later.version = version + 1
    later.upcasters = {**event_type.upcasters, version: upcast}
    return later


def _written_types() -> list[type[Event]]:
    written: set[type[Event]] = set()
    for line in read_log():
        envelope = read_envelope(line.body)
        assert not isinstance(envelope, Refused), envelope
        written.add(type(envelope.event))
    return sorted(written, key=lambda t: t.__name__)


@pytest.mark.parametrize("event_type", _written_types(), ids=lambda t: t.__name__)
def test_after_an_event_gains_a_field_the_golden_log_still_reads(
    event_type: type[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    later = _with_a_new_field(event_type)
    name = event_type.model_fields["type"].default
    monkeypatch.setitem(upcasting_module._TYPES, name, later)
    bodies = [json.loads(line.body) for line in read_log() if json.loads(line.body)["event"]["type"] == name]
    assert bodies, f"{RELEASE} wrote no {name}"
    for body in bodies:
        current = up_to_date(body)
        assert isinstance(current, dict) and current["schema_version"] == later.version
        read = later.model_validate(current["event"])
        assert read.added_later == "filled by the upcaster"  # type: ignore[attr-defined]
        original = event_type.model_validate(body["event"])
        assert {k: v for k, v in read.model_dump().items() if k != "added_later"} == original.model_dump()


def test_every_event_type_the_decisions_need_is_in_the_golden_log() -> None:
    written = {json.loads(line.body)["event"]["type"] for line in read_log()}
    decisions = {"IPAllocated", "IPReleased", "AllocationFailed", "L2PlacementDecided", "L2PlacementCleared",
                 "BGPAdvertisementDecided", "ConfigurationEvaluated", "ConfigurationPart", "PoolUsageReported"}
    assert decisions <= written, decisions - written
    assert written <= {t.model_fields["type"].default for t in EVENT_TYPES}
