"""Every stream, subject and durable consumer name of metalbus, in one place.

Subject tokens cannot hold ``.``, ``*``, ``>`` or white space, and Kubernetes names and IPv4
addresses contain dots, so every variable token goes through :func:`encode_token`, which is
reversible (:func:`decode_token`). Cluster-scoped objects use ``_`` as their namespace token
(``_`` cannot appear in a Kubernetes name).

Subjects read off the wire go through the total readers (:func:`read_token`, :func:`read_k8s_subject`,
:func:`read_heartbeat_subject`): they answer the names, or a ``Refused`` for a subject metalbus did not
write, and never raise.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum

from schemas.events import (
    CONFIG_KINDS,
    BGPPeerPasswordObserved,
    ConfigObjectObserved,
    EndpointsObserved,
    Event,
    KindListed,
    KubeProxyObserved,
    NamespaceObserved,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    SecretObserved,
    ServiceObserved,
)
from schemas.refusal import DropReason, Refused

_SAFE = re.compile(r"[A-Za-z0-9:\-]")
_ALL_SAFE = re.compile(r"[A-Za-z0-9:\-]+")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
NO_NAMESPACE = "_"
#: ASCII characters as a token writes them (an IP's dots, a name's dots and slashes).
_ASCII_TOKEN = str.maketrans({chr(c): chr(c) if _SAFE.fullmatch(chr(c)) else f"%{c:02X}" for c in range(128)})


def encode_token(value: str) -> str:
    """Make ``value`` one subject-safe token, reversibly: unsafe characters become ``%XX``."""
    if value == "":
        return NO_NAMESPACE
    if _ALL_SAFE.fullmatch(value):
        return value  # most names: nothing to escape
    if value.isascii():
        return value.translate(_ASCII_TOKEN)  # IPs, most names with dots
    out = []
    for char in value:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
    return "".join(out)


#: The longest subject read back into names: a namespace (63 characters) and a name (253), each escaped
#: three times over, and the kind fit well within it.
MAX_SUBJECT_LENGTH = 2048


class InvalidSubject(ValueError):
    """A subject or token that is not one metalbus writes (see :func:`read_token`)."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(str(refused))
        self.refused = refused


def read_token(token: str) -> str | Refused:
    """Inverse of :func:`encode_token`, total: the value, or why ``token`` is not one that
    :func:`encode_token` writes (empty, a stray or bad ``%`` escape, escapes that are not UTF-8, an
    unsafe character left unescaped, an escape of a safe character)."""
    if token == NO_NAMESPACE:
        return ""
    if not token:
        return Refused(DropReason.BAD_TOKEN, "empty token")
    if len(token) > MAX_SUBJECT_LENGTH:
        return Refused(DropReason.BAD_TOKEN, f"token of {len(token)} characters")
    if _ALL_SAFE.fullmatch(token):
        return token  # most names: nothing escaped
    raw = bytearray()
    index = 0
    while index < len(token):
        if _ESCAPE.match(token, index):
            raw.append(int(token[index + 1 : index + 3], 16))
            index += 3
        elif _SAFE.fullmatch(token[index]):
            raw.append(ord(token[index]))
            index += 1
        else:
            unsafe = token[index]
            return Refused(DropReason.BAD_TOKEN, f"{token!r}: {unsafe!r} at {index} is neither safe nor an escape")
    try:
        value = raw.decode()
    except UnicodeDecodeError as error:
        return Refused(DropReason.BAD_TOKEN, f"{token!r}: escapes are not UTF-8 ({error.reason})")
    if encode_token(value) != token:
        return Refused(DropReason.BAD_TOKEN, f"{token!r}: escapes a character that needs none")
    return value


def decode_token(token: str) -> str:
    """:func:`read_token` for a token metalbus wrote itself; a refusal raises ``InvalidSubject``."""
    value = read_token(token)
    if isinstance(value, Refused):
        raise InvalidSubject(value)
    return value


class StreamName(StrEnum):
    K8S = "K8S"
    SECRETS = "SECRETS"
    IPAM = "IPAM"
    ANNOUNCE = "ANNOUNCE"
    DEAD_LETTER = "DEADLETTER"


MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """How a stream is kept. ``per_subject`` limits history per subject (1 = last value only)."""

    name: StreamName
    subjects: tuple[str, ...]
    description: str
    per_subject: int = -1
    max_age_seconds: float = 0.0
    max_msgs: int = -1
    #: How long the server remembers message ids to drop a re-sent publish.
    duplicate_window_seconds: float = 120.0
    #: The stream's size bound on disk (per replica), so no writer can fill the disk. JetStream reserves it
    #: from the account's ``max_file`` (times the replicas) and the server's ``max_file_store``.
    max_bytes: int = 256 * MIB
    #: When full, refuse new messages (True) rather than drop the oldest: for streams whose oldest
    #: message of a subject may still be the one in force.
    discard_new: bool = True
    #: No message can be deleted and the stream cannot be purged through the API (decision and
    #: observation logs).
    sealed_history: bool = False
    #: Written by metalbus's own components alone, and every reader needs every message: a reader meeting an
    #: event of a schema version it does not understand stops there (``NewerSchema``), never skips it. A
    #: stream nodes write (``ANNOUNCE``) does not: a node's report of a newer version is refused for that node
    #: alone, or any one node could stop every reader.
    fails_closed: bool = False


K8S_PREFIX = "k8s"
IPAM_PREFIX = "ipam"
ANNOUNCE_PREFIX = "announce"
DEAD_LETTER_PREFIX = "deadletter"
#: ``K8S`` subjects of the watcher's list marks (``KindListed``), one per kind: ``k8s.listed.<kind>``.
K8S_LISTED_PREFIX = f"{K8S_PREFIX}.listed"
HEARTBEAT_PREFIX = "heartbeat"

DAY = 86400.0

#: Observed kinds kept out of the K8S stream, on SECRETS: the BGP passwords (referenced Secrets, and inline
#: passwords taken out of their BGPPeers), which only the watcher (who writes them) and the announcers (who
#: use them) may read. Their subjects keep the K8S form.
SECRET_KINDS = frozenset({ObjectKind.SECRET, ObjectKind.BGP_PEER_PASSWORD})

STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        name=StreamName.K8S,
        subjects=(*(f"{K8S_PREFIX}.{kind.value}.>" for kind in ObjectKind if kind not in SECRET_KINDS),
                  f"{K8S_LISTED_PREFIX}.*"),
        description="observed Kubernetes state, last value per object, deletions as tombstones",
        per_subject=1,
        max_bytes=256 * MIB,
        sealed_history=True,
        fails_closed=True,
    ),
    StreamSpec(
        name=StreamName.SECRETS,
        subjects=tuple(f"{K8S_PREFIX}.{kind.value}.>" for kind in sorted(SECRET_KINDS)),
        description="BGP peers' passwords (referenced Secrets, inline passwords), readable by announcers only",
        per_subject=1,
        max_bytes=16 * MIB,
        sealed_history=True,
        fails_closed=True,
    ),
    StreamSpec(
        name=StreamName.IPAM,
        subjects=(f"{IPAM_PREFIX}.>",),
        description="allocation and placement decisions, history per subject (single writer)",
        # Bounded per subject, never by age or total: a decision nobody rewrote for a year is still the
        # one in force, so the newest message of every subject must never be discarded.
        per_subject=1000,
        # Message ids here only chain the fenced appends (Bus.send_fenced); nobody re-sends one, and
        # the server need not remember thousands of ids per second of a burst for two minutes.
        duplicate_window_seconds=5.0,
        max_bytes=512 * MIB,
        sealed_history=True,
        fails_closed=True,
    ),
    StreamSpec(
        name=StreamName.ANNOUNCE,
        subjects=(f"{ANNOUNCE_PREFIX}.>",),
        description="what each announcer announces on the wire, and BGP session state",
        per_subject=1000,
        max_age_seconds=30 * DAY,
        max_bytes=128 * MIB,
    ),
    StreamSpec(
        name=StreamName.DEAD_LETTER,
        subjects=(f"{DEAD_LETTER_PREFIX}.>",),
        description="messages that failed validation or exhausted their redeliveries",
        max_age_seconds=30 * DAY,
        max_msgs=1_000_000,
        max_bytes=64 * MIB,
        discard_new=False,
    ),
)


def stream_spec(name: StreamName) -> StreamSpec:
    return next(spec for spec in STREAMS if spec.name == name)


class Component(StrEnum):
    """Who connects to the bus; each has a NATS user of its own (announcers one per node)."""

    WATCHER = "watcher"
    IPAM = "ipam"
    ANNOUNCER = "announcer"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class DurableSpec:
    """A durable consumer: created by the administrative step, read by its owner alone."""

    stream: StreamName
    name: str
    subjects: tuple[str, ...]
    owner: Component


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """A lease (a JetStream key-value bucket whose TTL is the lease's duration)."""

    name: str
    ttl: float

    @property
    def bucket(self) -> str:
        return f"{LEASE_BUCKET_PREFIX}{self.name}"


LEASE_BUCKET_PREFIX = "metalbus-lease-"
#: The leases, by the component that competes for them: the active ipam replica holds ``ipam``.
LEASES: dict[Component, LeaseSpec] = {Component.IPAM: LeaseSpec("ipam", ttl=1.5)}


