"""Raw Kubernetes objects (camelCase JSON as the API returns it) → observed-state events.

Pure: no I/O, no clock. Every input is treated as possibly malformed; an object that lacks its
identity (name, uid, resourceVersion) raises :class:`Untranslatable`, anything else is read leniently
(unknown values dropped, missing ones defaulted), so one odd object never stops the watcher.

Each translation returns an :class:`Observation`: the subject, the event, the ``Nats-Msg-Id`` that
makes its publish idempotent, and the :class:`Identity` the reflector compares with what the ``K8S``
stream already holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import yaml

from schemas.events import (
    CONFIG_KINDS,
    BGPPeerPasswordObserved,
    ConfigObjectObserved,
    EndpointsObserved,
    Event,
    KubeProxyObserved,
    NamespaceObserved,
    NodeAddress,
    NodeEndpoints,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    SecretObserved,
    ServiceObserved,
    ServicePort,
)
from schemas.metallb import (
    INLINE_PASSWORD_KEY,
    PASSWORD_SECRET_KEY,
    SECRET_PASSWORD_KEY,
    InlinePassword,
    PasswordSecretState,
    inline_password_of,
)
from services.common.compact import interned
from services.common.subjects import k8s_subject
from services.watcher.annotations import WRITTEN_ANNOTATIONS

RawObject = dict[str, Any]

METALLB_ANNOTATION_PREFIXES = ("metallb.io/", "metallb.universe.tf/")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
KUBE_PROXY_NAMESPACE = "kube-system"
KUBE_PROXY_NAME = "kube-proxy"
KUBE_PROXY_CONFIG_KEY = "config.conf"
#: The whole object as last applied, inline BGP password included: never published, for any kind.
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

_PROTOCOLS = frozenset(get_args(ServicePort.model_fields["protocol"].annotation))
_FAMILIES = frozenset({"IPv4", "IPv6"})
_FAMILY_POLICIES = frozenset({"SingleStack", "PreferDualStack", "RequireDualStack"})


class Untranslatable(ValueError):
    """The object lacks what identifies it (name, uid or resourceVersion)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What tells two values of one subject apart: uid and version (resourceVersion; a digest of what is
    published for Services and metallb.io objects; a content hash for folds), or a tombstone of ``uid``."""

    uid: str
    version: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    subject: str
    event: Event
    msg_id: str
    identity: Identity


#: Per type of event, the JSON of the first one packed (if at most this long): every later one is deflated with
#: it as a preset dictionary, so the field names and values they share take a few bytes each.
PACKING_DICTIONARY_MAX = 2048
_packing_dictionaries: dict[type[Event], bytes] = {}


def _deflated(data: bytes, dictionary: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, -15, zdict=dictionary)  # raw deflate: no header, no checksum
    return packer.compress(data) + packer.flush()


def _inflated(data: bytes, dictionary: bytes) -> bytes:
    unpacker = zlib.decompressobj(-15, zdict=dictionary)
    return unpacker.decompress(data) + unpacker.flush()


@dataclass(frozen=True, slots=True)
class PackedObservation:
    """An observation as kept between changes: its event as JSON deflated against the first of its type
    (a Service: ~500 bytes of JSON, ~50 deflated; its model ~2 900), made a model again only when it is
    published. ``packed_msg_id`` is None when the message id is the usual ``uid/version`` of its identity."""

    event_type: type[Event]
    payload: bytes
    dictionary: bytes | None
    packed_msg_id: str | None
    identity: Identity

    @classmethod
    def of(cls, observation: Observation) -> PackedObservation:
        event = observation.event
        data = event.model_dump_json().encode()
        dictionary = _packing_dictionaries.get(type(event))
        if dictionary is None and len(data) <= PACKING_DICTIONARY_MAX:
            dictionary = _packing_dictionaries[type(event)] = data
        payload = _deflated(data, dictionary) if dictionary is not None else data
        msg_id = None if observation.msg_id == _usual_msg_id(event) else observation.msg_id
        return cls(type(event), payload, dictionary, msg_id, observation.identity)

    def unpacked(self, subject: str) -> Observation:
        data = _inflated(self.payload, self.dictionary) if self.dictionary is not None else self.payload
        event = self.event_type.model_validate_json(data)
        msg_id = self.packed_msg_id if self.packed_msg_id is not None else _usual_msg_id(event)
        return Observation(subject, event, cast(str, msg_id), self.identity)


def _usual_msg_id(event: Event) -> str | None:
    """An object's message id (``_object_msg_id``); None for an event without an object's ``ref``."""
    ref = getattr(event, "ref", None)
    return _object_msg_id(ref) if isinstance(ref, ObjectRef) else None


def _object_msg_id(ref: ObjectRef) -> str:
    """An object's message id: its uid and resourceVersion."""
    return f"{ref.uid}/{ref.resource_version}"


