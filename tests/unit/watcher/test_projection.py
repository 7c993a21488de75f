"""Projections: what the K8S stream should hold after lists and watch events."""

from __future__ import annotations

from typing import Any

from schemas.events import ConfigObjectObserved, EndpointsObserved, ObjectKind
from services.watcher.observe.projection import (
    EndpointsProjection,
    ObjectProjection,
    PeerProjection,
    SecretProjection,
    SecretReferences,
    SecretStates,
)
from services.watcher.observe.translate import (
    Identity,
    config_observed,
    secret_observed,
    service_observed,
    stored_identity,
)

NS = "metallb-system"
errors: list[Exception] = []


def _record(obj: dict[str, Any], error: Exception) -> None:
    errors.append(error)


def _svc(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "d", "uid": f"u-{name}", "resourceVersion": rv}, "spec": {}}


def test_object_projection_follows_list_and_watch() -> None:
    projection = ObjectProjection(ObjectKind.SERVICE, service_observed, on_error=_record)
    projection.replace([_svc("a", "1"), _svc("b", "2"), {"metadata": {}}], "2")
    assert sorted(projection.subjects()) == ["k8s.service.d.a", "k8s.service.d.b"]
    assert len(errors) == 1
    assert projection.apply("MODIFIED", _svc("a", "3")) == ["k8s.service.d.a"]
    a = projection.desired("k8s.service.d.a")
    assert a is not None and a.msg_id == "u-a/3" and a.identity.uid == "u-a"
    assert projection.apply("DELETED", _svc("b", "4")) == ["k8s.service.d.b"]
    assert projection.desired("k8s.service.d.b") is None
    assert projection.tombstone("k8s.service.d.b", Identity("u-b", "2"), "4").msg_id == "u-b/deleted"


def _slice(name: str, service: str, rv: str, *nodes: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "d", "resourceVersion": rv,
                     "labels": {"kubernetes.io/service-name": service} if service else {}},
        "endpoints": [{"nodeName": n, "conditions": {"ready": True}} for n in nodes],
    }


def test_endpoints_fold_moves_with_relabelled_slices_and_empties_into_a_tombstone() -> None:
    projection = EndpointsProjection(on_error=_record)
    projection.replace([_slice("s1", "web", "1", "n1"), _slice("s2", "web", "2", "n2"), _slice("x", "", "3", "n9")],
                       "3")
    assert list(projection.subjects()) == ["k8s.endpoints.d.web"]
    # s2 now belongs to "api": both services change
    assert projection.apply("MODIFIED", _slice("s2", "api", "4", "n2")) == ["k8s.endpoints.d.api",
                                                                             "k8s.endpoints.d.web"]
    web = projection.desired("k8s.endpoints.d.web")
    assert web is not None and isinstance(web.event, EndpointsObserved)
    assert [n.node for n in web.event.nodes] == ["n1"] and "/4/" in web.msg_id
    assert projection.apply("DELETED", _slice("s1", "web", "5")) == ["k8s.endpoints.d.web"]
    assert projection.desired("k8s.endpoints.d.web") is None
    gone = projection.tombstone("k8s.endpoints.d.web", Identity("", "h"), "5")
    assert gone.msg_id == "endpoints/d/web/5/deleted"


def _peer(name: str, secret: str) -> dict[str, Any]:
    return {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
            "metadata": {"name": name, "namespace": NS, "uid": f"u-{name}", "resourceVersion": "1"},
            "spec": {"passwordSecret": {"name": secret, "namespace": NS}}}


def _secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"u-{name}", "resourceVersion": "1"}, "data": {}}


