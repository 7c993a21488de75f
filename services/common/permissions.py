"""Who may do what on the bus: every NATS user of metalbus and its subject permissions, in one place.

- ``admin`` runs the administrative step (``metalbus bus provision``) alone: it creates and upgrades the
  streams, their limits, the durable consumers and the lease buckets. No long-running component holds it.
- ``watcher``, ``ipam`` and ``operator`` are static users. They may write only their own subjects, read
  the streams they need through ephemeral consumers, and use only their own durables and lease buckets.
  None may create, update, delete or purge a stream, or touch another's durable.
- Announcers have no static user: each connects as ``node-<its node>`` and the authenticator (an auth
  callout beside the NATS server) checks that it is that node and grants :func:`announcer_permissions`:
  it may publish only its own heartbeat and its own reports, and read of ``K8S`` only its own Node; it hears
  roll calls (:data:`ROLL_CALL`), which ``ipam`` and ``operator`` (the users that hear heartbeats) may make.
- ``authenticator`` is the auth callout service's own user: it answers the server's questions and
  nothing else.
- Replies travel on private inboxes: each user subscribes only under its own prefix (:func:`inbox_prefix`).
- The server itself tells ``ipam`` and ``watcher`` when a client connection closes (:data:`CONNECTIONS_CLOSED`,
  imported from the system account ``SYS`` into the whole account; each user is allowed to subscribe to it or
  not); nobody may publish there, admin included: a forged event would declare a node dead, or depose a
  leader.

:func:`render_accounts` writes the NATS server's ``accounts.conf`` from this module; the Kubernetes
manifests, compose, the lab and the tests all use it. It also holds the server settings liveness relies
on (the system account, the server's pings). :func:`render_open_accounts` is the same server for clients
without credentials (the tests' and ``metalbus nats``'s server).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from schemas.events import ObjectKind
from services.common.nats_jwt import SubjectPermissions
from services.common.subjects import (
    ANNOUNCE_PREFIX,
    CONNECTIONS_CLOSED,
    DEAD_LETTER_PREFIX,
    DURABLES,
    HEARTBEATS,
    IPAM_PREFIX,
    K8S_LISTED_PREFIX,
    K8S_PREFIX,
    LEASES,
    ROLL_CALL,
    STREAMS,
    Component,
    StreamName,
    encode_token,
    heartbeat_subject,
    k8s_subject,
)

#: The one account every metalbus user lives in (JetStream enabled, limits set).
ACCOUNT = "METALBUS"
#: The server's own account: it publishes the advisories (a connection closed, ...); it has no users.
SYSTEM_ACCOUNT = "SYS"
#: The advisory of the system account that the metalbus account imports as :data:`CONNECTIONS_CLOSED`.
DISCONNECT_ADVISORY = f"$SYS.ACCOUNT.{ACCOUNT}.DISCONNECT"
#: The server pings a client that sent nothing for this long and closes its connection after
#: ``PING_MAX`` pings unanswered: a cut or frozen node is reported closed 1.25 to 1.5 s after it fell silent.
#: A Python client whose event loop is held that long is closed too (and reconnects): five pings leave the
#: services room for a loaded machine, at the price of a cut node's IPs moving after ~1.5 s (a crashed one's
#: connection closes at once).
PING_INTERVAL = "250ms"
PING_MAX = 5
#: The subject the NATS server asks the auth callout on.
AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
#: Announcers connect as this prefix followed by their node's name.
NODE_USER_PREFIX = "node-"
#: What the account may store in JetStream at most: every stream's bound and some room for leases, at up to
#: three replicas (a replica counts against the account). Every overlay's ``max_file_store`` holds it.
MAX_REPLICAS = 3
ACCOUNT_MAX_FILE = (sum(spec.max_bytes for spec in STREAMS) + 64 * 1024 * 1024) * MAX_REPLICAS
#: No stream is kept in memory; ephemeral readers are small. Within every overlay's max_memory_store.
ACCOUNT_MAX_MEMORY = 64 * 1024 * 1024


class BusUser(StrEnum):
    """The static NATS users (announcers authenticate per node through the callout instead)."""

    ADMIN = "admin"
    WATCHER = "watcher"
    IPAM = "ipam"
    OPERATOR = "operator"
    AUTHENTICATOR = "authenticator"

    @property
    def password_variable(self) -> str:
        """The NATS server's environment variable holding this user's password."""
        return f"{self.name}_PASSWORD"


def node_user(node: str) -> str:
    return f"{NODE_USER_PREFIX}{node}"


def inbox_prefix(user: str) -> str:
    """The private inbox prefix of a user (static user name or ``node-<node>``); one subject token."""
    if user.startswith(NODE_USER_PREFIX):
        return f"_INBOX_node_{encode_token(user.removeprefix(NODE_USER_PREFIX))}"
    return f"_INBOX_{encode_token(user)}"


# --- building blocks ------------------------------------------------------------------------------


def _stream_info() -> list[str]:
    """Every stream's configuration and counts (not its messages): each service checks at start that
    the administrative step has made them all."""
    return ["$JS.API.INFO", *(f"$JS.API.STREAM.INFO.{spec.name.value}" for spec in STREAMS)]


def _ephemeral_reads(stream: StreamName) -> list[str]:
    """Reading a stream through ephemeral consumers (ordered push, unnamed pull) and direct gets.

    The client names its ordered consumers (``CONSUMER.CREATE.<stream>.<name>[.<filter>]``), so creating,
    pulling and deleting by name is allowed; every durable's name is denied to all but its owner
    (:func:`_durable_denials`), so nobody else can redefine, drain or delete it."""
    name = stream.value
    return [
        f"$JS.API.CONSUMER.CREATE.{name}",
        f"$JS.API.CONSUMER.CREATE.{name}.*",
        f"$JS.API.CONSUMER.CREATE.{name}.*.>",
        f"$JS.API.CONSUMER.INFO.{name}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{name}.*",
        f"$JS.API.CONSUMER.DELETE.{name}.*",
        f"$JS.API.STREAM.MSG.GET.{name}",
        f"$JS.API.DIRECT.GET.{name}",
        f"$JS.API.DIRECT.GET.{name}.>",
        f"$JS.FC.{name}.>",
    ]


def _own_node_reads(node: str) -> list[str]:
    """Reading ``node``'s own Node from ``K8S`` and nothing else of that stream.

    A consumer may be created only through the API subject that names its filter,
    ``CONSUMER.CREATE.K8S.<name>.<filter>`` (the client sends it for a named consumer of one literal
    subject, see ``bus.filtered_consumer_name``), and the server refuses a request whose configuration
    filters on anything else than that subject. No pulling (``MSG.NEXT``: it could drain another user's
    ephemeral reader) and no message gets (``MSG.GET``, ``DIRECT.GET``: any subject, named in the body)."""
    name = StreamName.K8S.value
    return [
        f"$JS.API.CONSUMER.CREATE.{name}.*.{k8s_subject(ObjectKind.NODE, '', node)}",
        f"$JS.API.CONSUMER.INFO.{name}.*",
        f"$JS.API.CONSUMER.DELETE.{name}.*",
        f"$JS.FC.{name}.>",
    ]


def _own_durables(owner: Component) -> list[str]:
    subjects: list[str] = []
    for durable in DURABLES:
        if durable.owner is owner:
            stream, name = durable.stream.value, durable.name
            subjects += [
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{name}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{name}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{name}.>",
                f"$JS.ACK.{stream}.{name}.>",
            ]
    return subjects


def _durable_denials(owner: Component | None) -> list[str]:
    """Every durable that is not ``owner``'s: no (re)defining it, pulling its messages, deleting or reading it."""
    subjects: list[str] = []
    for durable in DURABLES:
        if durable.owner is not owner:
            stream, name = durable.stream.value, durable.name
            subjects += [
                f"$JS.API.CONSUMER.CREATE.{stream}.{name}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{name}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{name}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
                f"$JS.API.CONSUMER.DELETE.{stream}.{name}",
                f"$JS.API.CONSUMER.INFO.{stream}.{name}",
            ]
    return subjects


