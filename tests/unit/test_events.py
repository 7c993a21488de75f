"""The event contract: envelopes round-trip, hostile bodies are refused with a reason, schemas are current."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import generate
from schemas.events import (
    EVENT_TYPES,
    AllocationFailed,
    IPAllocated,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    ServiceId,
    ServiceObserved,
    ServicePort,
)
from schemas.events.codec import InvalidEvent, decode, encode, wrap

SERVICE = ServiceObserved(
    ref=ObjectRef(namespace="default", name="web", uid="u-1", resource_version="42"),
    service_type="LoadBalancer",
    annotations={"metallb.io/address-pool": "lan"},
    ports=(ServicePort(protocol="TCP", port=80),),
    ip_families=("IPv4", "IPv6"),
    ip_family_policy="PreferDualStack",
)


def test_envelope_round_trip_keeps_payload_and_header() -> None:
    envelope = wrap(SERVICE, producer="watcher/w-1", causation_id=None)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert isinstance(decoded.event, ServiceObserved)
    assert decoded.schema_version == 1
    assert decoded.producer == "watcher/w-1"


def test_causation_links_a_decision_to_its_observation() -> None:
    observed = wrap(SERVICE, producer="watcher/w-1")
    decision = wrap(
        IPAllocated(service=ServiceId(namespace="default", name="web"), ips=("10.0.0.1",), pool="lan",
                    reason="lowest free address of pool lan"),
        producer="ipam/i-1",
        causation_id=observed.event_id,
    )
    assert decode(encode(decision)).causation_id == observed.event_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b"{}", "schema_version"),
        (json.dumps({"schema_version": 1, "event_id": "e", "time": "2026-01-01T00:00:00Z", "producer": "p",
                     "event": {"type": "NoSuchEvent"}}).encode(), "does not match any of the expected tags"),
        (json.dumps({"schema_version": 1, "event_id": "e", "time": "2026-01-01T00:00:00Z", "producer": "p",
                     "event": {"type": "ObjectDeleted", "kind": "service", "name": "x", "surprise": 1}}).encode(),
         "Extra inputs are not permitted"),
        (json.dumps({"schema_version": 1, "event_id": "e", "time": "2026-01-01T00:00:00Z", "producer": "p",
                     "event": {"type": "ObjectDeleted", "kind": "pod", "name": "x"}}).encode(), "kind"),
    ],
)
def test_invalid_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        decode(body)


def test_a_newer_schema_version_is_refused_not_misread() -> None:
    envelope = wrap(ObjectDeleted(kind=ObjectKind.SERVICE, name="x"), producer="p")
    body = json.loads(encode(envelope))
    body["schema_version"] = 99
    with pytest.raises(InvalidEvent, match="newer"):
        decode(json.dumps(body).encode())


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_another_exception(body: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        decode(body)


def test_failure_event_requires_a_machine_reason_and_a_message() -> None:
    with pytest.raises(ValueError):
        AllocationFailed(service=ServiceId(namespace="a", name="b"), reason="", message="")


def test_every_event_type_has_a_distinct_type_name() -> None:
    names = [event_type.model_fields["type"].default for event_type in EVENT_TYPES]
    assert len(names) == len(set(names))
    assert all(name == event_type.__name__ for name, event_type in zip(names, EVENT_TYPES, strict=True))


def test_json_schemas_are_current() -> None:
    stale = generate.stale_files()
    assert stale == [], f"regenerate with `python -m schemas.generate`: {stale}"
