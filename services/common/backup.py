"""Back the streams up, and restore them into a new NATS: ``metalbus bus backup DIR`` / ``metalbus bus restore DIR``.

JetStream's own snapshots (``$JS.API.STREAM.SNAPSHOT`` / ``RESTORE``), as the admin user: every message with its
sequence, headers and time, the durables with their positions, the duplicate window's ids. Sequences matter:
ipam's appends are fenced on them and a placement's epoch is its sequence, so a copy made by publishing the
messages again would not do. Per stream, ``DIR/<stream>.json`` holds its configuration and state and
``DIR/<stream>.snapshot`` the server's snapshot bytes.

A restored ``K8S`` is what the cluster was at the backup, not what it is: before anything is decided on it, its
list marks are set to begun (``KindListed`` not complete), so ipam decides nothing until the watcher has
listed the cluster again and published what changed since. A restore goes only into streams that do not
exist (a new NATS, or streams deleted first); the provisioning step then brings their configuration to this
release's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from schemas.events import DECISION_KINDS, KindListed
from services.common.aio import first_of
from services.common.bus import Bus, BusSettings
from services.common.errors import Invalid, MetalbusError, NotFound
from services.common.nats_errors import translated
from services.common.provision import provision
from services.common.subjects import STREAMS, StreamName, k8s_listed_subject

log = logging.getLogger(__name__)

#: Bytes per chunk, both ways (well under the server's payload limit).
CHUNK = 128 * 1024
#: How long an answer, or the next chunk of a snapshot, may take (seconds).
WAIT = 30.0


async def back_up(bus: Bus, directory: Path) -> dict[str, int]:
    """Snapshot every stream into ``directory``; the messages each held."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    held: dict[str, int] = {}
    for spec in STREAMS:
        held[spec.name.value] = await _snapshot(bus, spec.name, directory)
    return held


async def _snapshot(bus: Bus, stream: StreamName, directory: Path) -> int:
    client = bus.client
    inbox = client.new_inbox()
    done, progress = asyncio.Event(), asyncio.Event()
    failure: list[str] = []
    path = directory / f"{stream.value}.snapshot"
    with path.open("wb") as out:

        async def on_chunk(message: Any) -> None:
            status = (message.headers or {}).get("Status")
            if status and status != "200":  # the server gave up (an error status, with a description)
                failure.append(f"{status} {(message.headers or {}).get('Description', '')}")
                done.set()
            elif not message.data:
                done.set()  # the end of the snapshot
            else:
                out.write(message.data)
                progress.set()
                if message.reply:  # flow control: the next chunk comes once this one is acknowledged
                    await client.publish(message.reply, b"")

        subscription = await client.subscribe(inbox, cb=on_chunk)
        try:
            with translated(f"snapshot of {stream.value}"):
                answer = await client.request(f"$JS.API.STREAM.SNAPSHOT.{stream.value}", json.dumps(
                    {"deliver_subject": inbox, "chunk_size": CHUNK}).encode(), timeout=WAIT)
            meta = json.loads(answer.data)
            if "error" in meta:
                raise Invalid(f"snapshot of {stream.value}: {meta['error']}")
            while not done.is_set():  # however large the stream, as long as chunks keep coming
                await asyncio.wait_for(first_of(done.wait(), progress.wait()), WAIT)
                progress.clear()
        finally:
            await subscription.unsubscribe()
    if failure:
        raise Invalid(f"snapshot of {stream.value}: {failure[0]}")
    (directory / f"{stream.value}.json").write_text(json.dumps({"config": meta["config"], "state": meta["state"]}))
    messages = int(meta["state"].get("messages") or 0)
    log.info("stream backed up stream=%s messages=%d bytes=%d", stream.value, messages, path.stat().st_size)
    return messages


async def restore(bus: Bus, directory: Path) -> dict[str, int]:
    """Restore every stream ``directory`` holds into this NATS (where none of them exists), bring their
    configuration to this release's, and mark the restored ``K8S`` lists begun. The messages each holds."""
    present = [spec.name.value for spec in STREAMS if (directory / f"{spec.name.value}.json").exists()]
    for name in present:
        try:
            with translated(f"stream info {name}"):
                await bus.js.stream_info(name)
        except NotFound:
            continue
        raise Invalid(f"stream {name} exists: a backup is restored into a new NATS (or with its streams deleted)")
    held = {name: await _restore(bus, name, directory) for name in present}
    await provision(bus)
    if StreamName.K8S.value in present:
        for kind in sorted(DECISION_KINDS):
            await bus.publish(k8s_listed_subject(kind), KindListed(kind=kind, complete=False))
        log.info("restored lists marked begun: nothing is decided until the watcher has listed the cluster again")
    return held


async def _restore(bus: Bus, name: str, directory: Path) -> int:
    client = bus.client
    meta = json.loads((directory / f"{name}.json").read_text())
    with translated(f"restore of {name}"):
        answer = await client.request(f"$JS.API.STREAM.RESTORE.{name}", json.dumps(meta).encode(), timeout=WAIT)
    reply = json.loads(answer.data)
    if "error" in reply:
        raise Invalid(f"restore of {name}: {reply['error']}")
    with (directory / f"{name}.snapshot").open("rb") as source, translated(f"restore of {name}"):
        while chunk := source.read(CHUNK):
            await client.request(reply["deliver_subject"], chunk, timeout=WAIT)
        created = json.loads((await client.request(reply["deliver_subject"], b"", timeout=WAIT)).data)
    if "error" in created:
        raise Invalid(f"restore of {name}: {created['error']}")
    messages = int((created.get("state") or {}).get("messages") or 0)
    log.info("stream restored stream=%s messages=%d last_sequence=%d", name, messages,
             int((created.get("state") or {}).get("last_seq") or 0))
    return messages


async def backup_command(url: str, directory: Path, *, ca_file: str | None, restoring: bool) -> int:
    """``metalbus bus backup`` / ``restore``, as the admin user."""
    settings = BusSettings(url=url, tls_ca_file=ca_file, initial_attempts=30)
    try:
        async with await Bus.connect(settings, producer="admin/backup") as bus:
            held = await (restore(bus, directory) if restoring else back_up(bus, directory))
    except (MetalbusError, TimeoutError, OSError) as error:
        print(f"metalbus bus {'restore' if restoring else 'backup'}: {error}", file=sys.stderr)
        return 2
    print(" ".join(f"{name}={count}" for name, count in held.items()))
    return 0
