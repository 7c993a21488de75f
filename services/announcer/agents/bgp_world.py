"""The BGP agent's view of the bus, folded from events: Nodes, Services, endpoints and the metallb.io objects
from the ``K8S`` stream; the BGP passwords (referenced Secrets, BGPPeers' inline passwords) from ``SECRETS``;
allocations and the configuration in force from ``IPAM``.

Pure: ``apply(event)`` folds one event and says whether anything the plan depends on changed.

The configuration is the one the ipam's ``ConfigurationEvaluated`` puts in force (the last valid set, the one
the allocations were made under; its objects come in ``ConfigurationPart`` messages before it); until the
ipam has published one, the observed objects are used when they parse and validate. Either way an invalid
set never replaces a valid one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from schemas.events import (
    AllocationFailed,
    BGPPeerPasswordObserved,
    ConfigObjectObserved,
    EndpointsObserved,
    Event,
    IPAllocated,
    IPReleased,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    SecretObserved,
    ServiceObserved,
)
from schemas.events.decisions import ConfigurationEvaluated, ConfigurationPart
from schemas.events.in_force import InForceParts
from schemas.events.observed import CONFIG_KINDS
from schemas.metallb import (
    SECRET_PASSWORD_KEY,
    BGPPeer,
    InvalidConfigObject,
    PasswordSecretProblem,
    parse_config_object,
    password_secret_message,
    password_secret_problem,
    validate_configuration,
)
from schemas.metallb.parsing import ConfigObject
from services.announcer.agents.bgp_plan import (
    Allocation,
    Configuration,
    NodeFacts,
    ServiceFacts,
    ServiceKey,
)

log = logging.getLogger("metalbus.announcer.bgp")

ConfigKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(slots=True)
class BgpWorld:
    node: str
    nodes: dict[str, NodeFacts] = field(default_factory=dict)
    services: dict[ServiceKey, ServiceObserved] = field(default_factory=dict)
    endpoints: dict[ServiceKey, EndpointsObserved] = field(default_factory=dict)
    secrets: dict[tuple[str, str], SecretObserved] = field(default_factory=dict)
    inline_passwords: dict[tuple[str, str], str] = field(default_factory=dict)  # by BGPPeer (namespace, name)
    observed_config: dict[ConfigKey, ConfigObjectObserved] = field(default_factory=dict)
    allocations: dict[ServiceKey, Allocation] = field(default_factory=dict)
    facts: dict[ServiceKey, ServiceFacts] = field(default_factory=dict)  # kept current by apply
    in_force: tuple[ConfigObject, ...] | None = None  # from the ipam, once it published one
    configuration: Configuration = field(default_factory=Configuration)
    _observed_valid: tuple[ConfigObject, ...] = ()
    _parts: InForceParts = field(default_factory=InForceParts)

    # --- folding -------------------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when the plan may change."""
        if isinstance(event, NodeObserved):
            if event.ref.name != self.node:
                return False
            internal = [a.address for a in event.addresses if a.type == "InternalIP"]
            others = [a.address for a in event.addresses if a.type != "InternalIP" and a.type.endswith("IP")]
            self.nodes[event.ref.name] = NodeFacts(
                name=event.ref.name, labels=dict(event.labels), network_unavailable=event.network_unavailable,
                addresses=tuple(internal + others),
            )  # fmt: skip
            return True
        if isinstance(event, ServiceObserved):
            key = (event.ref.namespace, event.ref.name)
            self.services[key] = event
            return self._refresh_facts(key)
        if isinstance(event, EndpointsObserved):
            key = (event.namespace, event.service)
            self.endpoints[key] = event
            return self._refresh_facts(key)
        if isinstance(event, SecretObserved):
            self.secrets[(event.ref.namespace, event.ref.name)] = event
            return True
        if isinstance(event, BGPPeerPasswordObserved):
            key = (event.ref.namespace, event.ref.name)
            changed = self.inline_passwords.get(key) != event.password
            self.inline_passwords[key] = event.password
            return changed
        if isinstance(event, ConfigObjectObserved):
            self.observed_config[(event.kind, event.ref.namespace, event.ref.name)] = event
            return self._observed_changed()
        if isinstance(event, ObjectDeleted):
            return self._delete(event)
        if isinstance(event, IPAllocated):
            key = (event.service.namespace, event.service.name)
            allocation = Allocation(service=event.service, ips=event.ips, pool=event.pool)
            if self.allocations.get(key) == allocation:
                return False  # re-adopted as it was
            self.allocations[key] = allocation
            return True
        if isinstance(event, IPReleased | AllocationFailed):
            return self.allocations.pop((event.service.namespace, event.service.name), None) is not None
        if isinstance(event, ConfigurationPart):
            self._parts.add(event)  # in force once an evaluation names it
            return False
        if isinstance(event, ConfigurationEvaluated):
            return self._in_force(event)
        return False

    def _delete(self, event: ObjectDeleted) -> bool:
        key = (event.namespace, event.name)
        if event.kind is ObjectKind.NODE:
            return self.nodes.pop(event.name, None) is not None
        if event.kind is ObjectKind.SERVICE:
            return self.services.pop(key, None) is not None and self._refresh_facts(key)
        if event.kind is ObjectKind.ENDPOINTS:
            return self.endpoints.pop(key, None) is not None and self._refresh_facts(key)
        if event.kind is ObjectKind.SECRET:
            return self.secrets.pop(key, None) is not None
        if event.kind is ObjectKind.BGP_PEER_PASSWORD:
            return self.inline_passwords.pop(key, None) is not None
        kind = next((name for name, value in CONFIG_KINDS.items() if value is event.kind), None)
        if kind is not None and self.observed_config.pop((kind, event.namespace, event.name), None) is not None:
            return self._observed_changed()
        return False

    def _in_force(self, event: ConfigurationEvaluated) -> bool:
        raws = self._parts.settle(event)
        if raws is None:  # a part it names never arrived: the ipam's stream is damaged
            log.warning("in force parts missing generation=%s parts=%d", event.in_force_generation,
                        event.in_force_parts)
            return False
        objects: list[ConfigObject] = []
        for raw in raws:
            try:
                objects.append(parse_config_object(raw))
            except InvalidConfigObject as error:  # the ipam validated it: only a newer schema gets here
                log.warning("in force object unreadable error=%s", error)
        if not raws and self.in_force is not None:
            return False  # nothing valid recorded yet: keep what we have
        self.in_force = tuple(objects)
        self.configuration = Configuration.of(self.in_force)
        return True

    def _observed_changed(self) -> bool:
        """Until the ipam speaks, the observed objects count when the whole set is valid."""
        objects: list[ConfigObject] = []
        for key in sorted(self.observed_config):
            try:
                objects.append(parse_config_object(self.observed_config[key].raw))
            except InvalidConfigObject:
                return False
        if not validate_configuration(objects).ok:
            return False
        self._observed_valid = tuple(objects)
        if self.in_force is None:
            self.configuration = Configuration.of(objects)
            return True
        return False

    # --- views for the planner -------------------------------------------------------------------------

    def this_node(self) -> NodeFacts | None:
        return self.nodes.get(self.node)

    def service_facts(self) -> dict[ServiceKey, ServiceFacts]:
        return self.facts

    def _refresh_facts(self, key: ServiceKey) -> bool:
        """Recompute one Service's facts; True when they changed."""
        service = self.services.get(key)
        if service is None:
            return self.facts.pop(key, None) is not None
        endpoints = self.endpoints.get(key)
        facts = ServiceFacts(
            external_traffic_policy=service.external_traffic_policy, labels=dict(service.labels),
            serving={e.node: e.serving for e in endpoints.nodes} if endpoints is not None else {},
        )  # fmt: skip
        if self.facts.get(key) == facts:
            return False
        self.facts[key] = facts
        return True

    def password_for(self, peer: BGPPeer) -> str | PasswordUnavailable | None:
        """The inline password (published apart from its BGPPeer, which only says it has one), or the
        ``password`` key of the referenced Secret (namespace defaults to the peer's); None when the peer asks
        for none. A password asked for that cannot be had (not observed, a Secret missing, of the wrong type
        or without the key) refuses the peer: it never gets a session without its password."""
        if peer.spec.password:  # a configuration recorded before inline passwords were taken out
            return peer.spec.password
        if peer.has_inline_password:
            inline = self.inline_passwords.get((peer.namespace or "", peer.name))
            if inline is None:
                return PasswordUnavailable(None, "the peer's inline password has not been received yet")
            return inline
        reference = peer.spec.password_secret
        if reference is None or not reference.name:
            return None
        namespace = reference.namespace or peer.namespace or ""
        secret = self.secrets.get((namespace, reference.name))
        password = secret.data.get(SECRET_PASSWORD_KEY) if secret is not None else None
        problem = password_secret_problem(secret.secret_type if secret is not None else None,
                                          has_password=password is not None)
        if problem is not None:
            return PasswordUnavailable(problem, password_secret_message(problem, namespace, reference.name))
        return password


@dataclass(frozen=True, slots=True)
class PasswordUnavailable:
    """A password the peer asks for and cannot have: what is wrong with its Secret (None: an inline
    password not received yet), and the message saying so. The peer is refused, never served without it."""

    problem: PasswordSecretProblem | None
    message: str
