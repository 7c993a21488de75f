"""The Kubernetes source on a real nats-server: a BGPPeer's inline password goes to SECRETS alone, follows the
peer's edits and deletion there, and neither it nor any last-applied annotation is in a message of K8S; a Secret
no longer referenced leaves SECRETS every time."""

from __future__ import annotations

import base64
import json
from typing import Any

from schemas.events import BGPPeerPasswordObserved, ConfigObjectObserved, ObjectDeleted, ObjectKind, SecretObserved
from schemas.metallb import INLINE_PASSWORD_KEY, InlinePassword
from services.common.bus import Bus
from services.common.subjects import StreamName
from tests.integration.watcher.files.test_passwords import every_message
from tests.integration.watcher.helpers import NAMESPACE, observing, service, wait_stored
from tests.kubeapi import KubeApi

PASSWORD = "inline-md5-Hv3q"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def applied(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as `kubectl apply` leaves it: a copy of all of it in the last-applied annotation."""
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations[LAST_APPLIED] = json.dumps({**obj, "note": "as-applied"})
    return obj


def peer(*, password: str | None, rv_note: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", "holdTime": f"9{rv_note}s"}
    if password is not None:
        spec["password"] = password
    return applied({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                    "metadata": {"name": "tor", "namespace": NAMESPACE}, "spec": spec})


async def test_an_inline_password_lives_on_secrets_only_and_follows_its_peer(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(applied(service("web")))
    kube_api.put_object(peer(password=PASSWORD))
    async with observing(bus, kube_api):
        apart = await wait_stored(bus, ObjectKind.BGP_PEER_PASSWORD, NAMESPACE, "tor",
                                  lambda e: isinstance(e, BGPPeerPasswordObserved), "the password on SECRETS")
        assert isinstance(apart, BGPPeerPasswordObserved) and apart.password == PASSWORD
        published = await wait_stored(bus, ObjectKind.BGP_PEER, NAMESPACE, "tor", lambda e: True, "the peer on K8S")
        assert isinstance(published, ConfigObjectObserved)
        assert published.raw[INLINE_PASSWORD_KEY] == InlinePassword.SET and "password" not in published.raw["spec"]
        k8s = await every_message(bus, StreamName.K8S)
        assert any(b"ServiceObserved" in m for m in k8s) and any(b"metalbusInlinePassword" in m for m in k8s)
        assert not any(PASSWORD.encode() in m or b"as-applied" in m or b"last-applied" in m for m in k8s)

        kube_api.put_object(peer(password="rotated-Hv3q"))
        await wait_stored(bus, ObjectKind.BGP_PEER_PASSWORD, NAMESPACE, "tor",
                          lambda e: isinstance(e, BGPPeerPasswordObserved) and e.password == "rotated-Hv3q",
                          "the rotated password")
        kube_api.put_object(peer(password=None))
        await wait_stored(bus, ObjectKind.BGP_PEER_PASSWORD, NAMESPACE, "tor", lambda e: isinstance(e, ObjectDeleted),
                          "the removed password tombstoned")
        await wait_stored(bus, ObjectKind.BGP_PEER, NAMESPACE, "tor",
                          lambda e: isinstance(e, ConfigObjectObserved) and INLINE_PASSWORD_KEY not in e.raw,
                          "the peer without a password, unmarked")
        kube_api.put_object(peer(password=PASSWORD, rv_note="0"))
        await wait_stored(bus, ObjectKind.BGP_PEER_PASSWORD, NAMESPACE, "tor",
                          lambda e: isinstance(e, BGPPeerPasswordObserved), "the password back")
        kube_api.delete_object("bgppeers", "tor", NAMESPACE)
        await wait_stored(bus, ObjectKind.BGP_PEER_PASSWORD, NAMESPACE, "tor", lambda e: isinstance(e, ObjectDeleted),
                          "the deleted peer's password tombstoned")
        k8s = await every_message(bus, StreamName.K8S)
        assert not any(b"Hv3q" in m or b"as-applied" in m for m in k8s)


def secret(name: str, password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"password": base64.b64encode(password.encode()).decode()}}


async def test_a_secret_no_longer_referenced_leaves_secrets_every_time(bus: Bus, kube_api: KubeApi) -> None:
    """Each time a peer stops referencing a Secret its password is withdrawn: a second withdrawal of the same
    Secret (same uid) is a message of its own, never dropped as a repeat of the first."""
    kube_api.put_object(secret("md5-a", "pw-a"))
    kube_api.put_object(secret("md5-b", "pw-b"))

    def referencing(name: str) -> dict[str, Any]:
        spec = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", "passwordSecret": {"name": name}}
        return {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                "metadata": {"name": "tor", "namespace": NAMESPACE}, "spec": spec}

    kube_api.put_object(referencing("md5-a"))
    async with observing(bus, kube_api):
        for _ in range(2):
            kube_api.put_object(referencing("md5-b"))
            await wait_stored(bus, ObjectKind.SECRET, NAMESPACE, "md5-a", lambda e: isinstance(e, ObjectDeleted),
                              "md5-a withdrawn")
            kube_api.put_object(referencing("md5-a"))
            await wait_stored(bus, ObjectKind.SECRET, NAMESPACE, "md5-b", lambda e: isinstance(e, ObjectDeleted),
                              "md5-b withdrawn")
            await wait_stored(bus, ObjectKind.SECRET, NAMESPACE, "md5-a", lambda e: isinstance(e, SecretObserved),
                              "md5-a back")
