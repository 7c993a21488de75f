"""Logs outlive releases: an event an older release wrote reads as today's model, one a newer release wrote is
refused with the reason, and no body of any version makes the decoder raise."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    AllocationFailed,
    AllocationFailureReason,
    AnnouncerHeartbeat,
    BusConnection,
    Envelope,
    Event,
    EventId,
    ServiceId,
)
from schemas.events.codec import encode, read_envelope, wrap
from schemas.refusal import DropReason, Refused

WEB = ServiceId(namespace="default", name="web", uid="u-1")


def failed_body(*, version: int, reason: Any, **extra: Any) -> bytes:
    """An ``AllocationFailed`` body as a release writing ``version`` would have sent it."""
    current = wrap(
        AllocationFailed(service=WEB, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="pool lan is full"),
        producer="ipam/i-1",
        causation_id=EventId("cause-1"),
    )
    body = json.loads(encode(current))
    body["schema_version"] = version
    body["event"].update(reason=reason, **extra)
    return json.dumps(body).encode()


def test_a_failure_written_by_version_1_reads_with_the_reason_as_a_member() -> None:
    envelope = read_envelope(failed_body(version=1, reason="no_available_ip"))
    assert isinstance(envelope, Envelope)
    assert isinstance(envelope.event, AllocationFailed)
    assert envelope.event.reason is AllocationFailureReason.NO_AVAILABLE_IP
    assert envelope.event.message == "pool lan is full" and envelope.event.service == WEB
    assert (envelope.schema_version, envelope.producer, envelope.causation_id) == (2, "ipam/i-1", "cause-1")


@pytest.mark.parametrize("reason", list(AllocationFailureReason))
def test_every_reason_version_1_spelled_in_snake_case_reads_as_its_member(reason: AllocationFailureReason) -> None:
    envelope = read_envelope(failed_body(version=1, reason=reason.name.lower()))
    assert isinstance(envelope, Envelope) and isinstance(envelope.event, AllocationFailed)
    assert envelope.event.reason is reason


def test_upcasting_is_only_for_older_versions() -> None:
    """A current event spelling a reason the old way is not today's contract: refused, not repaired."""
    refused = read_envelope(failed_body(version=2, reason="no_available_ip"))
    assert isinstance(refused, Refused) and refused.reason is DropReason.WRONG_SHAPE
    assert "event.AllocationFailed.reason" in refused.message


def test_a_version_1_reason_nobody_ever_wrote_is_refused_naming_the_field() -> None:
    refused = read_envelope(failed_body(version=1, reason="no_luck"))
    assert isinstance(refused, Refused) and refused.reason is DropReason.WRONG_SHAPE
    assert refused.message.startswith("event.AllocationFailed.reason:")


def test_a_newer_version_is_refused_as_newer_even_when_its_shape_changed() -> None:
    refused = read_envelope(failed_body(version=3, reason="NoFreeAddress", retry_after_seconds=30))
    assert isinstance(refused, Refused) and refused.reason is DropReason.NEWER_SCHEMA
    assert refused.message == "AllocationFailed schema version 3 is newer than the 2 this build understands"


@pytest.mark.parametrize("version", ["1", 1.5, True, None])
def test_a_version_that_is_not_a_whole_number_reads_as_no_version(version: Any) -> None:
    refused = read_envelope(failed_body(version=version, reason="no_available_ip"))
    assert isinstance(refused, Refused) and refused.reason is DropReason.WRONG_SHAPE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


@given(st.integers(min_value=-2, max_value=4), json_values, st.dictionaries(st.text(max_size=12), json_values,
                                                                            max_size=3))
def test_any_old_or_new_body_is_an_envelope_or_refused(version: int, reason: Any, extra: dict[str, Any]) -> None:
    body = json.loads(failed_body(version=version, reason=reason))
    body["event"].update(extra)
    body["event"]["type"] = "AllocationFailed"
    envelope = read_envelope(json.dumps(body).encode())
    assert isinstance(envelope, Envelope) or envelope.reason in {DropReason.WRONG_SHAPE, DropReason.NEWER_SCHEMA}


def test_a_payload_at_a_new_version_must_say_how_to_read_every_older_one() -> None:
    with pytest.raises(TypeError, match=r"one upcaster from each of the versions 1\.\.2, not from \[1\]"):

        class Renamed(Event):
            version: ClassVar[int] = 3
            upcasters = {1: dict}

            type: Literal["Renamed"] = "Renamed"


def test_a_heartbeat_of_version_1_names_no_connection() -> None:
    body = json.dumps({"schema_version": 1, "event_id": "e1", "time": "2026-12-06T09:00:00Z", "producer": "announcer/a",
                       "event": {"type": "AnnouncerHeartbeat", "node": "a", "instance": "i", "sequence": 3}}).encode()
    envelope = read_envelope(body)
    assert isinstance(envelope, Envelope)
    assert envelope.event == AnnouncerHeartbeat(node="a", instance="i", sequence=3, connection=BusConnection())
