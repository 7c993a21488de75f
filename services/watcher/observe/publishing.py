"""Make the ``K8S`` stream hold what a projection wants: read back, diff, publish, tombstone.

Shared by every source of observed state — the Kubernetes reflectors and the directory source
(``services/watcher/files``) — so both put the same events, ids and tombstones on the bus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from services.common.bus import Bus
from services.common.subjects import StreamName, k8s_kind_filter
from services.watcher.observe import metrics
from services.watcher.observe.projection import Projection
from services.watcher.observe.translate import Identity, Observation, stored_identity


class ProjectionPublisher:
    """What one projection's subjects hold on the stream (as far as we know) and how to change it."""

    def __init__(self, *, projection: Projection, bus: Bus, publish_chunk: int = 1000) -> None:
        self.projection = projection
        self.bus = bus
        self.publish_chunk = publish_chunk
        self.stored: dict[str, Identity] = {}
        self._kind = projection.kind.value

    async def read_stored(self) -> None:
        """Take what the stream holds now (last value per subject of this kind) as known."""
        stored: dict[str, Identity] = {}
        async for received in self.bus.read(
            StreamName.K8S, subjects=[k8s_kind_filter(self.projection.kind)], last_per_subject=True
        ):
            identity = stored_identity(received.event)
            if identity is not None:
                stored[received.subject] = identity
        self.stored = stored

    def all_subjects(self) -> list[str]:
        """Every subject the projection wants or the stream holds, sorted."""
        return sorted(set(self.projection.subjects()) | set(self.stored))

    def changes(self, subjects: Iterable[str], *, trigger: str) -> list[Observation]:
        """What to publish so that ``subjects`` hold what the projection wants, in order; the
        stream is taken to hold it from now on (a failed publish means re-reading the stream)."""
        batch: list[Observation] = []
        for subject in dict.fromkeys(subjects):
            want = self.projection.desired(subject)
            have = self.stored.get(subject)
            if want is None and have is not None and not have.deleted:
                want = self.projection.tombstone(subject, have, trigger)
            if want is not None and have != want.identity:
                batch.append(want)
                self.stored[subject] = want.identity
        return batch

    async def publish(self, batch: Sequence[Observation], *, msg_id_suffix: str = "") -> None:
        """Publish ``batch`` in chunks. ``msg_id_suffix`` makes ids unique per change for a source
        whose versions can repeat (a file edited back to an earlier content)."""
        if msg_id_suffix:
            batch = [dataclasses.replace(o, msg_id=f"{o.msg_id}@{msg_id_suffix}") for o in batch]
        for start in range(0, len(batch), self.publish_chunk):
            part = batch[start : start + self.publish_chunk]
            await self.bus.publish_many((o.subject, o.event, o.msg_id) for o in part)
            metrics.EVENTS_PUBLISHED.labels(self._kind).inc(len(part))
