"""Simulated nodes for ``bench/scale.py``: the heartbeats of thousands of announcers from one process,
speaking the liveness protocol of the code tree under test.

    python bench/node_sim.py --tree TREE --nats nats://HOST:PORT --first 3 --count 4997 [--nodes-per-connection 50]

The heartbeat model, its envelope and its interval come from TREE (put first on ``sys.path``), so the same
simulator drives the tree before and after a change of protocol:

- a heartbeat that names its connection (a field the announcer fills from the server's INFO): one real NATS
  connection per node, speaking the text protocol (CONNECT, PONG to every PING, the heartbeat at once and
  every interval, on the ticks of the tree's shared wall-clock grid where it has one), so the server sees
  each node connect and, for a node that stops, disconnect. With
  ``--nodes-per-connection K``, K nodes share a connection and each heartbeat names the one it is sent on:
  ipam reads and judges every heartbeat as before (its work per heartbeat is the same), while the server pings
  K times fewer connections (5 000 connections pinged every 250 ms cost the server and the simulator more
  than ipam itself); the K nodes die together when that connection closes; where the tree has roll calls
  (``ROLL_CALL``), each connection hears them and its nodes answer at once, as announcers do;
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
import time
import zlib
from collections.abc import Callable
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
    """The announcers' heartbeat interval in TREE under an active ipam: its ``GRANTED_INTERVAL = <seconds>``
    where the active replica grants one (the benchmark's ipam is of the same tree), else its
    ``HEARTBEAT_INTERVAL`` under services/ (the announcer's own module before, the protocol's shared numbers
    since)."""
    for name in ("GRANTED_INTERVAL", "HEARTBEAT_INTERVAL"):
        pattern = re.compile(rf"^{name}(?:\s*:\s*\w+)?\s*=\s*([0-9.]+)", re.MULTILINE)
        found = {path: match for path in sorted((tree / "services").rglob("*.py"))
                 if (match := pattern.search(path.read_text()))}
        if len(found) > 1:
            raise LookupError(f"{len(found)} {name} under {tree / 'services'}: {sorted(map(str, found))}")
        if found:
            return float(next(iter(found.values())).group(1))
    raise LookupError(f"no HEARTBEAT_INTERVAL under {tree / 'services'}")


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


def _beat_delay() -> Callable[[float], float]:
    """Seconds until a heartbeat due in ``wait`` seconds leaves: on the first tick after it of the tree's
    wall-clock grid where it has one (``next_tick_in``), as its announcers send them; when due otherwise."""
    try:
        from services.common.heartbeats import next_tick_in  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return lambda wait: max(0.0, wait)
    return lambda wait: float(next_tick_in(max(0.0, wait), time.time()))


def _roll_call_subject() -> str | None:
    """Where the tree calls the roll, or None (a tree whose announcers only heartbeat on their own)."""
    try:
        from services.common.subjects import ROLL_CALL  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return str(ROLL_CALL)


class Connection(asyncio.Protocol):
    """One NATS text-protocol connection: CONNECT, PONG to every PING, publishes. A protocol, not streams:
    the server pings every silent connection several times a second, and each PING is answered straight from
    ``data_received`` (no task woken), which is what lets one process keep a thousand connections alive. With
    ``roll_call``, it subscribes there and sets ``called`` when a roll call arrives."""

    def __init__(self, name: str, roll_call: str | None = None) -> None:
        self.name = name
        self.called = asyncio.Event()
        self._roll_call = roll_call
        self._roll_call_mark = b"" if roll_call is None else f"MSG {roll_call} ".encode()
        self._tail = b""
        self.info: dict[str, Any] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._head = b""

    @classmethod
    async def open(cls, url: str, name: str, roll_call: str | None = None) -> Connection:
        parts = urlsplit(url)
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: cls(name, roll_call), parts.hostname or "127.0.0.1", parts.port or 4222
        )
        await connection.ready
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if not self.ready.done():
            self._head += data
            line, found, rest = self._head.partition(b"\r\n")
            if not found:
                return
            if not line.startswith(b"INFO "):
                self.ready.set_exception(ConnectionError(f"expected INFO, got {line[:80]!r}"))
                return
            self.info = json.loads(line[5:])
            connect = {"verbose": False, "pedantic": False, "lang": "python", "version": "sim", "protocol": 1,
                       "headers": True, "no_responders": True, "name": self.name}
            self._transport.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            if self._roll_call is not None:
                self._transport.write(f"SUB {self._roll_call} 1\r\n".encode())
            self.ready.set_result(None)
            data = rest
        if pings := data.count(b"PING\r\n"):
            self._transport.write(b"PONG\r\n" * pings)
        if self._roll_call_mark:  # looked for across reads too: a MSG line may be split between two
            if self._roll_call_mark in self._tail + data:
                self.called.set()
            self._tail = data[-len(self._roll_call_mark):]
        if b"-ERR" in data:
            print(f"node_sim: {self.name}: {data.decode(errors='replace').strip()[:200]}", file=sys.stderr)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.ready, self.lost):
            if not future.done():
                future.set_exception(exc or ConnectionResetError("closed by the server"))

    def publish(self, subject: str, body: bytes) -> None:
        if self.lost.done():
            self.lost.result()  # raises why it was lost
        assert self._transport is not None
        self._transport.write(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(body), body))


async def _beat_one_connection(
    url: str, nodes: list[str], heartbeats: Heartbeats, interval: float, started: asyncio.Semaphore,
    progress: Progress,
) -> None:
    """The newer protocol: these nodes' connection (one node's own, unless nodes share connections); each
    node's heartbeat at once, then every interval at its own phase. A lost connection (the server found it
    stale: this process was too slow to answer its PINGs) is said on stderr and made again, as an announcer
    would."""
    loop = asyncio.get_running_loop()
    name = f"announcer-{nodes[0]}" if len(nodes) == 1 else f"announcers-sim-{nodes[0]}+{len(nodes) - 1}"
    # spread the nodes over the interval, as real ones are: (phase, subject, node), in the order they beat
    schedule = sorted(((zlib.crc32(node.encode()) % 1000) / 1000 * interval, _subject(node), node) for node in nodes)
    sequence, first = 0, True
    roll_call = _roll_call_subject()
    beat_delay = _beat_delay()
    while True:
        async with started:
            connection = await Connection.open(url, name, roll_call)
        templates = {node: heartbeats.template(node, connection.info) for node in nodes}
        try:
            _beat_all(connection, schedule, templates, sequence)  # (re)connected
            if first:
                progress.first_beat(len(nodes))
                first = False
            sequence += 1
            start = loop.time()
            while True:
                for phase, subject, node in schedule:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(connection.called.wait(), beat_delay(start + phase - loop.time()))
                    if connection.called.is_set():
                        connection.called.clear()
                        _beat_all(connection, schedule, templates, sequence)
                        sequence += 1
                    before, after = templates[node]
                    connection.publish(subject, before + str(sequence).encode() + after)
                sequence += 1
                start += interval
        except OSError as error:
            print(f"node_sim: {name}: connection lost ({error!r}); connecting again", file=sys.stderr, flush=True)


def _beat_all(connection: Connection, schedule: list[tuple[float, str, str]],
              templates: dict[str, tuple[bytes, bytes]], sequence: int) -> None:
    """Every node's heartbeat at once (after a (re)connect, or the roll called)."""
    for _, subject, node in schedule:
        before, after = templates[node]
        connection.publish(subject, before + str(sequence).encode() + after)


