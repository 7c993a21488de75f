"""Simulated nodes for ``bench/scale.py``: the heartbeats of thousands of announcers from one process,
speaking the liveness protocol of the code tree under test.

    python bench/node_sim.py --tree TREE --nats nats://HOST:PORT --first 3 --count 4997

The heartbeat model, its envelope and its interval come from TREE (put first on ``sys.path``), so the same
simulator drives the tree before and after a change of protocol:

- a heartbeat that names its connection (a field the announcer fills from the server's INFO): one real NATS
  connection per node, speaking the text protocol (CONNECT, PONG to every PING, the heartbeat at once and
  every interval), so the server sees each node connect and, for a node that stops, disconnect;
- otherwise the older protocol: every node's heartbeat every interval (10 Hz) over a few shared connections.

Prints ``ready <nodes>`` on stdout once every node has sent its first heartbeat; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: The fields every heartbeat has had; any other field is the connection's key (the newer protocol).
_CLASSIC_FIELDS = frozenset({"type", "node", "instance", "sequence", "leaving"})
_SEQUENCE_MARK = 987_654_321_987
_CONNECT_AT_ONCE = 100


def _use_tree(tree: Path) -> None:
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(tree), *(p for p in sys.path if p != here)]


def heartbeat_interval(tree: Path) -> float:
    """The announcer's heartbeat interval in TREE (``HEARTBEAT_INTERVAL = <seconds>`` under services/announcer)."""
    pattern = re.compile(r"^HEARTBEAT_INTERVAL(?:\s*:\s*\w+)?\s*=\s*([0-9.]+)", re.MULTILINE)
    for path in sorted((tree / "services" / "announcer").rglob("*.py")):
        found = pattern.search(path.read_text())
        if found:
            return float(found.group(1))
    raise LookupError(f"no HEARTBEAT_INTERVAL under {tree / 'services/announcer'}")


class Heartbeats:
    """Heartbeat bodies of the tree under test, encoded once per node and connection; only the sequence
    number changes from beat to beat (a byte substitution, not a pydantic dump: 50 000 a second must be cheap)."""

    def __init__(self) -> None:
        from schemas.events import AnnouncerHeartbeat
        from schemas.events.codec import encode, wrap

        self._model: Any = AnnouncerHeartbeat
        self._encode, self._wrap = encode, wrap
        self.key_fields = {name: field for name, field in AnnouncerHeartbeat.model_fields.items()
                           if name not in _CLASSIC_FIELDS}

    @property
    def names_connection(self) -> bool:
        return bool(self.key_fields)

    def template(self, node: str, info: dict[str, Any]) -> tuple[bytes, bytes]:
        values: dict[str, Any] = {"node": node, "instance": f"sim-{node}", "sequence": _SEQUENCE_MARK}
        for name, field in self.key_fields.items():
            values[name] = _key_value(field.annotation, info)
        body = self._encode(self._wrap(self._model(**values), producer=f"announcer/{node}"))
        before, _, after = body.partition(str(_SEQUENCE_MARK).encode())
        return before, after


def _key_value(annotation: Any, info: dict[str, Any]) -> Any:
    """A connection key from the server's INFO: a model is filled field by field (server id, client id),
    a string is ``<server id>/<client id>``."""
    server, client = info.get("server_id", ""), info.get("client_id", 0)
    fields = getattr(annotation, "model_fields", None)
    if fields is None:
        return f"{server}/{client}"
    values = {}
    for name in fields:
        values[name] = client if "client" in name or name in {"cid", "id"} else server
    return annotation(**values)


def _subject(node: str) -> str:
    from services.common.subjects import heartbeat_subject

    return str(heartbeat_subject(node))