# --- K8S: one subject per object --------------------------------------------------------------


def k8s_subject(kind: ObjectKind, namespace: str, name: str) -> str:
    """Interned: the watcher keys an object by its subject in several maps (the projection's, the stream's
    side), one string for all."""
    return sys.intern(f"{K8S_PREFIX}.{kind.value}.{encode_token(namespace)}.{encode_token(name)}")


def observed_subject(event: Event) -> str:
    """The ``K8S`` subject an observed event (or tombstone) belongs on."""
    if isinstance(event, ServiceObserved):
        return k8s_subject(ObjectKind.SERVICE, event.ref.namespace, event.ref.name)
    if isinstance(event, EndpointsObserved):
        return k8s_subject(ObjectKind.ENDPOINTS, event.namespace, event.service)
    if isinstance(event, NodeObserved):
        return k8s_subject(ObjectKind.NODE, "", event.ref.name)
    if isinstance(event, NamespaceObserved):
        return k8s_subject(ObjectKind.NAMESPACE, "", event.ref.name)
    if isinstance(event, ConfigObjectObserved):
        return k8s_subject(CONFIG_KINDS[event.kind], event.ref.namespace, event.ref.name)
    if isinstance(event, SecretObserved):
        return k8s_subject(ObjectKind.SECRET, event.ref.namespace, event.ref.name)
    if isinstance(event, BGPPeerPasswordObserved):
        return k8s_subject(ObjectKind.BGP_PEER_PASSWORD, event.ref.namespace, event.ref.name)
    if isinstance(event, KubeProxyObserved):
        return k8s_subject(ObjectKind.KUBE_PROXY, event.ref.namespace, event.ref.name)
    if isinstance(event, ObjectDeleted):
        return k8s_subject(event.kind, event.namespace, event.name)
    if isinstance(event, KindListed):
        return k8s_listed_subject(event.kind)
    raise ValueError(f"{type(event).__name__} is not an observed event")


def k8s_listed_subject(kind: ObjectKind) -> str:
    """Where the watcher marks the list of ``kind`` begun or complete (``KindListed``)."""
    return f"{K8S_LISTED_PREFIX}.{kind.value}"


def k8s_kind_filter(kind: ObjectKind) -> str:
    return f"{K8S_PREFIX}.{kind.value}.>"


def observed_stream(kind: ObjectKind) -> StreamName:
    """The stream that holds observed objects of ``kind``."""
    return StreamName.SECRETS if kind in SECRET_KINDS else StreamName.K8S


def read_k8s_subject(subject: str) -> tuple[ObjectKind, str, str] | Refused:
    """Kind, namespace and name of a ``K8S``/``SECRETS`` subject, or why it is not one. Total."""
    tokens = _tokens(subject, count=4, prefix=K8S_PREFIX)
    if isinstance(tokens, Refused):
        return tokens
    _, kind_token, namespace_token, name_token = tokens
    kind = next((k for k in ObjectKind if k.value == kind_token), None)
    if kind is None:
        return Refused(DropReason.BAD_SUBJECT, f"{subject!r}: no object kind {kind_token!r}")
    namespace, name = read_token(namespace_token), read_token(name_token)
    if isinstance(namespace, Refused):
        return namespace
    if isinstance(name, Refused):
        return name
    return kind, namespace, name


def parse_k8s_subject(subject: str) -> tuple[ObjectKind, str, str]:
    """:func:`read_k8s_subject` for a subject metalbus wrote itself; a refusal raises ``InvalidSubject``."""
    parsed = read_k8s_subject(subject)
    if isinstance(parsed, Refused):
        raise InvalidSubject(parsed)
    return parsed


def _tokens(subject: str, *, count: int, prefix: str) -> list[str] | Refused:
    """The tokens of ``subject``, when it has ``count`` of them and begins with ``prefix``."""
    if len(subject) > MAX_SUBJECT_LENGTH:
        return Refused(DropReason.BAD_SUBJECT, f"subject of {len(subject)} characters: {subject!r}")
    tokens = subject.split(".")
    if len(tokens) != count or tokens[0] != prefix:
        return Refused(DropReason.BAD_SUBJECT, f"{subject!r} is not {prefix}. with {count} tokens")
    return tokens


# --- IPAM: decisions ------------------------------------------------------------------------


def ipam_allocation_subject(namespace: str, name: str) -> str:
    return f"{IPAM_PREFIX}.allocation.{encode_token(namespace)}.{encode_token(name)}"


def ipam_placement_subject(ip: str) -> str:
    return f"{IPAM_PREFIX}.placement.{encode_token(ip)}"


