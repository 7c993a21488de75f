"""Make the ``K8S`` stream hold what a projection wants: read back, diff, publish, tombstone.

Shared by every source of observed state — the Kubernetes reflectors and the directory source
(``services/watcher/files``) — so both put the same events, ids and tombstones on the bus.

Each published event is a PRODUCER span of its own, ``observe <Kind> <namespace>/<name>``, the root of
the trace that one Kubernetes change becomes: its context rides in the message's headers to the ipam's
decision, the announcer's announcement and the watcher's status write.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence

from opentelemetry import context, trace

from schemas.events import (
    CONFIG_KINDS,
    ConfigObjectObserved,
    EndpointsObserved,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
)
from schemas.refusal import Refused
from services.common.bus import Bus, Header, PublishItem
from services.common.errors import Conflict
from services.common.inbound import refused
from services.common.subjects import k8s_kind_filter, observed_stream, read_k8s_subject
from services.common.tracing import span_headers, tracer
from services.watcher.observe import metrics
from services.watcher.observe.oversized import OversizedObject, WarnOversized, oversized, report
from services.watcher.observe.projection import Projection
from services.watcher.observe.translate import Identity, Observation, stored_identity

log = logging.getLogger(__name__)

#: Stored values decoded per fetch when reading back (the loop does not turn while a fetch is decoded).
READ_BATCH = 250

#: The Kubernetes kind each observed kind comes from (EndpointSlices are folded per Service).
KUBERNETES_KINDS: dict[ObjectKind, str] = {
    ObjectKind.SERVICE: "Service",
    ObjectKind.ENDPOINTS: "EndpointSlice",
    ObjectKind.NODE: "Node",
    ObjectKind.NAMESPACE: "Namespace",
    ObjectKind.SECRET: "Secret",
    ObjectKind.KUBE_PROXY: "ConfigMap",
    **{kind: name for name, kind in CONFIG_KINDS.items()},
}


class ProjectionPublisher:
    """What one projection's subjects hold on the stream (as far as we know) and how to change it."""

    def __init__(
        self, *, projection: Projection, bus: Bus, publish_chunk: int = 1000, warn: WarnOversized | None = None
    ) -> None:
        self.projection = projection
        self.bus = bus
        self.publish_chunk = publish_chunk
        self._warn = warn
        self.stored: dict[str, Identity] = {}
        #: The stream sequence of each subject's newest message as this watcher knows it: every publish is fenced
        #: on it (``Nats-Expected-Last-Subject-Sequence``), so a watcher that lost its leadership cannot overwrite
        #: what the new leader published since it last read or wrote (0: the subject must not exist).
        self.sequences: dict[str, int] = {}
        self._kind = projection.kind.value
        self._tracer = tracer(__name__)

    async def read_stored(self) -> None:
        """Take what the stream holds now (last value per subject of this kind) as known."""
        stored: dict[str, Identity] = {}
        sequences: dict[str, int] = {}
        async for received in self.bus.read(
            observed_stream(self.projection.kind), subjects=[k8s_kind_filter(self.projection.kind)],
            last_per_subject=True, batch=READ_BATCH,
        ):
            if isinstance(subject := read_k8s_subject(received.subject), Refused):
                refused(subject, component=self.bus.component, subject=received.subject)
                continue  # not a subject the watcher writes: nothing to compare with or tombstone
            sequences[received.subject] = received.sequence
            identity = stored_identity(received.event)
            if identity is not None:
                stored[received.subject] = identity
        self.stored, self.sequences = stored, sequences

    def all_subjects(self) -> list[str]:
        """Every subject the projection wants or the stream holds, sorted. The projection's come in the
        list's order, nearly sorted already, which the sort takes in runs: 5 ms for 50 000 Services, where
        sorting their set (hash order) held the loop 30 to 100 ms in one piece."""
        subjects = list(self.projection.subjects())
        wanted = set(subjects)
        subjects += (subject for subject in self.stored if subject not in wanted)
        subjects.sort()
        return subjects

    def changes(self, subjects: Iterable[str], *, trigger: str) -> list[Observation]:
        """What to publish so that ``subjects`` hold what the projection wants, in order; the
        stream is taken to hold it from now on (a failed publish means re-reading the stream)."""
        batch: list[Observation] = []
        for subject in dict.fromkeys(subjects):
            have = self.stored.get(subject)
            if have is not None and have == self.projection.desired_identity(subject):
                continue  # the stream holds it already: the value is never made (a relist of 50 000 Services)
            want = self.projection.desired(subject)
            if want is None and have is not None and not have.deleted:
                want = self.projection.tombstone(subject, have, trigger)
            if want is not None and have != want.identity:
                if have is not None and have.deleted:
                    # back after a tombstone (a Secret referenced again): the stream may still remember the
                    # id it was first published with, and would drop the message as a repeat
                    want = dataclasses.replace(want, msg_id=f"{want.msg_id}@{trigger}")
                batch.append(want)
                self.stored[subject] = want.identity
        return batch

    async def publish(self, batch: Sequence[Observation], *, msg_id_suffix: str = "") -> None:
        """Publish ``batch`` in chunks. ``msg_id_suffix`` makes ids unique per change for a source
        whose versions can repeat (a file edited back to an earlier content)."""
        if msg_id_suffix:
            batch = [dataclasses.replace(o, msg_id=f"{o.msg_id}@{msg_id_suffix}") for o in batch]
        for part in _fenceable_parts(batch, self.publish_chunk):
            await self._publish_chunk(part)

    async def _publish_chunk(self, part: Sequence[Observation]) -> None:
        spans = [self._span(o) for o in part]
        skipped: list[OversizedObject] = []
        by_subject = {o.subject: o for o in part}

        left_out: set[str] = set()

        def too_large(item: PublishItem, size: int, limit: int) -> None:
            skipped.append(oversized(by_subject[item[0]], size, limit))
            left_out.add(item[0])

        fence = Header.EXPECTED_LAST_SUBJECT_SEQUENCE
        try:
            published = await self.bus.publish_many(
                ((o.subject, o.event, o.msg_id, {**span_headers(span), fence: str(self.sequences.get(o.subject, 0))})
                 for o, span in zip(part, spans, strict=True)),
                too_large=too_large,
            )
        except Exception as error:
            if isinstance(error, Conflict):
                log.warning("observations refused, another leader wrote since this watcher read the stream "
                            "kind=%s error=%s", self._kind, error)
            for span in spans:
                span.record_exception(error)
                span.set_status(trace.StatusCode.ERROR, repr(error))
            raise
        finally:
            for span in spans:
                span.end()
        for observation, landed in zip((o for o in part if o.subject not in left_out), published, strict=True):
            self.sequences[observation.subject] = landed.sequence
        metrics.EVENTS_PUBLISHED.labels(self._kind).inc(len(part) - len(skipped))
        for found in skipped:
            await self._skip(found)

    async def _skip(self, found: OversizedObject) -> None:
        """An object too large for the bus: the stream keeps its last value; say so where users look."""
        report(found)
        if self._warn is not None:
            await self._warn(found)

    def _span(self, observation: Observation) -> trace.Span:
        """A new trace for one observed change (never a child of whatever else is going on)."""
        name, attributes = observed_span(self.projection.kind, observation)
        return self._tracer.start_span(
            name, context=context.Context(), kind=trace.SpanKind.PRODUCER, attributes=attributes
        )


