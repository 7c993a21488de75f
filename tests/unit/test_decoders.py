"""Every decoder of bus input is total: hostile subjects, bodies and headers get a reason, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import AnnouncerHeartbeat, DataPlaneReported, Envelope, ObjectKind
from schemas.events.codec import MAX_BODY_BYTES, encode, read_envelope, wrap
from schemas.refusal import MESSAGE_LIMIT, DropReason, Refused
from services.common.inbound import read_dataplane_report, read_heartbeat, read_received
from services.common.subjects import (
    MAX_SUBJECT_LENGTH,
    dataplane_subject,
    encode_token,
    heartbeat_subject,
    k8s_subject,
    read_heartbeat_subject,
    read_k8s_subject,
    read_token,
)
from services.common.tracing import read_trace_context

#: Text as hostile as it comes: every code point but lone surrogates (which no NATS subject or JSON
#: text can carry), control characters included.
hostile_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
tokenish = st.text(alphabet="%_.:-aZ09FfGCc\xff\u00e9\r\n *>", max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)


def _is_bounded(refused: Refused) -> bool:
    return len(refused.message) <= MESSAGE_LIMIT and refused.message.isprintable()


@given(st.one_of(tokenish, hostile_text))
def test_any_token_is_read_back_or_refused_with_a_reason(token: str) -> None:
    value = read_token(token)
    if isinstance(value, Refused):
        assert value.reason is DropReason.BAD_TOKEN and _is_bounded(value)
    else:
        assert encode_token(value) == token  # only what encode_token writes is read


@pytest.mark.parametrize("token", ["%FF", "%", "%G0", "%C3", "a%2", "", "%e9", "%41", "é", "x" * 3000])
def test_tokens_metalbus_never_writes_are_refused(token: str) -> None:
    assert isinstance(read_token(token), Refused)


@given(st.lists(st.one_of(tokenish, st.sampled_from(["heartbeat", "announcer", "k8s", "service", "_"])),
                max_size=6))
def test_any_subject_names_a_node_or_an_object_or_is_refused(tokens: list[str]) -> None:
    subject = ".".join(tokens)
    node = read_heartbeat_subject(subject)
    assert isinstance(node, Refused) or heartbeat_subject(node) == subject
    parsed = read_k8s_subject(subject)
    assert isinstance(parsed, Refused) or k8s_subject(*parsed) == subject


@given(hostile_text, hostile_text)
def test_names_round_trip_through_subjects(namespace: str, name: str) -> None:
    """Any name comes back exactly, unless its subject is longer than any Kubernetes name could make it:
    then it is refused (bounded), never misread."""
    subject = k8s_subject(ObjectKind.SERVICE, namespace, name)
    parsed = read_k8s_subject(subject)
    if len(subject) > MAX_SUBJECT_LENGTH:
        assert isinstance(parsed, Refused) and parsed.reason is DropReason.BAD_SUBJECT and _is_bounded(parsed)
    else:
        assert parsed == (ObjectKind.SERVICE, namespace, name)
    if name and len(heartbeat_subject(name)) <= MAX_SUBJECT_LENGTH:
        assert read_heartbeat_subject(heartbeat_subject(name)) == name


@given(st.binary(max_size=2048))
def test_any_bytes_are_an_envelope_or_refused(body: bytes) -> None:
    envelope = read_envelope(body)
    assert isinstance(envelope, Envelope) or _is_bounded(envelope)


@given(json_values)
def test_any_json_is_an_envelope_or_refused_as_the_wrong_shape(value: Any) -> None:
    envelope = read_envelope(json.dumps(value).encode())
    assert isinstance(envelope, Refused) and envelope.reason is DropReason.WRONG_SHAPE and _is_bounded(envelope)


@given(st.dictionaries(hostile_text, json_values, max_size=4), hostile_text)
def test_hostile_fields_inside_an_event_are_refused_with_a_printable_reason(extra: dict[str, Any], kind: str) -> None:
    body = json.loads(encode(wrap(AnnouncerHeartbeat(node="a", instance="i", sequence=1), producer="p")))
    body["event"].update(extra)
    body["event"]["type"] = kind
    envelope = read_envelope(json.dumps(body).encode())
    assert isinstance(envelope, Refused) and _is_bounded(envelope)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", DropReason.NOT_JSON),
        (b"[" * 100_000, DropReason.TOO_DEEP),
        (b'{"a":' * 50_000, DropReason.TOO_DEEP),
        (b" " * (MAX_BODY_BYTES + 1), DropReason.TOO_LARGE),
        (b'"\\ud800"', DropReason.NOT_JSON),  # a lone surrogate
        (b"{}", DropReason.WRONG_SHAPE),
    ],
)
def test_bodies_are_refused_for_what_is_wrong_with_them(body: bytes, reason: DropReason) -> None:
    refused = read_envelope(body)
    assert isinstance(refused, Refused) and refused.reason is reason


@given(st.dictionaries(st.sampled_from(["traceparent", "tracestate", "Nats-Msg-Id", "x"]),
                       st.one_of(hostile_text, st.text(alphabet="0123456789abcdef-", max_size=60)), max_size=4))
def test_trace_context_headers_are_w3c_or_refused(headers: dict[str, str]) -> None:
    context = read_trace_context(headers)
    if isinstance(context, Refused):
        assert context.reason is DropReason.BAD_TRACE_CONTEXT and _is_bounded(context)
    else:
        assert set(context) <= {"traceparent", "tracestate"}


def test_a_received_message_keeps_its_body_and_loses_only_a_garbage_trace_context() -> None:
    body = encode(wrap(AnnouncerHeartbeat(node="a", instance="i", sequence=1), producer="p"))
    received = read_received(subject="s", sequence=3, data=body, component="test",
                             headers={"traceparent": "\r\ngarbage", "Nats-Msg-Id": "m"})
    assert not isinstance(received, Refused)
    assert received.headers == {"Nats-Msg-Id": "m"}


@given(st.one_of(tokenish, hostile_text), st.binary(max_size=300))
def test_any_heartbeat_message_is_a_heartbeat_or_refused(token: str, body: bytes) -> None:
    heard = read_heartbeat(f"heartbeat.announcer.{token}", body, component="test")
    assert isinstance(heard, Refused | AnnouncerHeartbeat)


def test_a_heartbeat_speaks_only_for_the_node_of_its_subject() -> None:
    body = encode(wrap(AnnouncerHeartbeat(node="a.b", instance="i", sequence=1), producer="p"))
    assert read_heartbeat(heartbeat_subject("a.b"), body, component="test") == AnnouncerHeartbeat(
        node="a.b", instance="i", sequence=1)
    refused = read_heartbeat(heartbeat_subject("c"), body, component="test")
    assert isinstance(refused, Refused) and refused.reason is DropReason.NODE_MISMATCH


def test_a_data_plane_report_speaks_only_for_the_node_of_its_subject() -> None:
    report = DataPlaneReported(node="a.b", instance="i", ready=True, interfaces=("eth0",))
    body = encode(wrap(report, producer="p"))

    def read(subject: str, data: bytes = body) -> DataPlaneReported | Refused:
        received = read_received(subject=subject, sequence=1, data=data, component="test", headers={})
        assert not isinstance(received, Refused)
        return read_dataplane_report(received, component="test")

    assert read(dataplane_subject("a.b")) == report
    mismatch = read(dataplane_subject("c"))
    assert isinstance(mismatch, Refused) and mismatch.reason is DropReason.NODE_MISMATCH
    elsewhere = read("announce.a.ip.x")
    assert isinstance(elsewhere, Refused) and elsewhere.reason is DropReason.BAD_SUBJECT
    heartbeat = encode(wrap(AnnouncerHeartbeat(node="a.b", instance="i", sequence=1), producer="p"))
    wrong = read(dataplane_subject("a.b"), heartbeat)
    assert isinstance(wrong, Refused) and wrong.reason is DropReason.WRONG_EVENT