class Connection:
    """One NATS text-protocol connection: CONNECT, PONG to every PING, publishes."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.info: dict[str, Any] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        parts = urlsplit(self.url)
        self._reader, self._writer = await asyncio.open_connection(parts.hostname, parts.port)
        line = await self._reader.readline()
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"expected INFO, got {line[:80]!r}")
        self.info = json.loads(line[5:])
        connect = {"verbose": False, "pedantic": False, "lang": "python", "version": "sim", "protocol": 1,
                   "headers": True, "no_responders": True, "name": self.name}
        self._writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await self._writer.drain()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        """Answer every PING. Nothing else comes (no subscriptions) but INFO updates and errors: a chunk is
        scanned, not parsed line by line (thousands of connections are pinged several times a second)."""
        assert self._reader is not None and self._writer is not None
        while chunk := await self._reader.read(65536):
            if pings := chunk.count(b"PING\r\n"):
                self._writer.write(b"PONG\r\n" * pings)
            if b"-ERR" in chunk:
                print(f"node_sim: {self.name}: {chunk.decode(errors='replace').strip()[:200]}", file=sys.stderr)

    def publish(self, subject: str, body: bytes) -> None:
        assert self._writer is not None
        self._writer.write(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(body), body))

    async def drain(self) -> None:
        assert self._writer is not None
        await self._writer.drain()


async def _beat_one_node(
    url: str, node: str, heartbeats: Heartbeats, interval: float, started: asyncio.Semaphore,
    first: asyncio.Queue[str],
) -> None:
    """The newer protocol: this node's own connection; its heartbeat at once, then every interval."""
    connection = Connection(url, f"announcer-{node}")
    async with started:
        await connection.open()
    before, after = heartbeats.template(node, connection.info)
    subject = _subject(node)
    phase = (zlib.crc32(node.encode()) % 1000) / 1000 * interval
    sequence = 0
    while True:
        connection.publish(subject, before + str(sequence).encode() + after)
        await connection.drain()
        if sequence == 0:
            first.put_nowait(node)
            await asyncio.sleep(phase)  # spread the nodes over the interval, as real ones are
        sequence += 1
        await asyncio.sleep(interval)


async def _beat_shared(
    url: str, nodes: list[str], heartbeats: Heartbeats, interval: float, first: asyncio.Queue[str]
) -> None:
    """The older protocol: these nodes' heartbeats every interval over one shared connection."""
    connection = Connection(url, "announcers-sim")
    await connection.open()
    templates = [(_subject(node), *heartbeats.template(node, connection.info)) for node in nodes]
    loop = asyncio.get_running_loop()
    sequence, start = 0, loop.time()
    while True:
        mark = str(sequence).encode()
        for subject, before, after in templates:
            connection.publish(subject, before + mark + after)
        await connection.drain()
        if sequence == 0:
            for node in nodes:
                first.put_nowait(node)
        sequence += 1
        await asyncio.sleep(max(0.0, start + sequence * interval - loop.time()))


async def run(*, url: str, nodes: list[str], interval: float, shared_connections: int) -> None:
    heartbeats = Heartbeats()
    first: asyncio.Queue[str] = asyncio.Queue()
    if heartbeats.names_connection:
        started = asyncio.Semaphore(_CONNECT_AT_ONCE)
        tasks = [asyncio.create_task(_beat_one_node(url, n, heartbeats, interval, started, first)) for n in nodes]
        protocol = f"one connection per node, every {interval} s"
    else:
        share = [nodes[i::shared_connections] for i in range(shared_connections)]
        tasks = [asyncio.create_task(_beat_shared(url, s, heartbeats, interval, first)) for s in share if s]
        protocol = f"{len(tasks)} shared connections, every {interval} s"
    print(f"node_sim: {len(nodes)} nodes, {protocol}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    heard = 0
    while heard < len(nodes):
        getter = asyncio.ensure_future(first.get())
        done, _ = await asyncio.wait({getter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            for task in done:
                task.result()  # a simulator task failed before every node beat: say why
        else:
            heard += 1
    print(f"ready {len(nodes)}", flush=True)
    watcher = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({watcher, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for task in done:
        if task is not watcher:
            with contextlib.suppress(asyncio.CancelledError):
                task.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--first", type=int, default=3, help="index of the first simulated node")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--shared-connections", type=int, default=4, help="older protocol only")
    args = parser.parse_args()
    from cluster_api import node_name  # type: ignore[import-not-found]  # beside this file, before the tree

    _use_tree(args.tree.resolve())
    nodes = [node_name(i) for i in range(args.first, args.first + args.count)]
    asyncio.run(run(url=args.nats, nodes=nodes, interval=heartbeat_interval(args.tree),
                    shared_connections=args.shared_connections))


if __name__ == "__main__":
    main()
