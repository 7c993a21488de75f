"""Per-node identity the Kubernetes way, end to end: the shipped NATS configuration (k8s/overlays/dev), its
authenticator run as the shipped container (``--token-review``) against the Kubernetes API stand-in, and a real
``metalbus announcer`` whose password file holds its pod's projected token (audience ``metalbus-nats``).

Node worker-1 gets in with its own pod's token and may publish only its own heartbeat and reports; worker-2's
token presented as worker-1 is refused, and the authenticator says why (its log and its metric). No node-token
key is given to the authenticator: the Kubernetes API is its only verifier.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import AnnouncerHeartbeat
from schemas.events.codec import decode
from services.authenticator.identity import Refusal
from services.authenticator.service import GRANTED
from services.common.credentials import with_credentials
from services.common.permissions import BusUser, node_user
from services.common.subjects import HEARTBEATS, announce_subject, heartbeat_subject
from tests.announcer_pods import AnnouncerAccount, projected_token, schedule_announcer
from tests.kubeapi import KubeApi
from tests.kubeapi.fixtures import BOOKMARK_INTERVAL
from tests.kubeapi.tokens import API_AUDIENCE
from tests.security.probe import probe, refused_connection
from tests.security.shipped import ShippedCluster, shipped_cluster
from tests.security.test_attacks import heartbeat
from tests.waiting import wait_until

NODE, OTHER_NODE = "worker-1", "worker-2"


@pytest.fixture(scope="module")
def kubernetes_api() -> Iterator[KubeApi]:
    with KubeApi(bookmark_interval=BOOKMARK_INTERVAL) as api:
        yield api


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, kubernetes_api: KubeApi) -> Iterator[ShippedCluster]:
    directory = tmp_path_factory.mktemp("token-review")
    kubeconfig = kubernetes_api.kubeconfig(directory / "kubeconfig")
    with shipped_cluster("dev", directory / "nats", kubeconfig=kubeconfig) as cluster:
        wait_until(lambda: authenticator_ready(cluster), timeout=30, what="the authenticator to be ready")
        yield cluster


def authenticator_ready(cluster: ShippedCluster) -> bool:
    assert cluster.authenticator is not None
    if cluster.authenticator.poll() is not None:
        raise AssertionError("the authenticator exited:\n" + (cluster.directory / "authenticator.log").read_text())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.authenticator_port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def answers(cluster: ShippedCluster) -> dict[str, float]:
    """The authenticator's answers so far, by verdict (``metalbus_authenticator_answers_total``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.authenticator_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {sample.labels["verdict"]: sample.value for family in text_string_to_metric_families(text)
            if family.name == "metalbus_authenticator_answers" for sample in family.samples
            if sample.name.endswith("_total")}


def as_node(cluster: ShippedCluster, node: str, token: str) -> str:
    return with_credentials(cluster.url, node_user(node), token)


def password_file(directory: Path, token: str) -> Path:
    path = directory / "token"
    path.write_text(token)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("pod_node_info", [True, False], ids=["kubernetes 1.30+", "before 1.30 (the pod is read)"])
async def test_an_announcer_is_its_node_with_its_pods_token_and_speaks_for_nobody_else(
        shipped: ShippedCluster, kubernetes_api: KubeApi, tmp_path: Path, pod_node_info: bool) -> None:
    token = projected_token(kubernetes_api, schedule_announcer(kubernetes_api, node=NODE),
                            pod_node_info=pod_node_info)
    command = [sys.executable, "-m", "services.cli", "announcer", "--node", NODE, "--nats", shipped.url,
               "--nats-password-file", str(password_file(tmp_path, token)),
               "--http-port", "0", "--http-address", "127.0.0.1"]
    answered = answers(shipped)
    async with probe(shipped.url_for(BusUser.IPAM)) as ipam:
        heard = await ipam.client.subscribe(HEARTBEATS)
        with (tmp_path / "announcer.log").open("wb") as log:
            announcer = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            message = await heard.next_msg(timeout=30)
        finally:
            announcer.terminate()
            announcer.wait(15)
        beat = decode(message.data).event
        assert message.subject == heartbeat_subject(NODE)
        assert isinstance(beat, AnnouncerHeartbeat) and beat.node == NODE

        async with probe(as_node(shipped, NODE, token)) as node:
            assert await node.publish_refused(heartbeat_subject(OTHER_NODE), heartbeat(OTHER_NODE, leaving=True))
            assert await node.publish_refused(announce_subject(OTHER_NODE, "192.0.2.7"))
            assert await node.publish_refused("ipam.allocation.default.web")
            assert not await node.publish_refused(heartbeat_subject(NODE), heartbeat(NODE))  # control
        # Until the control arrives (the announcer's last beats first), ipam hears nobody else: no forgery.
        while True:
            message = await heard.next_msg(timeout=10)
            assert message.subject == heartbeat_subject(NODE)
            if decode(message.data).event.instance == "i":  # type: ignore[union-attr]
                break
    now = answers(shipped)
    assert now.pop(GRANTED) == answered.pop(GRANTED, 0.0) + 2  # the announcer, then the probe
    assert now == answered  # nothing refused


def another_nodes_token(api: KubeApi) -> str:
    return projected_token(api, schedule_announcer(api, node=OTHER_NODE))


def own_token_for_the_kubernetes_api(api: KubeApi) -> str:
    return projected_token(api, schedule_announcer(api, node=NODE), audiences=[API_AUDIENCE])


def another_accounts_token_on_the_node(api: KubeApi) -> str:
    watcher = AnnouncerAccount("metallb-system", "metalbus-watcher")
    return projected_token(api, schedule_announcer(api, node=NODE, account=watcher), account=watcher)


REFUSED: dict[str, tuple[Callable[[KubeApi], str], Refusal]] = {
    "another node's token": (another_nodes_token, Refusal.WRONG_NODE),
    "its own pod's token for the Kubernetes API": (own_token_for_the_kubernetes_api, Refusal.TOKEN_NOT_AUTHENTICATED),
    "another service account's token on its node": (another_accounts_token_on_the_node,
                                                    Refusal.WRONG_SERVICE_ACCOUNT),
}


@pytest.mark.parametrize("credential", REFUSED)
async def test_a_token_that_is_not_the_nodes_own_is_refused_with_its_reason(
        shipped: ShippedCluster, kubernetes_api: KubeApi, credential: str) -> None:
    make_token, reason = REFUSED[credential]
    before = answers(shipped).get(reason.value, 0.0)
    assert await refused_connection(as_node(shipped, NODE, make_token(kubernetes_api))) is not None
    assert answers(shipped).get(reason.value, 0.0) == before + 1
    assert f'msg="connection refused" reason={reason.value} user=\'node-{NODE}\'' in (
        shipped.directory / "authenticator.log").read_text()
    # control: the node's own pod's token is let in
    own = projected_token(kubernetes_api, schedule_announcer(kubernetes_api, node=NODE))
    assert await refused_connection(as_node(shipped, NODE, own)) is None
