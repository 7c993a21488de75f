"""A BGPPeer whose BFDProfile has echoMode, sent a pool with IPv6 addresses by a BGPAdvertisement, makes the
configuration Invalid with MetalLB's reason in the ConfigurationState (the echo function is IPv4 only), and
Valid again once echo is off."""

from __future__ import annotations

from typing import Any

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.conformance.harness import running_metalbus
from tests.integration.conformance.test_password_secret import says
from tests.integration.watcher.status.harness import NAMESPACE
from tests.kubeapi import KubeApi

TOR = {"myASN": 64512, "peerASN": 64513, "peerAddress": "10.0.0.1", "bfdProfile": "echo"}
METALLB_SAYS = (
    "pool dual has bgpadvertisement all which references peer tor which has bfd echo enabled, which is not possible"
)


def metallb(kind: str, name: str, spec: dict[str, Any], version: str = "v1beta1") -> dict[str, Any]:
    return {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec}  # fmt: skip


async def test_an_echo_profile_on_a_peer_sent_ipv6_is_a_reason_in_the_configuration_state(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    objects = (
        metallb("IPAddressPool", "dual", {"addresses": ["192.168.10.0/24", "fc00::/112"]}),
        metallb("BGPAdvertisement", "all", {}),
        metallb("BFDProfile", "echo", {"echoMode": True}),
        metallb("BGPPeer", "tor", TOR, version="v1beta2"),
    )
    async with running_metalbus(bus, nats_server, kube_api, *objects) as cluster:
        await says(cluster, "Invalid", f"BGPPeer {NAMESPACE}/tor: spec.bfdProfile: {METALLB_SAYS}")
        cluster.put(metallb("BFDProfile", "echo", {"echoMode": False}))
        await says(cluster, "Valid")
