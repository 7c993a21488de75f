"""BGP passwords on a real nats-server, from a directory of manifests through a real ipam to a real BGP agent:
an inline password reaches the announcer's TCP MD5 session through SECRETS alone, and no byte of it (nor of the
last-applied annotation, nor of a Secret's other keys) is in any message of K8S or IPAM. NATS runs the
least-privilege accounts: the watcher, the ipam and the announcer (as its node) each with its own credential."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest
import yaml

from schemas.events import (
    BGPPeerPasswordObserved,
    BGPSessionChanged,
    BGPSessionState,
    ConfigurationEvaluated,
    ObjectDeleted,
    SecretObserved,
)
from services.announcer.agents.bgp import BgpAgent
from services.announcer.agents.bgp_metrics import BgpCollector
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.common.subjects import IPAM_CONFIG_SUBJECT, StreamName, bgp_session_subject
from services.ipam.replica import ReplicaSettings
from tests.integration.announcer.bgp_agent.test_agent import free_port
from tests.integration.ipam.test_ipam_service import replica
from tests.integration.watcher.files.test_directory_source import watching
from tests.waiting import async_wait_until

NS = "metallb-system"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
PASSWORD = "inline-md5-Kx7p"
SECRET_PASSWORD = "secret-md5-Wq2m"
USERNAME = "bgp-admin-Rt5n"
LAST_APPLIED = "last-applied-Jd4c"


def manifest(kind: str, api_version: str, name: str, namespace: str = NS, **fields: Any) -> dict[str, Any]:
    """An object as `kubectl apply` leaves it: the last-applied annotation holds all of it, secrets included."""
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}, **fields}
    applied = {**obj, "marker": LAST_APPLIED}
    obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": yaml.safe_dump(applied)}
    return obj


def configuration(port: int, *, inline_password: bool = True) -> str:
    tor: dict[str, Any] = {"myASN": 64512, "peerASN": 64512, "peerAddress": "127.0.0.1", "peerPort": port,
                           "holdTime": "9s"}
    if inline_password:
        tor["password"] = PASSWORD
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in (("password", SECRET_PASSWORD),
                                                                      ("username", USERNAME))}
    objects = [
        manifest("IPAddressPool", "metallb.io/v1beta1", "lan", spec={"addresses": ["198.51.100.0/24"]}),
        manifest("BGPAdvertisement", "metallb.io/v1beta1", "ads"),
        manifest("BGPPeer", "metallb.io/v1beta2", "tor", spec=tor),
        # a peer for other nodes, whose Secret has a key besides the password
        manifest("BGPPeer", "metallb.io/v1beta2", "spine",
                 spec={"myASN": 64512, "peerASN": 64513, "peerAddress": "192.0.2.1", "passwordSecret": {"name": "md5"},
                       "nodeSelectors": [{"matchLabels": {"rack": "elsewhere"}}]}),
        manifest("Secret", "v1", "md5", type="kubernetes.io/basic-auth", data=encoded),
        manifest("Node", "v1", "node-a", namespace="",
                 status={"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}),
        manifest("Service", "v1", "web", namespace="default",
                 spec={"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"]}),
    ]
    return yaml.safe_dump_all(objects)


@pytest.fixture
async def router() -> AsyncIterator[int]:
    """A BGP peer listening on loopback that only speaks TCP MD5 with the inline password; its port."""
    port = free_port()
    config = SpeakerConfig(
        session=SessionConfig(local_as=64512, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"), hold_time=9),
        peer_address=LOOPBACK, connect=False, password=PASSWORD,
    )  # fmt: skip
    async with Listener(address=LOOPBACK, port=port) as listener, Speaker(config, on_event=lambda _: None) as speaker:
        listener.add(speaker)
        yield port


@contextlib.asynccontextmanager
async def announcing(url: str) -> AsyncIterator[BgpAgent]:
    """The BGP agent of node-a, on a connection of its own, until the block ends."""
    connection = await Bus.connect(BusSettings(url=url), producer="announcer/node-a")
    agent = BgpAgent(connection, node="node-a", collector=BgpCollector())
    stopping = asyncio.Event()
    running = asyncio.create_task(agent.run(stopping))
    try:
        yield agent
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)
        await connection.close()


async def every_message(bus: Bus, stream: StreamName) -> list[bytes]:
    """The raw bytes of every message the stream holds, headers included."""
    info = await bus.js.stream_info(stream.value)
    found = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await bus.js.get_msg(stream.value, sequence)
        except nats.js.errors.NotFoundError:
            continue  # replaced by a newer value of its subject: the stream holds it no more
        headers = b"".join(f"{k}: {v}\n".encode() for k, v in (message.headers or {}).items())
        found.append(headers + (message.data or b""))
    return found


async def established(bus: Bus) -> bool:
    """Whether node-a last reported its session with ``tor`` Established."""
    value = await bus.last_value(StreamName.ANNOUNCE, bgp_session_subject("node-a", f"{NS}/tor"))
    return isinstance(value.event, BGPSessionChanged) and value.event.state is BGPSessionState.ESTABLISHED \
        if value is not None else False


async def config_in_force(bus: Bus) -> bool:
    value = await bus.last_value(StreamName.IPAM, IPAM_CONFIG_SUBJECT)
    return value is not None and isinstance(value.event, ConfigurationEvaluated) and value.event.valid


async def test_an_inline_password_reaches_the_session_through_secrets_alone(
    admin_bus: Bus, secured_server: EmbeddedNats, tmp_path: Path, router: int
) -> None:
    bus, manifests = admin_bus, tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(configuration(router))
    ipam, watcher = secured_server.url_for(BusUser.IPAM), secured_server.url_for(BusUser.WATCHER)
    async with (replica(ipam, "a", settings=ReplicaSettings()), watching(watcher, manifests),
                announcing(secured_server.node_url("node-a"))):
        await async_wait_until(lambda: established(bus), timeout=20,
                               what="the TCP MD5 session with the inline password Established")
        await async_wait_until(lambda: config_in_force(bus), timeout=10, what="the configuration recorded by ipam")

        for stream in (StreamName.K8S, StreamName.IPAM):
            messages = await every_message(bus, stream)
            assert any(b"metalbusInlinePassword" in m for m in messages), f"{stream}: the peer is there, marked"
            for secret in (PASSWORD, SECRET_PASSWORD, USERNAME, LAST_APPLIED):
                assert not any(secret.encode() in m for m in messages), f"{secret} found in {stream}"

        secrets = await every_message(bus, StreamName.SECRETS)
        assert not any(USERNAME.encode() in m for m in secrets), "a Secret key besides the password was published"
        stored = await bus.last_value(StreamName.SECRETS, f"k8s.secret.{NS}.md5")
        assert stored is not None and isinstance(stored.event, SecretObserved)
        assert stored.event.data == {"password": SECRET_PASSWORD}
        apart = await bus.last_value(StreamName.SECRETS, f"k8s.bgppeerpassword.{NS}.tor")
        assert apart is not None and isinstance(apart.event, BGPPeerPasswordObserved)
        assert apart.event.password == PASSWORD

        # The password removed from the peer: its SECRETS subject is tombstoned, and the session goes with it.
        (manifests / "all.yaml").write_text(configuration(router, inline_password=False))

        async def tombstoned() -> bool:
            value = await bus.last_value(StreamName.SECRETS, f"k8s.bgppeerpassword.{NS}.tor")
            return value is not None and isinstance(value.event, ObjectDeleted)

        await async_wait_until(tombstoned, timeout=10, what="the inline password tombstoned on SECRETS")

        async def gone() -> bool:
            return not await established(bus)

        await async_wait_until(gone, timeout=20, what="the session without MD5 no longer Established")