# --- small readers of untrusted JSON -------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_text(value: Any) -> bool:
    """A string the bus can carry: a JSON decoder may hand over lone surrogates, which UTF-8 cannot."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _str(value: Any) -> str:
    """A text field; short ones interned (names, uids, versions, node names: each kept in several places)."""
    return interned(value) if _is_text(value) else ""


def _one_of(value: Any, allowed: frozenset[str]) -> str | None:
    return value if isinstance(value, str) and value in allowed else None


def _str_map(value: Any) -> dict[str, str]:
    return {k: v for k, v in _dict(value).items() if _is_text(k) and _is_text(v)}


def _json_document(value: Any) -> bool:
    """Whether ``value`` is JSON the API could have sent (no NaN, no lone surrogates, not absurdly deep)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def object_key(obj: RawObject) -> tuple[str, str, str]:
    """Namespace, name and resourceVersion of a raw object, "" for what is missing or unreadable."""
    meta = _dict(obj.get("metadata"))
    return _str(meta.get("namespace")), _str(meta.get("name")), _str(meta.get("resourceVersion"))


def _ref(obj: RawObject) -> ObjectRef:
    meta = _dict(obj.get("metadata"))
    name, uid, rv = _str(meta.get("name")), _str(meta.get("uid")), _str(meta.get("resourceVersion"))
    if not (name and uid and rv):
        raise Untranslatable(f"object without name, uid or resourceVersion: {meta!r:.200}")
    return ObjectRef(namespace=_str(meta.get("namespace")), name=name, uid=uid, resource_version=rv)


def _observation(kind: ObjectKind, ref: ObjectRef, event: Event, identity: Identity | None = None) -> Observation:
    """An object's observation; its identity is its uid and resourceVersion unless given."""
    return Observation(subject=k8s_subject(kind, ref.namespace, ref.name), event=event,
                       msg_id=_object_msg_id(ref),
                       identity=identity or Identity(ref.uid, ref.resource_version))


# --- Services --------------------------------------------------------------------------------------


def _ports(raw: Any) -> tuple[ServicePort, ...]:
    ports = []
    for item in _list(raw):
        port = _dict(item).get("port")
        protocol = _one_of(_dict(item).get("protocol") or "TCP", _PROTOCOLS)
        if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535 and protocol:
            ports.append(ServicePort(name=_str(item.get("name")), protocol=protocol, port=port))
    return tuple(ports)


def service_observed(obj: RawObject) -> Observation:
    ref = _ref(obj)
    meta, spec = _dict(obj.get("metadata")), _dict(obj.get("spec"))
    ingress = _list(_dict(_dict(obj.get("status")).get("loadBalancer")).get("ingress"))
    annotations = {
        key: value
        for key, value in _str_map(meta.get("annotations")).items()
        if key.startswith(METALLB_ANNOTATION_PREFIXES) and key not in WRITTEN_ANNOTATIONS
    }
    event = ServiceObserved(
        ref=ref,
        service_type=_str(spec.get("type")) or "ClusterIP",
        load_balancer_class=_str(spec.get("loadBalancerClass")) or None,
        load_balancer_ip=_str(spec.get("loadBalancerIP")) or None,
        annotations=annotations,
        labels=_str_map(meta.get("labels")),
        ports=_ports(spec.get("ports")),
        ip_families=tuple(f for f in _list(spec.get("ipFamilies")) if _one_of(f, _FAMILIES)),
        ip_family_policy=_one_of(spec.get("ipFamilyPolicy"), _FAMILY_POLICIES),
        cluster_ips=tuple(ip for ip in _list(spec.get("clusterIPs")) if _is_text(ip) and ip != "None"),
        external_traffic_policy="Local" if spec.get("externalTrafficPolicy") == "Local" else "Cluster",
        selector=_str_map(spec.get("selector")),
        ingress_ips=tuple(ip for entry in ingress if (ip := _str(_dict(entry).get("ip")))),
    )
    return _observation(ObjectKind.SERVICE, ref, event, Identity(ref.uid, service_version(event)))


