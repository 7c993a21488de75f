"""Every credential tries to break what is not its own, on a real nats-server running exactly the shipped
configuration (rendered from k8s/overlays/dev). Each attack is refused; each has a control showing the
legitimate operation works, so a refusal cannot come from a broken setup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.events import AnnouncerHeartbeat, NodeObserved, ObjectKind, ObjectRef
from schemas.events.codec import encode, wrap
from services.common.bus import Bus, BusSettings, Received
from services.common.follower import Follower
from services.common.permissions import ACCOUNT_MAX_FILE, BusUser
from services.common.subjects import (
    CONNECTIONS_CLOSED,
    DURABLES,
    ROLL_CALL,
    STREAMS,
    StreamName,
    announce_subject,
    heartbeat_subject,
    k8s_subject,
    observed_subject,
)
from tests.builders import service
from tests.security.probe import ANSWER_TIMEOUT, probe, refused_connection
from tests.security.shipped import ShippedCluster, shipped_cluster

SERVICE_USERS = (BusUser.WATCHER, BusUser.IPAM, BusUser.OPERATOR, BusUser.AUTHENTICATOR)
NODE, OTHER_NODE = "node-1", "node-3"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedCluster]:
    with shipped_cluster("dev", tmp_path_factory.mktemp("shipped")) as cluster:
        yield cluster


def urls(shipped: ShippedCluster) -> dict[str, str]:
    """Every credential a component holds: the static users' and one node's."""
    found = {user.value: shipped.url_for(user) for user in SERVICE_USERS}
    found[NODE] = shipped.node_url(NODE)
    return found


def heartbeat(node: str, *, leaving: bool = False) -> bytes:
    return encode(wrap(AnnouncerHeartbeat(node=node, instance="i", sequence=1, leaving=leaving),
                       producer=f"announcer/{node}"))


def stream_config(name: str, **changes: object) -> dict[str, object]:
    spec = next(spec for spec in STREAMS if spec.name.value == name)
    return {"name": name, "subjects": list(spec.subjects), "storage": "file", **changes}


# --- administration: streams and durables -----------------------------------------------------------

ADMINISTRATIVE_ATTACKS: dict[str, tuple[str, dict[str, Any]]] = {
    "IPAM max_age 2 s (wipes every allocation)": ("$JS.API.STREAM.UPDATE.IPAM", stream_config("IPAM", max_age=2e9)),
    "seal K8S": ("$JS.API.STREAM.UPDATE.K8S", stream_config("K8S", sealed=True)),
    "source ANNOUNCE into IPAM with a subject transform (forged decisions)": (
        "$JS.API.STREAM.UPDATE.IPAM", stream_config("IPAM", sources=[{"name": "ANNOUNCE", "subject_transforms": [
            {"src": "announce.>", "dest": "ipam.allocation.>"}]}])),
    "create a stream over the decision subjects": (
        "$JS.API.STREAM.CREATE.FORGED", {"name": "FORGED", "subjects": ["ipam.forged.>"]}),
    "delete IPAM": ("$JS.API.STREAM.DELETE.IPAM", {}),
    "purge K8S": ("$JS.API.STREAM.PURGE.K8S", {}),
    "delete one decision": ("$JS.API.STREAM.MSG.DELETE.IPAM", {"seq": 1}),
    "delete the watcher's durable": ("$JS.API.CONSUMER.DELETE.IPAM.watcher-status", {}),
    "redefine the watcher's durable (filter nothing)": (
        "$JS.API.CONSUMER.CREATE.IPAM.watcher-status", {"stream_name": "IPAM", "config": {
            "durable_name": "watcher-status", "name": "watcher-status", "ack_policy": "explicit",
            "filter_subject": "ipam.nothing"}}),
    "drain the watcher's durable": ("$JS.API.CONSUMER.MSG.NEXT.IPAM.watcher-status", {"batch": 100}),
}


@pytest.mark.parametrize("attack", ADMINISTRATIVE_ATTACKS)
@pytest.mark.parametrize("holder", [*(user.value for user in SERVICE_USERS if user is not BusUser.WATCHER), NODE])
async def test_no_component_administers_the_bus(shipped: ShippedCluster, holder: str, attack: str) -> None:
    subject, payload = ADMINISTRATIVE_ATTACKS[attack]
    async with probe(urls(shipped)[holder]) as attacker:
        refused, answer = await attacker.request(subject, payload)
        assert refused, f"{holder} could {attack}: {answer}"


async def test_the_watcher_administers_nothing_but_its_own_durables(shipped: ShippedCluster) -> None:
    async with probe(urls(shipped)[BusUser.WATCHER.value]) as watcher:
        for attack, (subject, payload) in ADMINISTRATIVE_ATTACKS.items():
            if "watcher's durable" in attack:
                continue
            refused, answer = await watcher.request(subject, payload)
            assert refused, f"the watcher could {attack}: {answer}"
        # control: its own durable answers it
        refused, answer = await watcher.request("$JS.API.CONSUMER.INFO.IPAM.watcher-status")
        assert not refused and answer["name"] == "watcher-status"


async def test_control_the_admin_and_the_streams_limits(shipped: ShippedCluster) -> None:
    async with probe(shipped.url_for(BusUser.ADMIN)) as admin:
        for spec in STREAMS:
            refused, info = await admin.request(f"$JS.API.STREAM.INFO.{spec.name.value}")
            assert not refused and info["config"]["max_bytes"] == spec.max_bytes > 0
            if spec.name in (StreamName.K8S, StreamName.SECRETS, StreamName.IPAM):
                assert info["config"]["deny_delete"] and info["config"]["deny_purge"]
        refused, account = await admin.request("$JS.API.INFO")
        assert not refused and account["limits"]["max_storage"] == ACCOUNT_MAX_FILE  # nobody fills the disk
        # deny_purge holds against the admin too: the decision log is not purged through the API
        refused, answer = await admin.request("$JS.API.STREAM.PURGE.IPAM")
        assert not refused and answer.get("error"), answer
        for durable in DURABLES:
            refused, answer = await admin.request(f"$JS.API.CONSUMER.INFO.{durable.stream.value}.{durable.name}")
            assert not refused and answer["name"] == durable.name


@pytest.mark.parametrize("holder", [BusUser.WATCHER.value, BusUser.IPAM.value, BusUser.OPERATOR.value, NODE])
async def test_control_every_component_sees_the_provisioned_streams(shipped: ShippedCluster, holder: str) -> None:
    """What a service checks before it starts (not ready while a stream is missing), and where its readers
    start from: with its own credential, every stream is there, ending where the admin sees it end."""
    async with (await Bus.connect(BusSettings(url=urls(shipped)[holder]), producer=f"{holder}/test") as bus,
                await Bus.connect(BusSettings(url=shipped.url_for(BusUser.ADMIN)), producer="admin/test") as admin):
        assert await bus.missing_streams() == []
        for spec in STREAMS:
            assert await bus.last_sequence(spec.name) == await admin.last_sequence(spec.name)


# --- one node against another ---------------------------------------------------------------------------


async def test_a_node_cannot_speak_for_another(shipped: ShippedCluster) -> None:
    async with probe(shipped.node_url(NODE)) as node, probe(shipped.url_for(BusUser.IPAM)) as ipam:
        heard = await ipam.client.subscribe("heartbeat.announcer.*")
        assert await node.publish_refused(heartbeat_subject(OTHER_NODE), heartbeat(OTHER_NODE, leaving=True))
        assert await node.publish_refused(announce_subject(OTHER_NODE, "192.0.2.7"))
        assert await node.publish_refused("ipam.allocation.default.web")
        assert await node.publish_refused("k8s.bgppeer.metallb-system.forged")
        # control: its own heartbeat reaches ipam, and nothing from the forgery did
        assert not await node.publish_refused(heartbeat_subject(NODE), heartbeat(NODE))
        message = await heard.next_msg(timeout=5)
        assert message.subject == heartbeat_subject(NODE)
        # control: its own report lands in ANNOUNCE
        refused, ack = await node.request(announce_subject(NODE, "192.0.2.7"))
        assert not refused and ack.get("stream") == "ANNOUNCE", ack


async def test_a_node_hears_no_heartbeat_and_cannot_forge_a_closed_connection(shipped: ShippedCluster) -> None:
    async with probe(shipped.node_url(NODE)) as node, probe(shipped.url_for(BusUser.IPAM)) as ipam, \
            probe(shipped.url_for(BusUser.ADMIN)) as admin, probe(shipped.url_for(BusUser.WATCHER)) as watcher:
        assert await node.subscribe_refused(heartbeat_subject(OTHER_NODE))
        assert await node.subscribe_refused("heartbeat.announcer.*")
        assert await node.subscribe_refused(heartbeat_subject(NODE))  # its liveness is a round trip, not an echo
        assert await node.subscribe_refused(CONNECTIONS_CLOSED)
        # the server's word on closed connections: nobody may forge it, admin included
        assert await node.publish_refused(CONNECTIONS_CLOSED)
        assert await ipam.publish_refused(CONNECTIONS_CLOSED)
        assert await admin.publish_refused(CONNECTIONS_CLOSED)
        assert await watcher.publish_refused(CONNECTIONS_CLOSED)  # it would depose a live leader
        # control: ipam and the watcher (its standby takes a dead leader's Lease) hear it
        assert not await ipam.subscribe_refused(CONNECTIONS_CLOSED)
        assert not await watcher.subscribe_refused(CONNECTIONS_CLOSED)


async def test_a_node_cannot_call_the_roll(shipped: ShippedCluster) -> None:
    """A roll call makes every announcer heartbeat at once: from a node it would be a flood on ipam."""
    async with probe(shipped.node_url(NODE)) as node, probe(shipped.url_for(BusUser.IPAM)) as ipam, \
            probe(shipped.node_url(OTHER_NODE)) as other, probe(shipped.url_for(BusUser.WATCHER)) as watcher:
        assert await node.publish_refused(ROLL_CALL)
        assert await watcher.publish_refused(ROLL_CALL)  # it hears no heartbeat: nothing to call them for
        # control: ipam calls the roll and every node hears it
        calls = await other.client.subscribe(ROLL_CALL)
        await other.client.flush()
        assert not await ipam.publish_refused(ROLL_CALL)
        assert (await calls.next_msg(timeout=5)).subject == ROLL_CALL


@pytest.mark.parametrize("credential", ["another node's token", "no token", "a static user's name"])
async def test_a_node_is_let_in_only_with_its_own_token(shipped: ShippedCluster, credential: str) -> None:
    base = shipped.url
    url = {
        "another node's token": shipped.node_url(OTHER_NODE).replace(f"node-{OTHER_NODE}:", f"node-{NODE}:"),
        "no token": base.replace("nats://", f"nats://node-{NODE}:@"),
        "a static user's name": shipped.node_url(NODE).replace(f"node-{NODE}:", "watcher:"),
    }[credential]
    assert await refused_connection(url) is not None
    assert await refused_connection(shipped.node_url(NODE)) is None  # control


# --- what a node reads of the observed state -------------------------------------------------------------

OWN_NODE, OTHER_NODES_NODE = k8s_subject(ObjectKind.NODE, "", NODE), k8s_subject(ObjectKind.NODE, "", OTHER_NODE)
SERVICE = k8s_subject(ObjectKind.SERVICE, "default", "web")


def node_observed(node: str, *, version: str) -> NodeObserved:
    return NodeObserved(ref=ObjectRef(name=node, uid=node, resource_version=version), labels={"rack": version})


def reader(deliver_to: str, **config: object) -> dict[str, Any]:
    """A consumer creation on K8S delivering the current world to ``deliver_to``."""
    return {"stream_name": "K8S", "config": {"ack_policy": "none", "deliver_policy": "last_per_subject",
                                             "deliver_subject": deliver_to, "inactive_threshold": 5_000_000_000,
                                             "mem_storage": True, **config}}


@pytest.fixture(scope="module")
async def nodes_and_a_service(shipped: ShippedCluster) -> None:
    async with await Bus.connect(BusSettings(url=shipped.url_for(BusUser.WATCHER)), producer="watcher/test") as bus:
        for event in (node_observed(NODE, version="1"), node_observed(OTHER_NODE, version="1"), service("web")):
            await bus.publish(observed_subject(event), event)


@pytest.mark.usefixtures("nodes_and_a_service")
async def test_a_node_reads_no_other_node_nor_any_service(shipped: ShippedCluster) -> None:
    async with probe(urls(shipped)[NODE]) as node:
        inbox = f"{node.client._inbox_prefix.decode()}.reader"
        attacks: dict[str, tuple[str, dict[str, Any]]] = {
            "every node, unnamed": ("$JS.API.CONSUMER.CREATE.K8S", reader(inbox, filter_subject="k8s.node.>")),
            "another node, unnamed": ("$JS.API.CONSUMER.CREATE.K8S", reader(inbox, filter_subject=OTHER_NODES_NODE)),
            "the world, unfiltered": ("$JS.API.CONSUMER.CREATE.K8S", reader(inbox, deliver_policy="all")),
            "its own node, filter only in the body": ("$JS.API.CONSUMER.CREATE.K8S.mine",
                                                      reader(inbox, filter_subject=OWN_NODE)),
            "another node": (f"$JS.API.CONSUMER.CREATE.K8S.theirs.{OTHER_NODES_NODE}",
                             reader(inbox, filter_subject=OTHER_NODES_NODE)),
            "a Service": (f"$JS.API.CONSUMER.CREATE.K8S.web.{SERVICE}", reader(inbox, filter_subject=SERVICE)),
            "everything below k8s": ("$JS.API.CONSUMER.CREATE.K8S.all.k8s.>", reader(inbox, filter_subject="k8s.>")),
            "another node's last message": ("$JS.API.STREAM.MSG.GET.K8S", {"last_by_subj": OTHER_NODES_NODE}),
            "a Service directly": ("$JS.API.DIRECT.GET.K8S", {"last_by_subj": SERVICE}),
            "a Service directly, by subject": (f"$JS.API.DIRECT.GET.K8S.{SERVICE}", {}),
            "pulling from another reader": ("$JS.API.CONSUMER.MSG.NEXT.K8S.ipam-reader", {"batch": 10}),
        }
        for attack, (subject, payload) in attacks.items():
            refused, answer = await node.request(subject, payload)
            assert refused, f"node {NODE} read K8S: {attack}: {answer}"
        # Its own node's subject with another filter in the body: let through by the permissions, refused by
        # the server, which holds the configuration to the subject's filter.
        for config in ({"filter_subject": "k8s.>"}, {"filter_subject": OTHER_NODES_NODE},
                       {"filter_subjects": [OWN_NODE, SERVICE]}, {}):
            refused, answer = await node.request(f"$JS.API.CONSUMER.CREATE.K8S.smuggled.{OWN_NODE}",
                                                 reader(inbox, **config))
            assert not refused and "error" in answer, f"node {NODE} read K8S through its own subject {config}: {answer}"


@pytest.mark.usefixtures("nodes_and_a_service")
async def test_control_a_node_reads_its_own_node_as_the_announcer_does(shipped: ShippedCluster) -> None:
    """The BGP agent's reads: its own Node as it is, then its changes (``BgpAgent._read``)."""
    async with await Bus.connect(BusSettings(url=urls(shipped)[NODE]), producer=f"announcer/{NODE}") as bus:
        end = await bus.last_sequence(StreamName.K8S)
        seen: list[Received] = []
        await bus.replay(StreamName.K8S, seen.append, subjects=[OWN_NODE], last_per_subject=True)
        assert [received.event for received in seen] == [node_observed(NODE, version="1")]
        follower = Follower(bus, StreamName.K8S, start_sequence=end + 1, subjects=[OWN_NODE])
        try:
            async with await Bus.connect(BusSettings(url=shipped.url_for(BusUser.WATCHER)),
                                         producer="watcher/test") as watcher:
                for event in (node_observed(OTHER_NODE, version="2"), node_observed(NODE, version="2")):
                    await watcher.publish(observed_subject(event), event)
            arrived = await follower.fetch(wait=ANSWER_TIMEOUT)
            assert [received.event for received in arrived] == [node_observed(NODE, version="2")]
        finally:
            await follower.close()