async def _beat_shared(
    url: str, nodes: list[str], heartbeats: Heartbeats, interval: float, progress: Progress
) -> None:
    """The older protocol: these nodes' heartbeats every interval over one shared connection."""
    connection = await Connection.open(url, "announcers-sim")
    templates = [(_subject(node), *heartbeats.template(node, connection.info)) for node in nodes]
    loop = asyncio.get_running_loop()
    sequence, start = 0, loop.time()
    while True:
        mark = str(sequence).encode()
        for subject, before, after in templates:
            connection.publish(subject, before + mark + after)
        if sequence == 0:
            progress.first_beat(len(nodes))
        sequence += 1
        await asyncio.sleep(max(0.0, start + sequence * interval - loop.time()))


class Progress:
    """How many nodes have sent their first heartbeat; the first failure of any node's task."""

    def __init__(self, nodes: int) -> None:
        self.missing = nodes
        self.changed = asyncio.Event()
        self.failure: BaseException | None = None

    def first_beat(self, count: int = 1) -> None:
        self.missing -= count
        if self.missing <= 0:
            self.changed.set()

    def watch(self, task: asyncio.Task[None]) -> None:
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
            self.changed.set()


async def run(
    *, url: str, nodes: list[str], interval: float, shared_connections: int, nodes_per_connection: int
) -> None:
    heartbeats = Heartbeats()
    progress = Progress(len(nodes))
    if heartbeats.names_connection:
        started = asyncio.Semaphore(_CONNECT_AT_ONCE)
        groups = [nodes[i:i + nodes_per_connection] for i in range(0, len(nodes), nodes_per_connection)]
        tasks = [asyncio.create_task(_beat_one_connection(url, group, heartbeats, interval, started, progress))
                 for group in groups]
        protocol = (f"{len(groups)} connections, {nodes_per_connection} nodes to a connection (each heartbeat "
                    f"naming it), every {interval} s")
    else:
        share = [nodes[i::shared_connections] for i in range(shared_connections)]
        tasks = [asyncio.create_task(_beat_shared(url, s, heartbeats, interval, progress)) for s in share if s]
        protocol = f"{len(tasks)} shared connections, every {interval} s"
    for task in tasks:
        progress.watch(task)
    print(f"node_sim: {len(nodes)} nodes, {protocol}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await progress.changed.wait()
    if progress.failure is not None:
        raise progress.failure  # a node's task failed before every node beat: say why
    print(f"ready {len(nodes)}", flush=True)
    progress.changed.clear()
    stopping = asyncio.ensure_future(stop.wait())
    failing = asyncio.ensure_future(progress.changed.wait())
    await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    if progress.failure is not None:
        raise progress.failure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--first", type=int, default=3, help="index of the first simulated node")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--shared-connections", type=int, default=4, help="older protocol only")
    parser.add_argument("--nodes-per-connection", type=int, default=1,
                        help="newer protocol only: nodes whose heartbeats share one connection (default: 1, "
                        "each node its own, as real announcers)")
    parser.add_argument("--interval", type=float, help="seconds between heartbeats (default: the tree's)")
    args = parser.parse_args()
    from cluster_api import node_name  # beside this file, imported before the tree is put on sys.path

    _use_tree(args.tree.resolve())
    nodes = [node_name(i) for i in range(args.first, args.first + args.count)]
    asyncio.run(run(url=args.nats, nodes=nodes, interval=args.interval or heartbeat_interval(args.tree),
                    shared_connections=args.shared_connections,
                    nodes_per_connection=max(1, args.nodes_per_connection)))


if __name__ == "__main__":
    main()