def service_version(event: ServiceObserved) -> str:
    """What tells two published values of a Service apart: all the event holds but the resourceVersion. A
    Service changed only where the event does not look (its managed fields, an annotation of another
    component, the pool annotation metalbus writes itself) is not published again: the status writer's
    annotation patch of every Service in a cold start reached both ipam replicas as a change of nothing."""
    content = event.model_dump_json(exclude={"ref": {"resource_version"}})
    return hashlib.blake2b(content.encode(), digest_size=12).hexdigest()


# --- EndpointSlices, folded per Service and node ----------------------------------------------------

#: Per node: (ready, serving) endpoint counts of one EndpointSlice.
SliceCounts = dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class SliceSummary:
    """What one EndpointSlice contributes to its Service's fold."""

    namespace: str
    name: str
    service: str
    resource_version: str
    counts: Mapping[str, tuple[int, int]]


def slice_summary(obj: RawObject) -> SliceSummary:
    """An EndpointSlice reduced to its service and per-node counts. ``service`` is "" for a slice that
    belongs to no Service (no ``kubernetes.io/service-name`` label)."""
    meta = _dict(obj.get("metadata"))
    name = _str(meta.get("name"))
    if not name:
        raise Untranslatable("EndpointSlice without a name")
    counts: SliceCounts = {}
    for endpoint in _list(obj.get("endpoints")):
        endpoint = _dict(endpoint)
        conditions = _dict(endpoint.get("conditions"))
        # A missing condition means "unknown", which consumers read as ready (and serving as ready).
        ready = conditions.get("ready") is not False
        serving_value = conditions.get("serving")
        serving = ready if serving_value is None else serving_value is True
        node = _str(endpoint.get("nodeName"))
        old_ready, old_serving = counts.get(node, (0, 0))
        counts[node] = (old_ready + int(ready), old_serving + int(serving))
    return SliceSummary(
        namespace=_str(meta.get("namespace")),
        name=name,
        service=_str_map(meta.get("labels")).get(SERVICE_NAME_LABEL, ""),
        resource_version=_str(meta.get("resourceVersion")),
        counts=counts,
    )


def fold_endpoints(slices: Iterable[SliceSummary]) -> tuple[NodeEndpoints, ...]:
    """Sum the per-node counts of a Service's slices; sorted by node name."""
    totals: dict[str, tuple[int, int]] = {}
    for summary in slices:
        for node, (ready, serving) in summary.counts.items():
            old_ready, old_serving = totals.get(node, (0, 0))
            totals[node] = (old_ready + ready, old_serving + serving)
    return tuple(NodeEndpoints(node=n, ready=r, serving=s) for n, (r, s) in sorted(totals.items()))


