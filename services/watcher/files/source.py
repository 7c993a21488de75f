"""The directory source: a folder of Kubernetes YAML in, the same ``K8S`` events as the Kubernetes source out.

Every change under the directory (seen by ``watchfiles``) re-reads all of it — a lab directory
holds a few dozen objects — and hands each resource's objects to the same projections the
reflectors use, as a fresh list. :class:`ProjectionPublisher` then publishes what differs from the
stream: a changed object is a new event, a removed one a tombstone. The ``status/`` subdirectory
(written by :mod:`services.watcher.files.status`) and files that are not YAML are never read.

It marks its lists on ``K8S`` as the reflectors do (:mod:`services.watcher.observe.marks`): every kind the
stream holds no mark of is marked begun before the first read, and complete once the directory is in the
stream. A read that finds a mark gone (the stream deleted and made again under it, a NATS store lost) marks
the kinds begun and publishes the whole directory again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import watchfiles

from schemas.events import CONFIG_KINDS, ObjectKind
from services.common.bus import Bus
from services.common.errors import newer_schema_in
from services.watcher.files.documents import (
    CONFIG_RESOURCES,
    Document,
    Loaded,
    Problem,
    Resource,
    Skipped,
    load_documents,
    parse_documents,
)
from services.watcher.observe.marks import mark_begun, mark_complete, marked, unmarked
from services.watcher.observe.projection import (
    EndpointsProjection,
    ObjectProjection,
    PeerPasswordProjection,
    PeerProjection,
    Projection,
    SecretProjection,
    SecretReferences,
    SecretStates,
)
from services.watcher.observe.publishing import ProjectionPublisher
from services.watcher.observe.translate import (
    Observation,
    RawObject,
    config_observed,
    kube_proxy_observed,
    namespace_observed,
    node_observed,
    secret_observed,
    service_observed,
)

log = logging.getLogger(__name__)

STATUS_DIR = "status"
YAML_SUFFIXES = (".yaml", ".yml", ".json")
#: Milliseconds of quiet before a burst of file changes is read (an editor's save is several writes).
DEBOUNCE_MS = 150
#: Re-read after this long without a change, in case one slipped by before the watch started.
RESCAN_SECONDS = 10.0


def _skipped(kind: ObjectKind) -> Callable[[RawObject, Exception], None]:
    def skip(obj: RawObject, error: Exception) -> None:
        name = (obj.get("metadata") or {}).get("name")
        log.warning("skipping unreadable object kind=%s name=%s error=%s", kind.value, name, str(error)[:300])

    return skip


def build_projections(namespace: str) -> list[tuple[Resource, Projection]]:
    """The projections and the resource each is fed, as the Kubernetes source builds them; BGPPeers before
    Secrets (the Secrets wanted are those the peers reference), their inline passwords (on SECRETS) before
    the BGPPeers that lose them."""

    def simple(kind: ObjectKind, translate: Callable[[RawObject], Observation]) -> ObjectProjection:
        return ObjectProjection(kind, translate, on_error=_skipped(kind))

    references, states = SecretReferences(), SecretStates()
    projections: list[tuple[Resource, Projection]] = [
        (Resource.NAMESPACES, simple(ObjectKind.NAMESPACE, namespace_observed)),
        (Resource.NODES, simple(ObjectKind.NODE, node_observed)),
        (Resource.KUBE_PROXY, simple(ObjectKind.KUBE_PROXY, kube_proxy_observed)),
    ]
    for kind_name, resource in CONFIG_RESOURCES.items():
        kind = CONFIG_KINDS[kind_name]
        if kind is ObjectKind.BGP_PEER:
            projections.append((resource, PeerPasswordProjection()))
            projections.append((resource, PeerProjection(config_observed, namespace=namespace, references=references,
                                                         on_error=_skipped(kind), states=states)))
        else:
            projections.append((resource, simple(kind, config_observed)))
    projections += [
        (Resource.SECRETS, SecretProjection(secret_observed, references=references,
                                            on_error=_skipped(ObjectKind.SECRET), states=states)),
        (Resource.ENDPOINT_SLICES, EndpointsProjection(on_error=_skipped(ObjectKind.ENDPOINTS))),
        (Resource.SERVICES, simple(ObjectKind.SERVICE, service_observed)),
    ]
    return projections


def manifest_files(directory: Path) -> list[Path]:
    """The YAML files under ``directory`` in name order, leaving out ``status/`` and hidden entries."""
    files = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).parts
        if relative[0] == STATUS_DIR or any(part.startswith(".") for part in relative):
            continue
        if path.is_file() and path.suffix in YAML_SUFFIXES:
            files.append(path)
    return files


def read_directory(directory: Path, *, namespace: str, last_good: dict[str, list[Document]] | None = None) -> Loaded:
    """Every object under ``directory``. A file that is not valid YAML (half-way through an edit) counts
    with its ``last_good`` documents, so a typo never deletes what the file held; ``last_good`` is
    updated with every file that reads."""
    last_good = {} if last_good is None else last_good
    documents: list[Document] = []
    skipped: list[Skipped] = []
    present = set()
    for path in manifest_files(directory):
        origin = str(path.relative_to(directory))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:  # removed while reading, or not text
            log.warning("cannot read file=%s error=%r", path, error)
            continue
        present.add(origin)
        found, bad = parse_documents(text, origin=origin)
        if any(b.problem is Problem.UNREADABLE_YAML for b in bad) and origin in last_good:
            found = last_good[origin]
            bad = [replace(b, detail=f"{b.detail}; keeping its last readable version") for b in bad]
        else:
            last_good[origin] = found
        documents += found
        skipped += bad
    for gone in set(last_good) - present:
        del last_good[gone]
    loaded = load_documents(documents, config_namespace=namespace)
    loaded.skipped[:0] = skipped
    return loaded


def watched(change: watchfiles.Change, path: str, *, directory: Path) -> bool:
    """Whether a change at ``path`` may change what the directory holds."""
    relative = Path(path).relative_to(directory).parts if Path(path).is_relative_to(directory) else ()
    if not relative or relative[0] == STATUS_DIR or any(part.startswith(".") for part in relative):
        return False
    return Path(path).suffix in YAML_SUFFIXES or Path(path).is_dir() or change is watchfiles.Change.deleted


class DirectorySource:
    """Publishes the objects of ``directory`` on the ``K8S`` stream and keeps it in step with edits."""

    def __init__(self, *, bus: Bus, directory: Path, namespace: str) -> None:
        self.directory = directory.resolve()
        self.namespace = namespace
        self.projections = build_projections(namespace)
        self.publishers = [ProjectionPublisher(projection=p, bus=bus) for _, p in self.projections]
        self.bus = bus
        #: the kinds whose lists are marked on K8S (each once, in the order of the projections)
        self.marked_kinds = list(dict.fromkeys(p.kind for _, p in self.projections if marked(p.kind)))
        self.synced = asyncio.Event()
        self.scans = 0
        self._last_good: dict[str, list[Document]] = {}

    async def sync(self) -> int:
        """Read the directory and publish what changed; returns how many events were published."""
        if self.synced.is_set() and (lost := await unmarked(self.bus, self.marked_kinds)):
            log.warning("directory source lost its lists kinds=%s consequence=%s",
                        ",".join(kind.value for kind in lost), "the directory published again")
            self.synced.clear()
            return await self.start()
        loaded = await asyncio.to_thread(read_directory, self.directory, namespace=self.namespace,
                                         last_good=self._last_good)
        for skipped in loaded.skipped:
            log.warning("skipped document origin=%s problem=%s detail=%s", skipped.origin, skipped.problem,
                        skipped.detail)
        token = f"{time.time_ns():x}"  # unique per scan: A → B → A is three publishes, never a duplicate
        published = 0
        for resource, projection in self.projections:
            projection.replace(loaded.objects[resource], token)
        for _, projection in self.projections:
            projection.refresh()  # what one took from another (the BGPPeers, what their Secrets give) is current
        for publisher in self.publishers:
            batch = publisher.changes(publisher.all_subjects(), trigger=token)
            await publisher.publish(batch, msg_id_suffix=token)
            published += len(batch)
        for kind in self.marked_kinds:
            listed = sum(len(loaded.objects[resource]) for resource, p in self.projections if p.kind is kind)
            await mark_complete(self.bus, kind, resource_version=f"directory-{token}", objects=listed)
        self.scans += 1
        log.log(logging.INFO if published or self.scans == 1 else logging.DEBUG,
                "directory read dir=%s objects=%d published=%d ignored_kinds=%s", self.directory,
                 loaded.count(), published, ",".join(sorted(loaded.ignored_kinds)) or "-")
        return published

    async def start(self) -> int:
        """Mark begun the kinds the stream holds no mark of, learn what it holds, then publish the directory as
        it is; returns how many events were published."""
        await mark_begun(self.bus, self.marked_kinds, why="none in the stream at the start of the directory source")
        for publisher in self.publishers:
            await publisher.read_stored()
        published = await self.sync()
        self.synced.set()
        return published

    async def run(self, stopping: asyncio.Event, *, retry: float = 1.0) -> None:
        """Start, then follow the directory's changes until ``stopping`` is set."""
        self.directory.mkdir(parents=True, exist_ok=True)
        while not stopping.is_set():
            try:
                if not self.synced.is_set():
                    await self.start()
                # A quiet spell also re-reads: it catches a change made before the watch began.
                async for _ in watchfiles.awatch(
                    self.directory, stop_event=stopping, debounce=DEBOUNCE_MS, step=25,
                    rust_timeout=int(RESCAN_SECONDS * 1000), yield_on_timeout=True,
                    watch_filter=lambda change, path: watched(change, path, directory=self.directory),
                ):
                    await self.sync()
            except Exception as error:  # a bus failure: re-read the stream and the directory
                if (stop := newer_schema_in(error)) is not None:
                    raise stop from error  # the stream holds what this build cannot read: stop (supervision)
                log.warning("directory source failed error=%r retry_in_s=%.1f", error, retry)
                self.synced.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), retry)
