"""Messages off the wire → what callers handle: one total reader per kind of message.

- :func:`read_stream_message` for a JetStream message (consumers, followers, reads, replays): body and
  trace context headers, into a :class:`Received`.
- :func:`read_heartbeat` for an announcer heartbeat (a plain NATS message): subject and body.
- :func:`read_connection_closed` for the server's advisory that a client connection closed.

Each answers the value or a ``Refused`` with the reason, never raises, and counts what it refuses in
``metalbus_inputs_refused_total{component,reason}``; the caller only chooses between dropping the
message and dead-lettering it — except for an event of a newer schema on a stream that fails closed, which
:func:`stop_at_newer_schema` turns into a stop (every reader calls it first). A refused trace context is
counted and ignored: the message is still handled, in a trace of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from nats.aio.msg import Msg
from pydantic import ValidationError

from schemas.advisories import ClientDisconnected
from schemas.events import AnnouncerHeartbeat, DataPlaneReported, Event, RollCall
from schemas.events.codec import read_envelope
from schemas.refusal import DropReason, Refused
from services.common.errors import NewerSchema
from services.common.metrics import INPUTS_REFUSED, STOPPED_ON_NEWER_SCHEMA
from services.common.records import Received
from services.common.subjects import (
    CONNECTIONS_CLOSED,
    ROLL_CALL,
    StreamName,
    read_dataplane_subject,
    read_heartbeat_subject,
    stream_spec,
)
from services.common.tracing import TRACE_CONTEXT_HEADERS, read_trace_context

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=Event)


def refused(refusal: Refused, *, component: str, subject: str) -> Refused:
    """Count and log one refusal; returns it."""
    INPUTS_REFUSED.labels(component=component, reason=refusal.reason.value).inc()
    log.debug("input refused component=%s subject=%r reason=%s message=%s", component, subject[:200],
              refusal.reason.value, refusal.message)
    return refusal


def read_received(
    *,
    subject: str,
    sequence: int,
    data: bytes,
    headers: Mapping[str, str] | None,
    component: str,
    num_delivered: int = 1,
    time: datetime | None = None,
) -> Received | Refused:
    """One stream message, from its parts (for messages not read as a ``Msg``, e.g. a direct get)."""
    envelope = read_envelope(data)
    if isinstance(envelope, Refused):
        return refused(envelope, component=component, subject=subject)
    kept = {name: value for name, value in (headers or {}).items() if name not in TRACE_CONTEXT_HEADERS}
    trace_context = read_trace_context(headers)
    if isinstance(trace_context, Refused):
        refused(trace_context, component=component, subject=subject)
    else:
        kept.update(trace_context)
    return Received(subject=subject, sequence=sequence, envelope=envelope, headers=kept,
                    num_delivered=num_delivered, time=time)


def read_stream_message(message: Msg, *, component: str) -> Received | Refused:
    """One message delivered by a JetStream consumer."""
    metadata = message.metadata
    return read_received(
        subject=message.subject,
        sequence=metadata.sequence.stream,
        data=message.data,
        headers=message.headers,
        component=component,
        num_delivered=metadata.num_delivered,
        time=metadata.timestamp,
    )


def stop_at_newer_schema(stream: StreamName, refusal: Refused, *, subject: str, sequence: int,
                         component: str) -> None:
    """Raise :class:`NewerSchema` when ``refusal`` is an event of a newer schema than this build's on a stream
    that fails closed (``StreamSpec.fails_closed``): the reader stops at it, loudly (an error logged, the
    gauge ``metalbus_stopped_on_newer_schema`` set), rather than skip or dead-letter it. Anything else
    returns, for the caller to drop or dead-letter as before."""
    if refusal.reason is not DropReason.NEWER_SCHEMA or not stream_spec(stream).fails_closed:
        return
    stop = NewerSchema(stream.value, sequence, subject, refusal.message)
    STOPPED_ON_NEWER_SCHEMA.labels(component=component, stream=stream.value).set(1)
    log.error("reader stopped at a newer schema component=%s stream=%s sequence=%d subject=%s detail=%s",
              component, stream.value, sequence, subject[:200], refusal.message)
    raise stop


def read_heartbeat(subject: str, data: bytes, *, component: str) -> AnnouncerHeartbeat | Refused:
    """An announcer's heartbeat: a valid ``AnnouncerHeartbeat`` body on the subject of the node it
    names (only an announcer's own subject speaks for its node)."""
    node = read_heartbeat_subject(subject)
    if isinstance(node, Refused):
        return refused(node, component=component, subject=subject)
    event = _read_plain(data, AnnouncerHeartbeat, component=component, subject=subject)
    if isinstance(event, Refused):
        return event
    if event.node != node:
        return refused(Refused(DropReason.NODE_MISMATCH, f"node {event.node!r} on {subject!r}"),
                       component=component, subject=subject)
    return event


def read_roll_call(data: bytes, *, component: str) -> RollCall | Refused:
    """A roll call (only ipam and the operator may publish one; still read as any input)."""
    return _read_plain(data, RollCall, component=component, subject=ROLL_CALL)


def _read_plain(data: bytes, expected: type[_E], *, component: str, subject: str) -> _E | Refused:
    """A plain (not stored) message's body: an ``expected`` event, or why not (counted)."""
    envelope = read_envelope(data)
    if isinstance(envelope, Refused):
        return refused(envelope, component=component, subject=subject)
    event = envelope.event
    if not isinstance(event, expected):
        return refused(Refused(DropReason.WRONG_EVENT, f"{event.type} on {subject!r}, not {expected.__name__}"),
                       component=component, subject=subject)
    return event


def read_dataplane_report(received: Received, *, component: str) -> DataPlaneReported | Refused:
    """A node's data-plane report, on the subject of the node it names (a node may write only its own)."""
    node = read_dataplane_subject(received.subject)
    if isinstance(node, Refused):
        return refused(node, component=component, subject=received.subject)
    event = received.event
    if not isinstance(event, DataPlaneReported):
        return refused(Refused(DropReason.WRONG_EVENT, f"{type(event).__name__} on a data-plane subject"),
                       component=component, subject=received.subject)
    if event.node != node:
        return refused(Refused(DropReason.NODE_MISMATCH, f"node {event.node!r} on {received.subject!r}"),
                       component=component, subject=received.subject)
    return event


def read_connection_closed(data: bytes, *, component: str) -> ClientDisconnected | Refused:
    """The server's advisory that a client connection closed (on ``connections.closed``)."""
    if len(data) > _MAX_ADVISORY_BYTES:
        return refused(Refused(DropReason.TOO_LARGE, f"{len(data)} bytes"), component=component,
                       subject=CONNECTIONS_CLOSED)
    try:
        return ClientDisconnected.model_validate_json(data)
    except ValidationError as error:
        reason = DropReason.NOT_JSON if any(e["type"] == "json_invalid" for e in error.errors()) \
            else DropReason.WRONG_SHAPE
        return refused(Refused(reason, str(error)), component=component, subject=CONNECTIONS_CLOSED)


#: An advisory is about a kilobyte; more is not the server's.
_MAX_ADVISORY_BYTES = 64 * 1024
