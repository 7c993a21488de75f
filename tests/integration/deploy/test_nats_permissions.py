"""The per-component NATS users of the deployment, against a real nats-server and the real bus code.

The server runs the generated ``accounts.conf`` (the one in k8s/base/nats.yaml and compose/nats). Each
component does what it does in production — declare the streams, publish its own subjects, follow the
streams it reads with the same consumers, take its lease — and is refused the subjects of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from rich.console import Console

from deploy import nats_accounts
from schemas.events import AnnouncerHeartbeat, ObjectKind
from services.common.bus import Bus, BusSettings, Received
from services.common.consumer import Consumer, ConsumerSpec
from services.common.errors import RetryableError
from services.common.follower import Follower
from services.common.lease import BusLease
from services.common.nats_server import nats_server_binary
from services.common.subjects import (
    HEARTBEATS,
    StreamName,
    announce_subject,
    heartbeat_subject,
    ipam_allocation_subject,
    k8s_subject,
)
from services.operator.explain import show_explain
from services.operator.history import show_history
from services.operator.status import show_status
from tests.integration.watcher.helpers import NAMESPACE, service
from tests.kubeapi import KubeApi

PASSWORDS = {user.name: f"{user.name}-secret" for user in nats_accounts.USERS}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    port: int
    log: Path

    def violations(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "Violation" in line]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("nats-users")
    (directory / "accounts.conf").write_text(nats_accounts.render())
    (directory / "nats.conf").write_text(
        f"jetstream {{ store_dir: {directory / 'js'} }}\ninclude ./accounts.conf\n")
    port = _free_port()
    env = {user.password_variable: PASSWORDS[user.name] for user in nats_accounts.USERS}
    log = directory / "nats.log"
    process = subprocess.Popen([nats_server_binary(), "-c", str(directory / "nats.conf"), "-a", "127.0.0.1",
                                "-p", str(port), "-l", str(log)], env=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)  # waiting for the server to listen
    try:
        yield Server(port, log)
    finally:
        process.terminate()
        process.wait(timeout=15)


async def _connect(port: int, user: str) -> Bus:
    settings = BusSettings(url=f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{port}", request_timeout=1.0,
                           initial_attempts=3)
    return await Bus.connect(settings, producer=f"{user}/test")


@pytest.fixture
async def buses(server: Server) -> AsyncIterator[dict[str, Bus]]:
    connected = {user: await _connect(server.port, user) for user in PASSWORDS}
    try:
        yield connected
    finally:
        for bus in connected.values():
            await bus.close()


def _beat(sequence: int = 0) -> AnnouncerHeartbeat:
    return AnnouncerHeartbeat(node="node-a", instance="test", sequence=sequence)


async def test_every_component_declares_the_streams(buses: dict[str, Bus]) -> None:
    for user in nats_accounts.SERVICE_USERS:
        bus = buses[user.name]
        await bus.ensure_streams()
        assert await bus.last_sequence(StreamName.K8S) >= 0


async def test_each_component_writes_its_own_stream_only(buses: dict[str, Bus], server: Server) -> None:
    await buses["watcher"].ensure_streams()
    before = len(server.violations())
    own = {
        "watcher": k8s_subject(ObjectKind.NODE, "", "node-a"),
        "ipam": ipam_allocation_subject("demo", "echo"),
        "announcer": announce_subject("node-a", "192.168.1.240"),
    }
    for user, subject in own.items():
        published = await buses[user].publish(subject, _beat())
        assert published.sequence > 0
        for other, foreign in own.items():
            if other == user:
                continue
            with pytest.raises((RetryableError, nats.errors.Error)):
                await buses[user].publish(foreign, _beat())
    assert len(server.violations()) > before, "the server logs refusals (the check below relies on it)"


async def test_only_announcers_heartbeat_and_ipam_hears_them(buses: dict[str, Bus]) -> None:
    heard: list[str] = []
    arrived = asyncio.Event()

    async def record(message: Msg) -> None:
        heard.append(message.subject)
        arrived.set()

    subscription = await buses["ipam"].client.subscribe(HEARTBEATS, cb=record)
    await buses["ipam"].client.flush()  # the subscription is in place at the server
    await buses["watcher"].notify(heartbeat_subject("intruder"), _beat())
    await buses["watcher"].client.flush()
    for sequence in range(50):  # heartbeats are fire-and-forget: send until one is heard
        await buses["announcer"].notify(heartbeat_subject("node-a"), _beat(sequence))
        await buses["announcer"].client.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), 0.1)
        if arrived.is_set():
            break
    await subscription.unsubscribe()
    assert heard and set(heard) == {heartbeat_subject("node-a")}


async def test_readers_follow_their_streams_with_the_real_consumers(buses: dict[str, Bus]) -> None:
    await buses["watcher"].ensure_streams()
    await buses["ipam"].publish(ipam_allocation_subject("demo", "follow"), _beat(7))
    await buses["announcer"].publish(announce_subject("node-b", "192.168.1.241"), _beat(8))
    await buses["watcher"].publish(k8s_subject(ObjectKind.NODE, "", "node-b"), _beat(9))

    # ipam: replays and follows K8S, replays IPAM.
    seen: list[Received] = []
    assert await buses["ipam"].replay(StreamName.K8S, seen.append, last_per_subject=True) > 0
    assert await buses["ipam"].replay(StreamName.IPAM, seen.append) > 0
    follower = Follower(buses["ipam"], StreamName.K8S, start_sequence=1)
    assert await follower.fetch(wait=1.0)
    await follower.close()

    # announcer: a durable consumer on IPAM, acking; the watcher: one on ANNOUNCE.
    for user, stream in (("announcer", StreamName.IPAM), ("watcher", StreamName.ANNOUNCE)):
        handled = asyncio.Event()
        consumer: Consumer

        async def handle(received: Received, done: asyncio.Event = handled) -> None:
            done.set()

        consumer = Consumer(buses[user], ConsumerSpec(stream, f"{user}-test"), handle)
        task = asyncio.create_task(consumer.run())
        await asyncio.wait_for(handled.wait(), 5)
        consumer.stop()
        await asyncio.wait_for(task, 5)
        assert consumer.stats.handled >= 1, user

    # the announcer reads IPAM and K8S but not ANNOUNCE; no one but the watcher reads ANNOUNCE.
    with pytest.raises(Exception):  # noqa: B017 - the client's error type varies with the refusal
        await asyncio.wait_for(
            buses["ipam"].replay(StreamName.ANNOUNCE, seen.append), 3)


async def test_bgp_passwords_are_read_by_the_announcers_alone(buses: dict[str, Bus]) -> None:
    await buses["watcher"].ensure_streams()
    secret = k8s_subject(ObjectKind.SECRET, "metallb-system", "bgp-password")
    await buses["watcher"].publish(secret, _beat())
    await buses["watcher"].publish(k8s_subject(ObjectKind.NODE, "", "node-d"), _beat())
    for reader in ("announcer", "watcher"):
        seen: list[Received] = []
        await buses[reader].replay(StreamName.SECRETS, seen.append, last_per_subject=True)
        assert [r.subject for r in seen] == [secret], reader
    everything_ipam_reads: list[Received] = []
    await buses["ipam"].replay(StreamName.K8S, everything_ipam_reads.append, last_per_subject=True)
    assert everything_ipam_reads and secret not in {r.subject for r in everything_ipam_reads}
    for stranger in ("ipam", "operator"):
        with pytest.raises(Exception):  # noqa: B017 - refused at the JetStream API
            await asyncio.wait_for(buses[stranger].replay(StreamName.SECRETS, everything_ipam_reads.append), 3)
        with pytest.raises(Exception):  # noqa: B017 - refused at the JetStream API
            await asyncio.wait_for(buses[stranger].last_value(StreamName.SECRETS, secret), 3)


async def test_ipam_takes_its_lease_and_others_cannot(buses: dict[str, Bus]) -> None:
    lease = BusLease(buses["ipam"], name="ipam", holder="ipam-0")
    assert await lease.try_acquire()
    assert await lease.holder() == "ipam-0"
    await lease.release()
    stranger = BusLease(buses["announcer"], name="ipam", holder="announcer")
    with pytest.raises(Exception):  # noqa: B017 - refused at the JetStream API
        await asyncio.wait_for(stranger.try_acquire(), 3)


async def test_the_operator_reads_everything_and_writes_nothing(buses: dict[str, Bus], server: Server) -> None:
    await buses["watcher"].ensure_streams()
    await buses["ipam"].publish(ipam_allocation_subject("demo", "operator"), _beat())
    await buses["announcer"].publish(announce_subject("node-c", "192.168.1.242"), _beat())
    before = len(server.violations())
    url = f"nats://operator:{PASSWORDS['operator']}@127.0.0.1:{server.port}"
    assert await show_status(url, console=Console(file=io.StringIO())) == 0
    # They read every stream they need without a refusal (1 is their "nothing found" answer here).
    assert await show_history(url, "192.168.1.242", console=Console(file=io.StringIO())) in (0, 1)
    assert await show_explain(url, "demo/operator", console=Console(file=io.StringIO())) in (0, 1)
    assert server.violations()[before:] == []
    for subject in (k8s_subject(ObjectKind.NODE, "", "x"), ipam_allocation_subject("demo", "x"),
                    announce_subject("x", "192.168.1.243"), heartbeat_subject("x"), "deadletter.k8s.x"):
        with pytest.raises((RetryableError, nats.errors.Error)):
            await buses["operator"].publish(subject, _beat())
    with pytest.raises(Exception):  # noqa: B017 - refused at the JetStream API
        await asyncio.wait_for(buses["operator"].ensure_streams(), 3)


def test_the_generated_users_are_the_ones_tested() -> None:
    assert set(PASSWORDS) == {"watcher", "ipam", "announcer", "operator"}
    assert Path(nats_server_binary()).exists()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize("command", ["watcher", "ipam", "announcer"])
def test_the_real_services_run_as_their_users(server: Server, command: str, tmp_path: Path,
                                              kube_api: KubeApi) -> None:
    """``metalbus watcher`` (against the Kubernetes API stand-in), ``ipam`` and ``announcer`` become ready
    as their NATS users and run a while, with no permission violation logged by the server."""
    if command == "announcer" and os.geteuid() != 0:
        pytest.skip("the announcer needs raw sockets (root)")
    before = len(server.violations())
    http_port = _free_port()
    kube_api.put_object(service("web"))
    env = {**os.environ, "NATS_URL": f"nats://{command}:{PASSWORDS[command]}@127.0.0.1:{server.port}",
           "METALBUS_HTTP_PORT": str(http_port), "METALBUS_HTTP_HOST": "127.0.0.1", "NODE_NAME": "node-test",
           "KUBECONFIG": str(kube_api.kubeconfig(tmp_path / "kubeconfig")), "METALBUS_NAMESPACE": NAMESPACE,
           "OTEL_TRACES_EXPORTER": "none"}
    log = (tmp_path / f"{command}.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "services.cli", command], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _ready(http_port):
            assert process.poll() is None, (tmp_path / f"{command}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / f"{command}.log").read_text()[-3000:]
            time.sleep(0.2)  # polling a child process's readiness endpoint
        time.sleep(2.0)  # let it run its loops (leases, heartbeats, follows, status consumers) for a while
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
    assert server.violations()[before:] == []