def _lease(component: Component) -> list[str]:
    bucket = LEASES[component].bucket
    stream = f"KV_{bucket}"
    return [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>", f"$KV.{bucket}.>"]


def _service(
    component: Component,
    *,
    writes: Iterable[str],
    reads: Iterable[StreamName],
    hears_heartbeats: bool,
    user: BusUser,
    hears_closed_connections: bool = False,
) -> SubjectPermissions:
    read = list(reads)
    publish = [*writes, *_stream_info()]
    for stream in read:
        publish += _ephemeral_reads(stream)
    publish += _own_durables(component)
    if component in LEASES:
        publish += _lease(component)
    subscribe = [f"{inbox_prefix(user.value)}.>"]
    if hears_heartbeats:  # and may call the roll, so as not to wait a heartbeat interval to hear every node
        subscribe.append(HEARTBEATS)
        publish.append(ROLL_CALL)
    if hears_closed_connections:
        subscribe.append(CONNECTIONS_CLOSED)
    return SubjectPermissions(publish_allow=tuple(publish),
                              publish_deny=(CONNECTIONS_CLOSED, *_durable_denials(component)),
                              subscribe_allow=tuple(subscribe))


# --- the users ------------------------------------------------------------------------------------

_READ_ALL_BUT_SECRETS = (StreamName.K8S, StreamName.IPAM, StreamName.ANNOUNCE, StreamName.DEAD_LETTER)

PERMISSIONS: dict[BusUser, SubjectPermissions] = {
    BusUser.ADMIN: SubjectPermissions(
        # the JetStream API and key-value buckets; snapshot acknowledgements and restore uploads (``backup.py``);
        # the K8S list marks a restore sets to begun
        publish_allow=("$JS.API.>", "$KV.>", "$JS.SNAPSHOT.>", f"{K8S_LISTED_PREFIX}.*"),
        publish_deny=(CONNECTIONS_CLOSED,),
        subscribe_allow=(f"{inbox_prefix(BusUser.ADMIN.value)}.>",),
    ),
    BusUser.WATCHER: _service(
        Component.WATCHER, user=BusUser.WATCHER,
        writes=(f"{K8S_PREFIX}.>", f"{DEAD_LETTER_PREFIX}.>"),
        reads=(StreamName.K8S, StreamName.SECRETS, StreamName.IPAM, StreamName.ANNOUNCE),
        # closed connections: a standby takes the Lease at once from a leader whose connection closed
        hears_heartbeats=False, hears_closed_connections=True,
    ),
    BusUser.IPAM: _service(
        Component.IPAM, user=BusUser.IPAM,
        writes=(f"{IPAM_PREFIX}.>", f"{DEAD_LETTER_PREFIX}.>"),
        # ANNOUNCE: the nodes' data-plane reports (an IP goes only where its node can answer)
        reads=(StreamName.K8S, StreamName.IPAM, StreamName.ANNOUNCE),
        hears_heartbeats=True, hears_closed_connections=True,
    ),
    BusUser.OPERATOR: _service(
        Component.OPERATOR, user=BusUser.OPERATOR, writes=(), reads=_READ_ALL_BUT_SECRETS, hears_heartbeats=True,
    ),
    BusUser.AUTHENTICATOR: SubjectPermissions(
        publish_deny=(">", CONNECTIONS_CLOSED), subscribe_allow=(AUTH_CALLOUT_SUBJECT,), allow_responses=True,
    ),
}


def announcer_permissions(node: str) -> SubjectPermissions:
    """What the announcer of ``node`` may do: publish its own heartbeat and reports and read what it acts
    on: decisions, BGP passwords and, of the observed state, its own Node alone (its labels)."""
    publish = [heartbeat_subject(node), f"{ANNOUNCE_PREFIX}.{encode_token(node)}.>", *_stream_info(),
               *_own_node_reads(node)]
    for stream in (StreamName.SECRETS, StreamName.IPAM):
        publish += _ephemeral_reads(stream)
    return SubjectPermissions(
        publish_allow=tuple(publish),
        publish_deny=(CONNECTIONS_CLOSED, *_durable_denials(None)),
        # roll calls, which it answers at most once a second (it may not call one)
        subscribe_allow=(f"{inbox_prefix(node_user(node))}.>", ROLL_CALL),
    )


# --- the server's accounts.conf -------------------------------------------------------------------


def _quoted(subjects: Iterable[str], indent: str) -> list[str]:
    return [f'{indent}"{subject}"' for subject in subjects]


def _permission_lines(permissions: SubjectPermissions) -> list[str]:
    lines = ["        permissions: {"]
    for verb, allow, deny in (("publish", permissions.publish_allow, permissions.publish_deny),
                              ("subscribe", permissions.subscribe_allow, permissions.subscribe_deny)):
        lines.append(f"          {verb}: {{")
        for word, subjects in (("allow", allow), ("deny", deny)):
            if subjects:
                lines += [f"            {word}: [", *_quoted(subjects, "              "), "            ]"]
        lines.append("          }")
    if permissions.allow_responses:
        lines.append("          allow_responses: true")
    lines.append("        }")
    return lines


_COMMENTS = {
    BusUser.ADMIN: "the administrative step only (metalbus bus provision): streams, limits, durables, leases",
    BusUser.WATCHER: "writes observed Kubernetes state (K8S, SECRETS); reads decisions and reports for status; "
                     "hears closed connections (a dead leader's Lease is taken at once)",
    BusUser.IPAM: "the only writer of decisions (IPAM); reads K8S and the nodes' data-plane reports (ANNOUNCE), "
                  "hears heartbeats and closed connections, holds the ipam lease",
    BusUser.OPERATOR: "read-only, for metalbus status/explain/history: every stream but SECRETS, heartbeats",
    BusUser.AUTHENTICATOR: "the auth callout: answers the server about connecting announcers, nothing else",
}


AUTHORIZATION_TIMEOUT = 5  # seconds; more than the TLS handshake's own timeout (2 s), as the server requires


def _liveness_server_lines() -> list[str]:
    """The server settings liveness relies on, and the system account that reports closed connections."""
    return [
        "# Liveness: the server reports every closed connection of the metalbus account (a crashed announcer",
        "# at once) and pings a client silent for an interval, closing it after the pings go unanswered.",
        f"system_account: {SYSTEM_ACCOUNT}",
        f'ping_interval: "{PING_INTERVAL}"',
        f"ping_max: {PING_MAX}",
    ]


def _system_account_lines() -> list[str]:
    return [
        "  # The server's own account: no users; it hands the metalbus account its closed connections.",
        f"  {SYSTEM_ACCOUNT} {{",
        f'    exports: [ {{ stream: "{DISCONNECT_ADVISORY}" }} ]',
        "  }",
    ]


def _connections_closed_import() -> str:
    return (f'    imports: [ {{ stream: {{ account: {SYSTEM_ACCOUNT}, subject: "{DISCONNECT_ADVISORY}" }}, '
            f'to: "{CONNECTIONS_CLOSED}" }} ]')


def render_accounts(*, issuer: str) -> str:
    """The server's ``accounts.conf``: the account with its JetStream limits, the static users, and the
    auth callout that authenticates announcers, whose answers must be signed by ``issuer`` (an account
    nkey's public key). Passwords are the server's environment variables (``$WATCHER_PASSWORD``, ...)."""
    lines = [
        "# NATS accounts and users of metalbus. Generated by `metalbus bus accounts`; do not edit.",
        *_liveness_server_lines(),
        "accounts {",
        *_system_account_lines(),
        f"  {ACCOUNT} {{",
        f"    jetstream: {{ max_file: {ACCOUNT_MAX_FILE}, max_mem: {ACCOUNT_MAX_MEMORY} }}",
        _connections_closed_import(),
        "    users: [",
    ]
    for user in BusUser:
        lines += [f"      # {user.value}: {_COMMENTS[user]}", "      {", f"        user: {user.value}",
                  f"        password: ${user.password_variable}", *_permission_lines(PERMISSIONS[user]), "      }"]
    lines += [
        "    ]",
        "  }",
        "}",
        "authorization {",
        "  # Announcers (user node-<node>) are authenticated by the authenticator, which grants each",
        "  # the permissions of its own node; the static users above bypass it.",
        f"  # The server waits {AUTHORIZATION_TIMEOUT} s for a client's CONNECT and the authenticator's answer (a",
        "  # TokenReview on a busy API server, nodes reconnecting all at once); its default is 1 to 3 s.",
        f"  timeout: {AUTHORIZATION_TIMEOUT}",
        "  auth_callout {",
        f"    issuer: {issuer}",
        f"    account: {ACCOUNT}",
        f"    auth_users: [ {', '.join(user.value for user in BusUser)} ]",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


#: The user of a server without credentials: clients that name no user land here.
OPEN_USER = "anyone"


def render_open_accounts() -> str:
    """A server without credentials (tests, ``metalbus nats``): the same account, system account and
    pings, with one user that may do everything but forge a closed connection, and that every client
    naming no user becomes (the server's global account would publish no advisories)."""
    permissions = SubjectPermissions(publish_allow=(">",), publish_deny=(CONNECTIONS_CLOSED,), subscribe_allow=(">",))
    return "\n".join([
        "# A metalbus NATS server without credentials. Generated; do not edit.",
        *_liveness_server_lines(),
        "accounts {",
        *_system_account_lines(),
        f"  {ACCOUNT} {{",
        "    jetstream: enabled",
        _connections_closed_import(),
        f"    users: [ {{ user: {OPEN_USER}", *_permission_lines(permissions), "    } ]",
        "  }",
        "}",
        f"no_auth_user: {OPEN_USER}",
        "",
    ])