def _fenceable_parts(batch: Sequence[Observation], size: int) -> list[Sequence[Observation]]:
    """``batch`` in parts of at most ``size``, none naming a subject twice: each publish is fenced on its subject's
    sequence, which a second publish of the subject in the same part could only guess (a watch brings two
    versions of one object together)."""
    parts: list[Sequence[Observation]] = []
    start, subjects = 0, set[str]()
    for index, observation in enumerate(batch):
        if observation.subject in subjects or index - start == size:
            parts.append(batch[start:index])
            start, subjects = index, set()
        subjects.add(observation.subject)
    if start < len(batch):
        parts.append(batch[start:])
    return parts


def observed_span(kind: ObjectKind, observation: Observation) -> tuple[str, dict[str, str | bool]]:
    """Name (``observe <Kind> <namespace>/<name>``) and attributes of the span of one observed change."""
    event = observation.event
    ref = getattr(event, "ref", None)
    attributes: dict[str, str | bool] = {
        "messaging.system": "nats",
        "messaging.destination.name": observation.subject,
        # an object's own; for a fold (endpoints) the identity's content hash
        "k8s.resource_version": ref.resource_version if isinstance(ref, ObjectRef) else observation.identity.version,
    }
    kind_name = KUBERNETES_KINDS.get(kind, kind.value)
    if isinstance(event, ObjectDeleted):
        namespace, name = event.namespace, event.name
        attributes["k8s.deleted"] = True
    elif isinstance(event, EndpointsObserved):
        namespace, name = event.namespace, event.service
    else:
        namespace, name = (ref.namespace, ref.name) if isinstance(ref, ObjectRef) else ("", "")
        if isinstance(event, ConfigObjectObserved):
            kind_name = event.kind
    attributes.update({"k8s.kind": kind_name, "k8s.namespace.name": namespace, "k8s.object.name": name})
    if kind in (ObjectKind.SERVICE, ObjectKind.ENDPOINTS):
        attributes["metalbus.service"] = f"{namespace}/{name}"
    elif kind is ObjectKind.NODE:
        attributes["metalbus.node"] = name
    elif kind is ObjectKind.IP_ADDRESS_POOL:
        attributes["metalbus.pool"] = name
    return f"observe {kind_name} {namespace}/{name}" if namespace else f"observe {kind_name} {name}", attributes

