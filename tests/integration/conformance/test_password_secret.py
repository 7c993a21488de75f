"""A BGPPeer whose passwordSecret gives no password (missing, not kubernetes.io/basic-auth, without a
``password`` key) makes the configuration Invalid with MetalLB's reason in the ConfigurationState, and
Valid again once the Secret is right; the Secret itself never reaches ipam."""

from __future__ import annotations

import base64
from typing import Any

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.conformance.harness import Cluster, running_metalbus
from tests.integration.conformance.test_configuration_verdicts import configuration_state
from tests.integration.watcher.status.harness import NAMESPACE
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until


def peer() -> dict[str, Any]:
    return {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "tor", "namespace": NAMESPACE},
            "spec": {"myASN": 64512, "peerASN": 64513, "peerAddress": "10.0.0.1", "passwordSecret": {"name": "md5"}}}


def secret(kind: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "md5", "namespace": NAMESPACE}, "type": kind,
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


async def says(cluster: Cluster, result: str, text: str = "") -> None:
    await async_wait_until(lambda: configuration_state(cluster).get("result") == result
                           and text in configuration_state(cluster).get("errorSummary", ""),
                           what=f"ConfigurationState {result} {text!r}")


async def test_a_password_secret_that_gives_no_password_is_a_reason_in_the_configuration_state(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, peer()) as cluster:
        await says(cluster, "Invalid", "BGPPeer metallb-system/tor: spec.passwordSecret: secret ref not found")
        cluster.put(secret("Opaque", password="s3cret"))
        await says(cluster, "Invalid", 'secret type mismatch on "metallb-system/md5", type '
                                       '"kubernetes.io/basic-auth" is expected')
        kube_api.delete_object("secrets", "md5", NAMESPACE)
        cluster.put(secret("kubernetes.io/basic-auth", username="admin"))
        await says(cluster, "Invalid", 'password not specified in the secret "metallb-system/md5"')
        cluster.put(secret("kubernetes.io/basic-auth", password="s3cret"))
        await says(cluster, "Valid")
        kube_api.delete_object("secrets", "md5", NAMESPACE)
        await says(cluster, "Invalid", "secret ref not found")
        assert "s3cret" not in str(configuration_state(cluster))
