"""What the watcher never publishes on K8S: a BGPPeer's inline password (it goes to SECRETS, apart, and the peer
keeps only a marker that lets the configuration check judge it the same), the last-applied annotation of any
kind, and any key of a referenced Secret but ``password``."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import BGPPeerPasswordObserved, ConfigObjectObserved, ObjectDeleted, ObjectKind, SecretObserved
from schemas.events.codec import encode, wrap
from schemas.metallb import INLINE_PASSWORD_KEY, BGPPeer, InlinePassword, InvalidConfigObject, parse_config_object
from services.common.subjects import StreamName, observed_stream
from services.watcher.observe.projection import PeerPasswordProjection
from services.watcher.observe.translate import (
    LAST_APPLIED_ANNOTATION,
    Identity,
    Observation,
    RawObject,
    Untranslatable,
    config_observed,
    kube_proxy_observed,
    namespace_observed,
    node_observed,
    peer_password_observed,
    secret_observed,
    service_observed,
    stored_identity,
)

NS = "metallb-system"
PASSWORD = "tcp-md5-Zq8v"


def peer(name: str = "tor", *, version: str = "v1beta2", rv: str = "7", **spec: Any) -> RawObject:
    return {
        "apiVersion": f"metallb.io/{version}", "kind": "BGPPeer",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": rv},
        "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", **spec},
    }


def wire(observation: Observation) -> bytes:
    return encode(wrap(observation.event, producer="watcher/test"))


def test_an_inline_password_leaves_its_bgp_peer_for_secrets_and_a_marker_stays() -> None:
    obj = peer(password=PASSWORD, holdTime="9s")
    published = config_observed(obj)
    assert isinstance(published.event, ConfigObjectObserved)
    assert PASSWORD.encode() not in wire(published)
    assert "password" not in published.event.raw["spec"] and published.event.raw["spec"]["holdTime"] == "9s"
    assert published.event.raw[INLINE_PASSWORD_KEY] == InlinePassword.SET
    assert obj["spec"]["password"] == PASSWORD, "the input was changed"
    parsed = parse_config_object(published.event.raw)
    assert isinstance(parsed, BGPPeer) and parsed.has_inline_password and parsed.spec.password == ""

    apart = peer_password_observed(obj)
    assert apart is not None and isinstance(apart.event, BGPPeerPasswordObserved)
    assert apart.subject == f"k8s.bgppeerpassword.{NS}.tor"
    assert observed_stream(ObjectKind.BGP_PEER_PASSWORD) is StreamName.SECRETS
    assert apart.event.password == PASSWORD and apart.event.ref == published.event.ref


@pytest.mark.parametrize(("password", "marker"), [
    ("a\nb", InlinePassword.LINE_BREAKS),
    ("a\rb", InlinePassword.LINE_BREAKS),
    (12345, InlinePassword.NOT_TEXT),
    ({"from": "x"}, InlinePassword.NOT_TEXT),
    ("lone \ud800", InlinePassword.NOT_TEXT),
    ("", None),
    (None, None),
])
def test_an_unusable_password_is_taken_out_all_the_same_and_never_sent_apart(
    password: object, marker: InlinePassword | None
) -> None:
    published = config_observed(peer(password=password))
    assert isinstance(published.event, ConfigObjectObserved)
    assert "password" not in published.event.raw["spec"]
    assert published.event.raw.get(INLINE_PASSWORD_KEY) == marker
    assert peer_password_observed(peer(password=password)) is None


def test_a_marker_that_came_with_the_object_is_never_believed() -> None:
    published = config_observed({**peer(), INLINE_PASSWORD_KEY: "set"})
    assert isinstance(published.event, ConfigObjectObserved) and INLINE_PASSWORD_KEY not in published.event.raw
    assert peer_password_observed({**peer(), INLINE_PASSWORD_KEY: "set"}) is None


def verdict(raw: RawObject) -> tuple[str, str] | None:
    """Field and reason of the first problem the configuration check finds, None when the object is valid."""
    try:
        parse_config_object(raw)
    except InvalidConfigObject as error:
        return error.field, error.reason
    return None


@pytest.mark.parametrize("obj", [
    peer(password=PASSWORD),
    peer(password="two\nlines"),
    peer(password=PASSWORD, passwordSecret={"name": "md5"}),
    peer(passwordSecret={"name": "md5"}),
    peer(version="v1beta1", password=PASSWORD),
    peer(version="v1beta1", password="two\nlines"),
    peer(version="v1beta1", password=PASSWORD, passwordSecret={"name": "ignored in v1beta1"}),
], ids=["inline", "line-breaks", "both", "secret", "v1beta1", "v1beta1-line-breaks", "v1beta1-secret-ignored"])
def test_the_configuration_check_judges_the_published_peer_as_the_original(obj: RawObject) -> None:
    published = config_observed(obj).event
    assert isinstance(published, ConfigObjectObserved)
    assert verdict(published.raw) == verdict(obj)


def test_a_password_that_is_not_a_string_is_refused_without_being_quoted() -> None:
    obj = peer(password=987654321)
    assert "987654321" in str(verdict(obj))  # the object as written: pydantic quotes the input
    published = config_observed(obj).event
    assert isinstance(published, ConfigObjectObserved)
    assert verdict(published.raw) == ("spec.password", "password must be a string")


LAST_APPLIED = '{"spec":{"password":"' + PASSWORD + '"},"note":"last-applied-marker"}'
ANNOTATIONS = {LAST_APPLIED_ANNOTATION: LAST_APPLIED, "metallb.io/loadBalancerIPs": "192.0.2.10", "team": "net"}


def annotated(kind: str, api_version: str, namespace: str, **fields: Any) -> RawObject:
    return {"apiVersion": api_version, "kind": kind, **fields,
            "metadata": {"name": "x", "namespace": namespace, "uid": "u-1", "resourceVersion": "3",
                         "annotations": dict(ANNOTATIONS), "labels": {"app": "x"}}}


#: Every translation the watcher publishes through, with an object of its kind.
KINDS: list[tuple[str, Callable[[RawObject], Observation | None], RawObject]] = [
    ("Service", service_observed, annotated("Service", "v1", "shop", spec={"type": "LoadBalancer"})),
    ("Node", node_observed, annotated("Node", "v1", "")),
    ("Namespace", namespace_observed, annotated("Namespace", "v1", "")),
    ("ConfigMap", kube_proxy_observed, annotated("ConfigMap", "v1", "kube-system", data={"config.conf": "mode: ipvs"})),
    ("Secret", secret_observed, annotated("Secret", "v1", NS, data={"password": base64.b64encode(b"p").decode()})),
    ("BGPPeer password", peer_password_observed, annotated("BGPPeer", "metallb.io/v1beta2", NS,
                                                           spec={"password": PASSWORD})),
    *((kind, config_observed, annotated(kind, "metallb.io/v1beta2" if kind == "BGPPeer" else "metallb.io/v1beta1", NS,
                                        spec={"password": PASSWORD} if kind == "BGPPeer" else {}))
      for kind in ("IPAddressPool", "L2Advertisement", "BGPAdvertisement", "BGPPeer", "BFDProfile", "Community")),
]


@pytest.mark.parametrize(("translate", "obj"), [(t, o) for _, t, o in KINDS], ids=[k for k, _, _ in KINDS])
def test_the_last_applied_annotation_is_published_for_no_kind(
    translate: Callable[[RawObject], Observation | None], obj: RawObject
) -> None:
    observation = translate(obj)
    assert observation is not None
    assert b"last-applied" not in wire(observation)
    assert obj["metadata"]["annotations"] == ANNOTATIONS, "the input was changed"
    event = observation.event
    if isinstance(event, ConfigObjectObserved):  # the other annotations are the object's own: kept
        assert event.raw["metadata"]["annotations"] == {k: v for k, v in ANNOTATIONS.items()
                                                        if k != LAST_APPLIED_ANNOTATION}


def test_a_secret_publishes_its_password_key_and_no_other() -> None:
    data = {key: base64.b64encode(value.encode()).decode()
            for key, value in {"password": "s3cret", "username": "bgp-admin", "ca.crt": "-----BEGIN"}.items()}
    observation = secret_observed({"metadata": {"name": "md5", "namespace": NS, "uid": "u", "resourceVersion": "1"},
                                   "type": "kubernetes.io/basic-auth", "data": data})
    assert isinstance(observation.event, SecretObserved) and observation.event.data == {"password": "s3cret"}
    assert b"bgp-admin" not in wire(observation) and b"BEGIN" not in wire(observation)
    empty = secret_observed({"metadata": {"name": "md5", "namespace": NS, "uid": "u", "resourceVersion": "1"},
                             "data": {"username": data["username"]}})
    assert isinstance(empty.event, SecretObserved) and empty.event.data == {}


def test_a_peer_stored_with_its_password_by_an_earlier_release_is_published_again() -> None:
    obj = peer(password=PASSWORD)
    published = config_observed(obj)
    assert isinstance(published.event, ConfigObjectObserved)
    old = published.event.model_copy(update={"raw": obj})  # as published before passwords were taken out
    assert stored_identity(old) != published.identity
    assert stored_identity(published.event) == published.identity


def test_the_password_projection_follows_the_peers_and_empties_into_a_tombstone() -> None:
    projection = PeerPasswordProjection()
    projection.replace([peer("a", password=PASSWORD), peer("b"), {"metadata": {"name": "no-uid"}}], "1")
    assert list(projection.subjects()) == [f"k8s.bgppeerpassword.{NS}.a"]
    assert projection.apply("MODIFIED", peer("b", password="other", rv="8")) == [f"k8s.bgppeerpassword.{NS}.b"]
    assert projection.apply("MODIFIED", peer("a", rv="9")) == [f"k8s.bgppeerpassword.{NS}.a"]
    assert projection.desired(f"k8s.bgppeerpassword.{NS}.a") is None  # no password any more: a tombstone
    # removed, put back, removed again: each removal is a tombstone of its own (never dropped as a duplicate)
    first, again = (projection.tombstone(f"k8s.bgppeerpassword.{NS}.a", Identity("uid-a", rv), trigger)
                    for rv, trigger in (("7", "9"), ("10", "11")))
    assert isinstance(first.event, ObjectDeleted) and first.msg_id != again.msg_id
    assert projection.apply("DELETED", peer("b", password="other")) == [f"k8s.bgppeerpassword.{NS}.b"]
    assert list(projection.subjects()) == []


MARK = "Zq8v|"


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text().map(lambda t: MARK + t),
                 st.lists(st.text(max_size=3).map(lambda t: MARK + t), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.text(max_size=3).map(lambda t: MARK + t), max_size=2)))
def test_whatever_the_password_holds_it_never_reaches_the_bgp_peer(password: object) -> None:
    try:
        published = config_observed(peer(password=password))
    except Untranslatable:  # a value JSON cannot carry elsewhere in the object: nothing is published
        return
    assert isinstance(published.event, ConfigObjectObserved) and "password" not in published.event.raw["spec"]
    assert MARK.encode() not in wire(published)
