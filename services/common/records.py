"""The records that travel between the bus and its callers: headers, settings, appends, messages."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from nats.js import api

from schemas.events import Envelope, Event, EventId
from services.common.errors import RetryableError, WrongLastSequence
from services.common.nats_errors import is_wrong_last_sequence


class Header(StrEnum):
    """Message headers metalbus reads or writes."""

    MSG_ID = "Nats-Msg-Id"
    EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
    EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
    EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
    ERROR = "Metalbus-Error"
    ORIGINAL_SUBJECT = "Metalbus-Original-Subject"
    ORIGINAL_STREAM = "Metalbus-Original-Stream"
    ORIGINAL_SEQUENCE = "Metalbus-Original-Sequence"


#: What :meth:`Bus.publish_many` takes: (subject, event, msg_id), optionally with the trace headers of
#: that one message (which replace the current context's, so each item of a batch can carry its own span).
PublishItem = tuple[str, Event, str | None] | tuple[str, Event, str | None, Mapping[str, str] | None]

@dataclass(frozen=True, slots=True)
class Published:
    sequence: int
    duplicate: bool
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Append:
    """One fenced append: it must land right after ``expected_last_sequence``."""

    subject: str
    event: Event
    expected_last_sequence: int
    causation_id: EventId | None = None
    trace_headers: dict[str, str] | None = None


class PendingAppends:
    """Fenced appends sent and not yet confirmed: the acks of the first and the last (see
    :meth:`Bus.send_fenced`). Only those two appends are kept, not the others nor what was sent: a takeover
    sends a hundred thousand decisions at once, and their envelopes alone were over 100 MB."""

    def __init__(self, items: Sequence[Append], acks: list[asyncio.Future[api.PubAck]], timeout: float) -> None:
        self._count = len(items)
        self._ends = [items[0], items[-1]][: len(acks)] if items else []  # one item: one ack
        self._acks = acks
        self._timeout = timeout

    def __len__(self) -> int:
        return self._count

    async def confirmed(self) -> range:
        """Wait until every append landed, and say where (their sequences, in order); raise
        :class:`WrongLastSequence` if a fence was refused."""
        if not self._count:
            return range(0)
        try:
            async with asyncio.timeout(self._timeout):
                outcomes = await asyncio.gather(*self._acks, return_exceptions=True)
        except TimeoutError as error:
            raise RetryableError(f"no acknowledgement for {self._count} appends in time") from error
        sequences: list[int] = []
        for item, outcome in zip(self._ends, outcomes, strict=True):
            if is_wrong_last_sequence(outcome):
                raise WrongLastSequence(item.subject, item.expected_last_sequence, outcome.description or "")
            if isinstance(outcome, BaseException):
                raise RetryableError(f"append to {item.subject} failed: {outcome!r}") from outcome
            sequences.append(outcome.seq)
        first = sequences[0]
        if sequences[-1] != first + self._count - 1:  # the fences make this impossible
            raise RetryableError(f"appends landed at {first}..{sequences[-1]}, not one after another")
        return range(first, first + self._count)


@dataclass(frozen=True, slots=True)
class Received:
    """One event read from a stream, with its position."""

    subject: str
    sequence: int
    envelope: Envelope
    headers: dict[str, str] = field(default_factory=dict)
    num_delivered: int = 1
    time: datetime | None = None

    @property
    def event(self) -> Event:
        return self.envelope.event


#: Every client pings its server this often (seconds). The server pings only a client it has heard nothing from
#: within its own ping interval (250 ms as shipped), and cuts one whose pings go unanswered (about 1.25 s): a
#: client that pings keeps its connection while it is busy and its reading lags behind what the server sends
#: (the server's PING waits behind those deliveries), while one that is frozen or dead, and sends nothing, is
#: cut as before — that is how ipam learns at once that an announcer stopped.
KEEPALIVE_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class BusSettings:
    url: str
    #: Stream replicas: 1 for a single server, 3 in a NATS cluster.
    replicas: int = 1
    connect_timeout: float = 2.0
    reconnect_wait: float = 0.5
    request_timeout: float = 5.0
    #: Give up the first connection after this many attempts (0: keep trying for ever).
    initial_attempts: int = 0
    #: The NATS user, when not in the URL (announcers: ``node-<node>``).
    user: str | None = None
    #: A file holding the password, read again at every (re)connection: a rotated credential (an
    #: announcer's projected token) is picked up without a restart.
    password_file: str | None = None
    #: CA bundle that signs the server's certificate, for ``tls://`` URLs.
    tls_ca_file: str | None = None
    #: How often the client pings its server (seconds; ``KEEPALIVE_INTERVAL`` unless told).
    keepalive: float = KEEPALIVE_INTERVAL
