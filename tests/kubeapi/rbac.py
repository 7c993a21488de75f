"""RBAC as the API server's authorizer applies it: Roles, ClusterRoles and their bindings, and the 403 it gives.

    policy = Policy.from_objects(objects)             # any Role, ClusterRole, RoleBinding, ClusterRoleBinding
    policy.allows(user, Attributes(verb="list", group="", resource="services", namespace="default"))
    policy.without_rule("Role", "metallb-system", "metalbus-watcher", 2)   # the same policy, one rule short

Pure but for ``Enforcer``, which keeps each decision it makes (thread-safe) for a test to read. A
ClusterRoleBinding grants its ClusterRole everywhere; a RoleBinding grants its Role (or a ClusterRole) in its
own namespace only. A rule matches on API group, resource (``services/status`` names the
subresource, ``*`` anything, ``*/status`` any resource's status), verb (``*`` any) and, when it lists
``resourceNames``, the name asked for — which a list or watch has only through ``fieldSelector
metadata.name=...``, as the API server reads it. Subjects are ServiceAccounts, Users and Groups; a service
account's groups are ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated``.
Members of ``system:masters`` are allowed everything, without a binding, as on a real cluster. Aggregated
ClusterRoles and non-resource URLs are not modelled (the stand-in serves discovery to anyone).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.kubeapi.errors import ApiError, qualified

Obj = dict[str, Any]

RBAC_API = "rbac.authorization.k8s.io/v1"
MASTERS = "system:masters"


@dataclass(frozen=True)
class User:
    """Who is asking, as authentication names them."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str

    @property
    def user(self) -> User:
        return User(
            f"system:serviceaccount:{self.namespace}:{self.name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{self.namespace}", "system:authenticated"),
        )


#: The stand-in's own administrator (the token every client had before RBAC): allowed everything.
ADMIN = User("kubeapi-admin", (MASTERS, "system:authenticated"))
#: A request without credentials.
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    """One resource request, as the authorizer sees it."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Rule:
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: Obj) -> Rule:
        return cls(
            frozenset(raw.get("apiGroups") or ()),
            frozenset(raw.get("resources") or ()),
            frozenset(raw.get("verbs") or ()),
            frozenset(raw.get("resourceNames") or ()),
        )

    def matches(self, request: Attributes) -> bool:
        wanted = request.full_resource
        resource_ok = (
            "*" in self.resources
            or wanted in self.resources
            or (request.subresource is not None and f"*/{request.subresource}" in self.resources)
        )
        return (
            ("*" in self.api_groups or request.group in self.api_groups)
            and resource_ok
            and ("*" in self.verbs or request.verb in self.verbs)
            and (not self.resource_names or request.name in self.resource_names)
        )


@dataclass(frozen=True)
class RoleRef:
    """A Role (namespace set) or a ClusterRole (namespace None)."""

    kind: str
    namespace: str | None
    name: str


@dataclass(frozen=True)
class Binding:
    role: RoleRef
    namespace: str | None
    """Where it grants: a RoleBinding's namespace, None for a ClusterRoleBinding (everywhere)."""
    subjects: tuple[Obj, ...]

    def names(self, user: User) -> bool:
        for subject in self.subjects:
            kind, name = subject.get("kind"), subject.get("name")
            if kind == "ServiceAccount" and user.name == f"system:serviceaccount:{subject.get('namespace')}:{name}":
                return True
            if (kind == "User" and user.name == name) or (kind == "Group" and name in user.groups):
                return True
        return False


@dataclass(frozen=True)
class Policy:
    roles: dict[RoleRef, tuple[Rule, ...]]
    bindings: tuple[Binding, ...]

    @classmethod
    def from_objects(cls, objects: Iterable[Obj]) -> Policy:
        roles: dict[RoleRef, tuple[Rule, ...]] = {}
        bindings: list[Binding] = []
        for obj in objects:
            if obj.get("apiVersion") != RBAC_API:
                continue
            kind, meta = obj["kind"], obj["metadata"]
            namespace = meta.get("namespace") if kind in ("Role", "RoleBinding") else None
            if kind in ("Role", "ClusterRole"):
                roles[RoleRef(kind, namespace, meta["name"])] = tuple(Rule.parse(r) for r in obj.get("rules") or ())
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                ref = obj["roleRef"]
                role = RoleRef(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])
                bindings.append(Binding(role, namespace, tuple(obj.get("subjects") or ())))
        return cls(roles, tuple(bindings))

    def rules(self) -> list[tuple[RoleRef, int, Rule]]:
        """Every rule of every role, with its place: what ``without_rule`` takes."""
        return [(ref, index, rule) for ref, rules in self.roles.items() for index, rule in enumerate(rules)]

    def without_rule(self, role: RoleRef, index: int) -> Policy:
        rules = self.roles[role]
        return dataclasses.replace(self, roles={**self.roles, role: rules[:index] + rules[index + 1 :]})

    def allows(self, user: User, request: Attributes) -> bool:
        if MASTERS in user.groups:
            return True
        for binding in self.bindings:
            if binding.namespace is not None and binding.namespace != request.namespace:
                continue
            if not binding.names(user):
                continue
            if any(rule.matches(request) for rule in self.roles.get(binding.role, ())):
                return True
        return False


@dataclass(frozen=True)
class Decision:
    user: User
    request: Attributes
    allowed: bool


class Enforcer:
    """A policy applied to a server's requests, every decision kept."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._decisions: list[Decision] = []

    def authorize(self, user: User, request: Attributes) -> None:
        """Nothing when allowed; else the API server's 403."""
        allowed = self.policy.allows(user, request)
        with self._lock:
            self._decisions.append(Decision(user, request, allowed))
        if not allowed:
            raise forbidden(user, request)

    def decisions(self, user: User | None = None) -> list[Decision]:
        with self._lock:
            return [d for d in self._decisions if user is None or d.user == user]


def forbidden(user: User, request: Attributes) -> ApiError:
    """The API server's answer to a request RBAC does not allow, word for word."""
    where = f'in the namespace "{request.namespace}"' if request.namespace else "at the cluster scope"
    why = (
        f'User "{user.name}" cannot {request.verb} resource "{request.full_resource}" in API group'
        f' "{request.group}" {where}'
    )
    what = qualified(request.resource, request.group)
    subject = f'{what} "{request.name}"' if request.name else what
    details: Obj = {"group": request.group, "kind": request.resource}
    if request.name:
        details["name"] = request.name
    return ApiError(403, f"{subject} is forbidden: {why}", details=details)