def endpoints_hash(nodes: Iterable[NodeEndpoints]) -> str:
    text = json.dumps([[n.node, n.ready, n.serving] for n in nodes], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def endpoints_observed(namespace: str, service: str, nodes: tuple[NodeEndpoints, ...], trigger: str,
                       digest: str | None = None) -> Observation:
    """The fold of one Service's slices. Its id is the content hash (``digest``, when known already) plus
    ``trigger``, the resourceVersion of the change (or list) that produced it, so that A → B → A is never
    mistaken for a duplicate of the first A."""
    digest = digest if digest is not None else endpoints_hash(nodes)
    subject = k8s_subject(ObjectKind.ENDPOINTS, namespace, service)
    return Observation(
        subject=subject,
        event=EndpointsObserved(namespace=namespace, service=service, nodes=nodes),
        msg_id=f"endpoints/{namespace}/{service}/{trigger}/{digest}",
        identity=endpoints_identity(digest),
    )


def endpoints_identity(digest: str) -> Identity:
    """The identity of a fold: no uid of its own, its content hash as its version."""
    return Identity("", digest)


# --- Nodes, Namespaces --------------------------------------------------------------------------


def node_observed(obj: RawObject) -> Observation:
    ref = _ref(obj)
    status = _dict(obj.get("status"))
    unavailable = any(
        _dict(c).get("type") == "NetworkUnavailable" and _dict(c).get("status") == "True"
        for c in _list(status.get("conditions"))
    )
    addresses = tuple(
        NodeAddress(type=_str(a.get("type")), address=_str(a.get("address")))
        for a in map(_dict, _list(status.get("addresses")))
        if _str(a.get("address"))
    )
    labels = _str_map(_dict(obj.get("metadata")).get("labels"))
    event = NodeObserved(ref=ref, labels=labels, network_unavailable=unavailable, addresses=addresses)
    return _observation(ObjectKind.NODE, ref, event)


def namespace_observed(obj: RawObject) -> Observation:
    ref = _ref(obj)
    event = NamespaceObserved(ref=ref, labels=_str_map(_dict(obj.get("metadata")).get("labels")))
    return _observation(ObjectKind.NAMESPACE, ref, event)


# --- metallb.io objects and the Secrets BGPPeers reference ------------------------------------------


def _published_metadata(metadata: Any) -> dict[str, Any]:
    """``metadata`` less ``managedFields`` (bookkeeping) and the last-applied annotation (a copy of the
    whole object, secrets included)."""
    kept = {k: v for k, v in _dict(metadata).items() if k != "managedFields"}
    annotations = kept.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED_ANNOTATION in annotations:
        kept["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED_ANNOTATION}
    return kept


def _without_inline_password(obj: RawObject) -> RawObject:
    """A BGPPeer with its ``spec.password`` taken out, and only :class:`InlinePassword` left to say there
    was one (a marker that came with the object is never believed, nor one about its passwordSecret)."""
    raw = {k: v for k, v in obj.items() if k not in (INLINE_PASSWORD_KEY, PASSWORD_SECRET_KEY)}
    spec = obj.get("spec")
    if not isinstance(spec, dict) or "password" not in spec:
        return raw
    marker = inline_password_of(spec["password"])
    raw["spec"] = {k: v for k, v in spec.items() if k != "password"}
    if marker is not None:
        raw[INLINE_PASSWORD_KEY] = marker.value
    return raw


def config_observed(obj: RawObject) -> Observation:
    """A metallb.io object, kept whole but for its ``status`` (what metalbus writes back, no configuration),
    ``managedFields``, the last-applied annotation and a BGPPeer's inline password (see
    :func:`peer_password_observed`). Its identity is its content: a status written back changes the
    resourceVersion alone and publishes nothing."""
    ref = _ref(obj)
    kind = _str(obj.get("kind"))
    if kind not in CONFIG_KINDS:
        raise Untranslatable(f"not a metallb.io configuration kind: {kind!r}")
    raw = _without_inline_password(obj) if CONFIG_KINDS[kind] is ObjectKind.BGP_PEER else dict(obj)
    raw.pop("status", None)
    raw["metadata"] = _published_metadata(obj.get("metadata"))
    if not _json_document(raw):
        raise Untranslatable(f"{kind} {ref.namespace}/{ref.name} holds values JSON cannot carry")
    event = ConfigObjectObserved(ref=ref, kind=kind, api_version=_str(obj.get("apiVersion")), raw=raw)
    return _config_observation(CONFIG_KINDS[kind], event)


def _config_observation(kind: ObjectKind, event: ConfigObjectObserved) -> Observation:
    ref = event.ref
    return Observation(
        subject=k8s_subject(kind, ref.namespace, ref.name),
        event=event,
        msg_id=f"{ref.uid}/{_with_secret_state(ref.resource_version, event.raw)}",
        identity=Identity(ref.uid, config_version(event.raw)),
    )


def config_version(raw: RawObject) -> str:
    """What tells two published values of a metallb.io object apart: all it holds but its resourceVersion."""
    content = {**raw, "metadata": {k: v for k, v in _dict(raw.get("metadata")).items() if k != "resourceVersion"}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def password_secret_of(peer: RawObject, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Secret a BGPPeer names as ``spec.passwordSecret`` (its namespace defaults
    to ``namespace``, the configuration's); None when it names none."""
    secret = _dict(_dict(peer.get("spec")).get("passwordSecret"))
    name = _str(secret.get("name"))
    return (_str(secret.get("namespace")) or namespace, name) if name else None


def referenced_secrets(peers: Iterable[RawObject], namespace: str) -> frozenset[str]:
    """Names of the Secrets in ``namespace`` that BGPPeers reference as ``spec.passwordSecret``."""
    return frozenset(ref[1] for peer in peers if (ref := password_secret_of(peer, namespace)) and ref[0] == namespace)


def with_password_secret(observation: Observation, state: PasswordSecretState) -> Observation:
    """A published BGPPeer with what its ``passwordSecret`` gives said beside its spec; a change of that
    state is a change of the peer (another identity, another message id), its resourceVersion the same."""
    event = observation.event
    assert isinstance(event, ConfigObjectObserved)
    raw = {**event.raw, PASSWORD_SECRET_KEY: state.model_dump(mode="json", exclude_none=True)}
    return _config_observation(ObjectKind.BGP_PEER, event.model_copy(update={"raw": raw}))


def _with_secret_state(version: str, raw: RawObject) -> str:
    """A BGPPeer's version, with the state of its passwordSecret when the watcher said one (its message id:
    the state changes while the resourceVersion stays)."""
    state = raw.get(PASSWORD_SECRET_KEY)
    if not isinstance(state, dict):
        return version
    return f"{version}+{_str(state.get('problem')) or 'usable'}@{_str(state.get('version'))}"


def _base64_text(value: str | None) -> str | None:
    """A Secret's data value decoded (invalid UTF-8 replaced); None when absent or not base64."""
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None


def peer_password_observed(obj: RawObject) -> Observation | None:
    """A BGPPeer's usable inline password, for the ``SECRETS`` stream; None when it has none."""
    ref = _ref(obj)
    password = _dict(obj.get("spec")).get("password")
    if inline_password_of(password) is not InlinePassword.SET:
        return None
    assert isinstance(password, str)
    event = BGPPeerPasswordObserved(ref=ref, password=password)
    return _observation(ObjectKind.BGP_PEER_PASSWORD, ref, event)


def secret_observed(obj: RawObject) -> Observation:
    """A referenced Secret, reduced to its ``password`` key: no other key ever leaves the watcher."""
    ref = _ref(obj)
    password = _base64_text(_str_map(obj.get("data")).get(SECRET_PASSWORD_KEY))
    data = {SECRET_PASSWORD_KEY: password} if password is not None else {}
    event = SecretObserved(ref=ref, secret_type=_str(obj.get("type")), data=data)
    return _observation(ObjectKind.SECRET, ref, event)


# --- kube-proxy -----------------------------------------------------------------------------------


def kube_proxy_settings(config_text: str) -> tuple[str, bool]:
    """``mode`` and ``ipvs.strictARP`` of a KubeProxyConfiguration document ("" / False when absent
    or unreadable)."""
    try:
        document = yaml.safe_load(config_text)
    except (yaml.YAMLError, RecursionError):  # the YAML composer recurses once per nesting level
        return "", False
    document = _dict(document)
    mode = _str(document.get("mode"))
    strict_arp = _dict(document.get("ipvs")).get("strictARP") is True
    return mode, strict_arp


def kube_proxy_observed(obj: RawObject) -> Observation:
    ref = _ref(obj)
    mode, strict_arp = kube_proxy_settings(_str(_str_map(obj.get("data")).get(KUBE_PROXY_CONFIG_KEY)))
    event = KubeProxyObserved(ref=ref, mode=mode, strict_arp=strict_arp)
    return _observation(ObjectKind.KUBE_PROXY, ref, event)


# --- tombstones and what the stream holds ---------------------------------------------------------


def tombstone(kind: ObjectKind, namespace: str, name: str, uid: str, trigger: str) -> Observation:
    """``ObjectDeleted`` for one subject. Its id is per uid (an object is deleted once); folds have no
    uid and use ``trigger``, the resourceVersion of the change that emptied them."""
    return Observation(
        subject=k8s_subject(kind, namespace, name),
        event=ObjectDeleted(kind=kind, namespace=namespace, name=name, uid=uid),
        msg_id=f"{uid}/deleted" if uid else f"{kind.value}/{namespace}/{name}/{trigger}/deleted",
        identity=Identity(uid, "", deleted=True),
    )


def holds_secrets(raw: RawObject) -> bool:
    """Whether a stored configuration object still holds what is no longer published (a value written
    by an earlier release): an inline password or the last-applied annotation."""
    annotations = _dict(_dict(raw.get("metadata")).get("annotations"))
    return LAST_APPLIED_ANNOTATION in annotations or "password" in _dict(raw.get("spec"))


def stored_identity(event: Event) -> Identity | None:
    """The identity of a value read back from the ``K8S`` stream (None for a foreign event). A stored
    value that still holds secrets matches no object, so that it is published again without them."""
    if isinstance(event, ObjectDeleted):
        return Identity(event.uid, "", deleted=True)
    if isinstance(event, ConfigObjectObserved) and holds_secrets(event.raw):
        return Identity(event.ref.uid, "")
    if isinstance(event, EndpointsObserved):
        return Identity("", endpoints_hash(event.nodes))
    if isinstance(event, ConfigObjectObserved):
        return Identity(event.ref.uid, config_version(event.raw))
    if isinstance(event, ServiceObserved):
        return Identity(event.ref.uid, service_version(event))
    ref = cast(ObjectRef | None, getattr(event, "ref", None))
    if isinstance(ref, ObjectRef):
        return Identity(ref.uid, ref.resource_version)
    return None


WatchEventType = Literal["ADDED", "MODIFIED", "DELETED"]