def bgp_decision_subject(ip: str) -> str:
    """Where ipam writes what is advertised over BGP for ``ip`` (``BGPAdvertisementDecided``/``Withdrawn``)."""
    return f"{IPAM_PREFIX}.bgp.{encode_token(ip)}"


def ipam_pool_subject(pool: str) -> str:
    return f"{IPAM_PREFIX}.pool.{encode_token(pool)}"


IPAM_CONFIG_SUBJECT = f"{IPAM_PREFIX}.config"
#: The parts of the configuration in force (``ConfigurationPart``), by slot and index.
IPAM_CONFIG_PARTS = f"{IPAM_PREFIX}.config-part.>"


def ipam_config_part_subject(slot: str, index: int) -> str:
    return f"{IPAM_PREFIX}.config-part.{encode_token(slot)}.{index}"


IPAM_ALLOCATIONS = f"{IPAM_PREFIX}.allocation.>"
IPAM_PLACEMENTS = f"{IPAM_PREFIX}.placement.>"
IPAM_BGP_DECISIONS = f"{IPAM_PREFIX}.bgp.>"


# --- ANNOUNCE and heartbeats -----------------------------------------------------------------


def announce_subject(node: str, ip: str) -> str:
    return f"{ANNOUNCE_PREFIX}.{encode_token(node)}.ip.{encode_token(ip)}"


def dataplane_subject(node: str) -> str:
    return f"{ANNOUNCE_PREFIX}.{encode_token(node)}.dataplane"


#: Every node's data-plane report (``DataPlaneReported``), one subject per node.
DATAPLANE_REPORTS = f"{ANNOUNCE_PREFIX}.*.dataplane"


def read_dataplane_subject(subject: str) -> str | Refused:
    """The node a data-plane report's subject speaks for, or why it names none. Total."""
    return _node_of(subject, prefix=ANNOUNCE_PREFIX, node_at=1, word_at=2, word="dataplane",
                    what="a data-plane report")


def _node_of(subject: str, *, prefix: str, node_at: int, word_at: int, word: str, what: str) -> str | Refused:
    """The node named by a three-token subject ``prefix`` with ``word`` at ``word_at``."""
    tokens = _tokens(subject, count=3, prefix=prefix)
    if isinstance(tokens, Refused):
        return tokens
    if tokens[word_at] != word:
        return Refused(DropReason.BAD_SUBJECT, f"{subject!r} is not {what}")
    return read_token(tokens[node_at])


def bgp_session_subject(node: str, peer: str) -> str:
    return f"{ANNOUNCE_PREFIX}.{encode_token(node)}.bgp.{encode_token(peer)}"


def heartbeat_subject(node: str) -> str:
    return f"{HEARTBEAT_PREFIX}.announcer.{encode_token(node)}"


HEARTBEATS = f"{HEARTBEAT_PREFIX}.announcer.*"
#: Where a listener asks every announcer for a heartbeat at once (``RollCall``): ipam and the operator publish,
#: announcers subscribe.
ROLL_CALL = f"{HEARTBEAT_PREFIX}.roll-call"

#: Where the NATS server tells the metalbus account that a client connection closed (its
#: ``$SYS.ACCOUNT.<account>.DISCONNECT`` advisory, imported from the system account). Only the server
#: publishes it: every user is denied it, since a forged one would declare a node dead.
CONNECTIONS_CLOSED = "connections.closed"


def read_heartbeat_subject(subject: str) -> str | Refused:
    """The node a heartbeat subject speaks for, or why it names none. Total."""
    return _node_of(subject, prefix=HEARTBEAT_PREFIX, node_at=2, word_at=1, word="announcer",
                    what="an announcer's heartbeat")


def dead_letter_subject(stream: StreamName, consumer: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{stream.value.lower()}.{encode_token(consumer)}"


# --- durable consumers ------------------------------------------------------------------------

KUBE_PROXY_SUBJECT = k8s_subject(ObjectKind.KUBE_PROXY, "kube-system", "kube-proxy")

#: Every durable consumer. The watcher's three feed its status writer.
DURABLES: tuple[DurableSpec, ...] = (
    DurableSpec(StreamName.IPAM, "watcher-status",
                (IPAM_ALLOCATIONS, f"{IPAM_PREFIX}.pool.*", IPAM_CONFIG_SUBJECT), Component.WATCHER),
    DurableSpec(StreamName.ANNOUNCE, "watcher-announce", (f"{ANNOUNCE_PREFIX}.*.ip.*",), Component.WATCHER),
    DurableSpec(StreamName.K8S, "watcher-kubeproxy", (KUBE_PROXY_SUBJECT,), Component.WATCHER),
)
