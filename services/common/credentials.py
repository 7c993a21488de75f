"""The bus's secrets where there is no Kubernetes to keep them: the lab, ``metalbus dev`` and the tests.

One directory holds a password per static user, the authenticator's issuer seed and the node-token key,
each in a file of its own readable by root only. :meth:`BusCredentials.create` makes what is missing and
keeps what is there, so a restarted lab keeps its credentials.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.common.nats_jwt import SigningKey
from services.common.node_tokens import node_token
from services.common.permissions import BusUser, node_user

ISSUER_SEED = "issuer.seed"
NODE_TOKEN_KEY = "node-token.key"
#: The NATS server's environment variable naming the auth callout issuer (``accounts.conf``).
ISSUER_VARIABLE = "AUTH_CALLOUT_ISSUER"


def new_password() -> str:
    """A random password the NATS server's configuration reads back as a string: its environment
    variables are parsed as values, so a password must not look like a number (``4e5``, ``12M``)."""
    return "mb" + secrets.token_hex(24)


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


@dataclass(frozen=True, slots=True)
class BusCredentials:
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> BusCredentials:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for user in BusUser:
            path = directory / f"{user.value}.password"
            if not path.exists():
                _write_private(path, new_password())
        if not (directory / ISSUER_SEED).exists():
            _write_private(directory / ISSUER_SEED, SigningKey.new_account().seed.decode())
        if not (directory / NODE_TOKEN_KEY).exists():
            _write_private(directory / NODE_TOKEN_KEY, secrets.token_hex(32))
        return cls(directory)

    def password(self, user: BusUser) -> str:
        return (self.directory / f"{user.value}.password").read_text().strip()

    @property
    def issuer_seed_file(self) -> Path:
        return self.directory / ISSUER_SEED

    @property
    def issuer(self) -> SigningKey:
        return SigningKey.from_seed(self.issuer_seed_file.read_text())

    @property
    def node_token_key_file(self) -> Path:
        return self.directory / NODE_TOKEN_KEY

    def node_token(self, node: str) -> str:
        return node_token(self.node_token_key_file.read_text().strip().encode(), node)

    def node_password_file(self, node: str) -> Path:
        """A file holding ``node``'s token (the announcer's ``--nats-password-file``)."""
        path = self.directory / f"node-{node}.token"
        _write_private(path, self.node_token(node))
        return path

    def url(self, base: str, user: BusUser) -> str:
        """``base`` (``nats://host:port``) with ``user``'s credentials."""
        return with_credentials(base, user.value, self.password(user))

    def node_url(self, base: str, node: str) -> str:
        return with_credentials(base, node_user(node), self.node_token(node))

    def server_environment(self) -> dict[str, str]:
        """What the NATS server's ``accounts.conf`` reads from its environment."""
        environment = {user.password_variable: self.password(user) for user in BusUser}
        environment[ISSUER_VARIABLE] = self.issuer.public_key
        return environment


def with_credentials(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


#: The Kubernetes Secrets of a deployment, each read only by what needs it (docs/security.md).
SERVER_SECRET = "metalbus-nats-server"          # the NATS pods: every password, the issuer's public key
ISSUER_SECRET = "metalbus-nats-issuer"          # the authenticator (beside NATS): the issuer seed
COMPONENT_SECRETS = {
    BusUser.ADMIN: "metalbus-nats-admin",        # the provisioning Job
    BusUser.WATCHER: "metalbus-nats-watcher",
    BusUser.IPAM: "metalbus-nats-ipam",
    BusUser.OPERATOR: "metalbus-nats-operator",  # for people: metalbus status, explain, history
}
ROUTE_KEY = "route"


def kubernetes_secrets(*, namespace: str) -> list[dict[str, object]]:
    """Fresh Secrets for a deployment: random passwords, a new issuer key (``metalbus bus secrets``)."""
    passwords = {user: new_password() for user in BusUser}
    issuer = SigningKey.new_account()

    def secret(name: str, data: dict[str, str]) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "metalbus"}},
                "stringData": data}

    server = {ROUTE_KEY: new_password(), "issuer-public": issuer.public_key,
              **{user.value: passwords[user] for user in BusUser}}
    return [secret(SERVER_SECRET, server), secret(ISSUER_SECRET, {"seed": issuer.seed.decode()}),
            *(secret(name, {"password": passwords[user]}) for user, name in COMPONENT_SECRETS.items())]