def test_secrets_follow_the_references_of_bgp_peers() -> None:
    references = SecretReferences()
    pokes: list[int] = []
    references.listen(lambda: pokes.append(1))
    peers = PeerProjection(config_observed, namespace=NS, references=references, on_error=_record)
    secrets = SecretProjection(secret_observed, references=references, on_error=_record)
    secrets.replace([_secret("a"), _secret("b"), _secret("c")], "1")
    assert list(secrets.subjects()) == [] and not references.known

    peers.replace([_peer("p1", "a")], "1")
    assert references.known and references.names == {"a"} and len(pokes) == 1
    assert secrets.refresh() == [f"k8s.secret.{NS}.a"]
    assert list(secrets.subjects()) == [f"k8s.secret.{NS}.a"]

    peers.apply("MODIFIED", _peer("p1", "b"))
    assert sorted(secrets.refresh()) == [f"k8s.secret.{NS}.a", f"k8s.secret.{NS}.b"]
    assert secrets.desired(f"k8s.secret.{NS}.a") is None and secrets.desired(f"k8s.secret.{NS}.b") is not None
    peers.apply("MODIFIED", _peer("p1", "b"))  # same references: no poke
    assert len(pokes) == 2 and secrets.refresh() == []
    peers.apply("DELETED", _peer("p1", "b"))
    assert references.names == frozenset() and secrets.refresh() == [f"k8s.secret.{NS}.b"]


def _basic_auth(name: str, rv: str, *, password: bool = True, kind: str = "kubernetes.io/basic-auth"
                ) -> dict[str, Any]:
    data = {"password": "czNjcmV0"} if password else {"username": "dXNlcg=="}
    return {"metadata": {"name": name, "namespace": NS, "uid": f"u-{name}", "resourceVersion": rv},
            "type": kind, "data": data}


def test_each_peer_says_what_its_password_secret_gives_and_follows_it() -> None:
    """MetalLB's checks of a passwordSecret, made where the Secret is seen: the peer is published with
    the state beside its spec, so ipam judges it (the Secret never reaches ipam), and again as it changes."""
    references, states = SecretReferences(), SecretStates()
    pokes: list[int] = []
    states.listen(lambda: pokes.append(1))
    peers = PeerProjection(config_observed, namespace=NS, references=references, on_error=_record, states=states)
    secrets = SecretProjection(secret_observed, references=references, on_error=_record, states=states)
    subject = f"k8s.bgppeer.{NS}.p1"

    def marker() -> Any:
        """What is said beside the peer, and the message id it goes with (unique per state: the version stays)."""
        observed = peers.desired(subject)
        assert observed is not None and isinstance(observed.event, ConfigObjectObserved)
        return observed.event.raw.get("metalbusPasswordSecret"), observed.msg_id

    peers.replace([_peer("p1", "md5")], "1")
    assert marker()[0] is None  # the Secrets are not known yet: nothing said
    secrets.replace([_basic_auth("other", "5")], "9")
    assert pokes == [1] and peers.refresh() == [subject]
    assert marker() == ({"problem": "missing", "version": ""}, "u-p1/1+missing@")

    secrets.apply("ADDED", _basic_auth("md5", "10", kind="Opaque"))
    assert peers.refresh() == [subject] and marker()[0] == {"problem": "wrongType", "version": "10"}
    secrets.apply("MODIFIED", _basic_auth("md5", "11", password=False))
    assert peers.refresh() == [subject] and marker()[0] == {"problem": "noPassword", "version": "11"}
    secrets.apply("MODIFIED", _basic_auth("md5", "12"))
    assert peers.refresh() == [subject] and marker() == ({"version": "12"}, "u-p1/1+usable@12")
    secrets.apply("MODIFIED", _basic_auth("other", "13"))  # another Secret: the peer does not change
    assert peers.refresh() == []
    secrets.apply("DELETED", _basic_auth("md5", "14"))
    assert peers.refresh() == [subject] and marker()[0] == {"problem": "missing", "version": "14"}

    # what the stream gives back has the same identity: a relist publishes nothing new
    observed = peers.desired(subject)
    assert observed is not None and stored_identity(observed.event) == observed.identity
    # a marker that came with the object itself is never believed
    forged = {**_peer("p2", "md5"), "metalbusPasswordSecret": {"version": "1"}}
    event = config_observed(forged).event
    assert isinstance(event, ConfigObjectObserved) and "metalbusPasswordSecret" not in event.raw