# --- replies and passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize("holder", [BusUser.OPERATOR.value, BusUser.IPAM.value, BusUser.WATCHER.value, NODE])
async def test_nobody_reads_another_users_replies(shipped: ShippedCluster, holder: str) -> None:
    async with probe(urls(shipped)[holder]) as eavesdropper:
        assert await eavesdropper.subscribe_refused("_INBOX.>")
        for victim in ("_INBOX_node_node-2.>", "_INBOX_watcher.>", "_INBOX_admin.>"):
            if not victim.startswith(eavesdropper.client._inbox_prefix.decode()):
                assert await eavesdropper.subscribe_refused(victim), f"{holder} read {victim}"
        # control: its own replies reach it
        refused, _ = await eavesdropper.request("$JS.API.STREAM.INFO.K8S")
        assert not refused


@pytest.mark.parametrize("holder", [BusUser.OPERATOR.value, BusUser.IPAM.value])
async def test_only_the_watcher_and_the_announcers_read_passwords(shipped: ShippedCluster, holder: str) -> None:
    async with probe(urls(shipped)[holder]) as reader:
        for subject in ("$JS.API.CONSUMER.CREATE.SECRETS", "$JS.API.DIRECT.GET.SECRETS",
                        "$JS.API.STREAM.MSG.GET.SECRETS"):
            refused, answer = await reader.request(subject, {"stream_name": "SECRETS", "config": {}, "seq": 1})
            assert refused, f"{holder} read SECRETS through {subject}: {answer}"
    for allowed in (BusUser.WATCHER.value, NODE):  # control
        async with probe(urls(shipped)[allowed]) as reader:
            refused, answer = await reader.request("$JS.API.CONSUMER.CREATE.SECRETS", {
                "stream_name": "SECRETS", "config": {"ack_policy": "none", "deliver_policy": "all",
                                                     "inactive_threshold": 5_000_000_000}})
            assert not refused and "error" not in answer, answer


async def test_a_password_is_never_in_a_log_line(shipped: ShippedCluster, tmp_path: Path) -> None:
    password = shipped.credentials.password(BusUser.WATCHER)
    logs = (shipped.directory / "authenticator.log").read_text(errors="replace")
    assert shipped.credentials.password(BusUser.AUTHENTICATOR) not in logs
    assert password not in logs
    assert json.dumps(password) not in shipped.log()
