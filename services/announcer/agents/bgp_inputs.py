"""What the BGP agent reads, folded (pure): ipam's BGP decisions, the configuration ipam put in force, this
node's own Node and the BGP passwords.

- ``IPAM``: ``ipam.bgp.<ip>`` (``BGPAdvertisementDecided`` / ``BGPAdvertisementWithdrawn``: what is advertised
  for an IP, and from which nodes), the configuration in force (``ConfigurationEvaluated`` and its
  ``ConfigurationPart`` messages: the BGPPeers and BFD profiles). No configuration of its own: until ipam has
  put one in force, there are no peers.
- ``K8S``: this node's Node only (``k8s.node._.<node>``): its labels (peers' and routes' ``nodeSelectors``),
  whether it is usable, its addresses (router ID, next hops).
- ``SECRETS``: the BGP passwords (referenced Secrets, BGPPeers' inline passwords).

``apply(event)`` folds one event and says whether the plan may change. Per IP only a compact
:class:`IPDecision` is kept, and only for the IPs advertised from here (``nodes`` None, or naming this node):
another node's Local IP is nothing to this one, kept as no decision at all. The route terms are interned
(every IP one BGPAdvertisement covers shares one :class:`RouteTerms`). :meth:`BgpInputs.skims` tells such a
decision from its body alone (no model built), when it changes nothing here: most of a big cluster's Local IPs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic_core import from_json

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPPeerPasswordObserved,
    BGPRoute,
    Event,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    SecretObserved,
)
from schemas.events.base import MAX_BODY_BYTES
from schemas.events.decisions import ConfigurationEvaluated, ConfigurationPart
from schemas.events.in_force import InForceParts
from schemas.metallb import (
    SECRET_PASSWORD_KEY,
    BGPPeer,
    InvalidConfigObject,
    PasswordSecretProblem,
    parse_config_object,
    password_secret_message,
    password_secret_problem,
)
from schemas.metallb.parsing import ConfigObject
from schemas.metallb.rules import NodeFacts
from services.announcer.agents.bgp_plan import Configuration, IPDecision, RouteTerms, service_name
from services.announcer.bgp.nlri import Prefix, hashed_prefix

log = logging.getLogger("metalbus.announcer.bgp")


@dataclass(slots=True)
class BgpInputs:
    node: str
    this_node: NodeFacts | None = None
    decisions: dict[str, IPDecision] = field(default_factory=dict)
    secrets: dict[tuple[str, str], SecretObserved] = field(default_factory=dict)
    inline_passwords: dict[tuple[str, str], str] = field(default_factory=dict)  # by BGPPeer (namespace, name)
    in_force: tuple[ConfigObject, ...] | None = None  # None until ipam puts a configuration in force
    configuration: Configuration = field(default_factory=Configuration)
    _parts: InForceParts = field(default_factory=InForceParts)
    _terms: dict[tuple[object, ...], RouteTerms] = field(default_factory=dict)

    # --- folding -------------------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when the plan may change."""
        if isinstance(event, BGPAdvertisementDecided):
            if event.nodes is not None and self.node not in event.nodes:  # another node's Local IP
                return self.decisions.pop(event.ip, None) is not None
            decision = self._decision(event)
            if self.decisions.get(event.ip) == decision:
                return False
            self.decisions[event.ip] = decision
            return True
        if isinstance(event, BGPAdvertisementWithdrawn):
            return self.decisions.pop(event.ip, None) is not None
        if isinstance(event, NodeObserved):
            if event.ref.name != self.node:
                return False
            internal = [a.address for a in event.addresses if a.type == "InternalIP"]
            others = [a.address for a in event.addresses if a.type != "InternalIP" and a.type.endswith("IP")]
            facts = NodeFacts(
                name=event.ref.name, labels=dict(event.labels), network_unavailable=event.network_unavailable,
                addresses=tuple(internal + others),
            )  # fmt: skip
            changed, self.this_node = facts != self.this_node, facts
            return changed
        if isinstance(event, SecretObserved):
            self.secrets[(event.ref.namespace, event.ref.name)] = event
            return True
        if isinstance(event, BGPPeerPasswordObserved):
            key = (event.ref.namespace, event.ref.name)
            changed = self.inline_passwords.get(key) != event.password
            self.inline_passwords[key] = event.password
            return changed
        if isinstance(event, ObjectDeleted):
            return self._delete(event)
        if isinstance(event, ConfigurationPart):
            self._parts.add(event)  # in force once an evaluation names it
            return False
        if isinstance(event, ConfigurationEvaluated):
            return self._in_force(event)
        return False

    def _decision(self, event: BGPAdvertisementDecided) -> IPDecision:
        return IPDecision.of(
            services=tuple(service_name(s.namespace, s.name) for s in event.services),
            uids=tuple(s.uid for s in event.services), routes=map(self._route, event.routes),
        )  # fmt: skip

    def _route(self, route: BGPRoute) -> tuple[Prefix, RouteTerms]:
        terms = self._interned(RouteTerms(
            advertisement=route.advertisement, communities=route.communities,
            large_communities=route.large_communities, local_pref=route.local_pref, peers=route.peers,
            node_selectors=route.node_selectors,
        ))  # fmt: skip
        return hashed_prefix(route.prefix), terms

    def _interned(self, terms: RouteTerms) -> RouteTerms:
        """The one instance of ``terms`` every IP shares."""
        key = (terms.advertisement, terms.communities, terms.large_communities, terms.local_pref, terms.peers,
               tuple(s.model_dump_json() for s in terms.node_selectors))  # fmt: skip
        return self._terms.setdefault(key, terms)

    def takes(self, data: bytes) -> bool:
        """For the start's read of every decision: True when the body ``data`` was folded from its JSON alone,
        without a model (a BGP decision of this build's version whose fields are all plain: no route
        ``nodeSelectors``), or changes nothing here (:meth:`skims`). False: read it in full, which checks it
        whole. Not for the decisions followed live, whose trace each report joins."""
        event = _decision_json(data)
        if event is None:
            return False
        ip, nodes = event.get("ip"), event.get("nodes")
        if not isinstance(ip, str) or not (nodes is None or isinstance(nodes, list)):
            return False
        if nodes is not None and self.node not in nodes:  # another node's Local IP
            self.decisions.pop(ip, None)
            return True
        decision = self._decision_of_json(event)
        if decision is None:
            return False
        self.decisions[ip] = decision
        return True

    def _decision_of_json(self, event: dict[str, object]) -> IPDecision | None:
        """The decision of a body's ``event`` read as JSON, when every field is of its type; else None."""
        services, routes = event.get("services"), event.get("routes")
        if not isinstance(services, list) or not isinstance(routes, list) or not routes:
            return None
        names: list[str] = []
        uids: list[str] = []
        for service in services:
            namespace, name, uid = _field(service, "namespace"), _field(service, "name"), _field(service, "uid", "")
            if not isinstance(namespace, str) or not isinstance(name, str) or not isinstance(uid, str):
                return None
            names.append(service_name(namespace, name))
            uids.append(uid)
        made: list[tuple[Prefix, RouteTerms]] = []
        for route in routes:
            terms = self._terms_of_json(route)
            prefix = _field(route, "prefix")
            if terms is None or not isinstance(prefix, str):
                return None
            try:
                made.append((hashed_prefix(prefix), terms))
            except ValueError:
                return None
        return IPDecision.of(services=tuple(names), uids=tuple(uids), routes=made)

    def _terms_of_json(self, route: object) -> RouteTerms | None:
        advertisement, local_pref = _field(route, "advertisement"), _field(route, "local_pref", 0)
        communities, large = _words(_field(route, "communities")), _field(route, "large_communities")
        peers, selectors = _field(route, "peers", []), _field(route, "node_selectors", [])
        if selectors != [] or not isinstance(advertisement, str) or communities is None:
            return None  # node selectors are models: such a route is read in full
        if type(local_pref) is not int or not 0 <= local_pref <= _WORD or not isinstance(peers, list):
            return None
        if not isinstance(large, list) or not all(isinstance(p, str) for p in peers):
            return None
        triples = [_words(triple) for triple in large]
        if not all(triple is not None and len(triple) == 3 for triple in triples):
            return None
        return self._interned(RouteTerms(
            advertisement=advertisement, communities=communities,
            large_communities=tuple((t[0], t[1], t[2]) for t in triples if t is not None), local_pref=local_pref,
            peers=tuple(peers), node_selectors=(),
        ))  # fmt: skip

    def _delete(self, event: ObjectDeleted) -> bool:
        key = (event.namespace, event.name)
        if event.kind is ObjectKind.NODE:
            if event.name != self.node or self.this_node is None:
                return False
            self.this_node = None
            return True
        if event.kind is ObjectKind.SECRET:
            return self.secrets.pop(key, None) is not None
        if event.kind is ObjectKind.BGP_PEER_PASSWORD:
            return self.inline_passwords.pop(key, None) is not None
        return False

    def _in_force(self, event: ConfigurationEvaluated) -> bool:
        raws = self._parts.settle(event)
        if raws is None:  # a part it names never arrived: the ipam's stream is damaged
            log.warning("in force parts missing generation=%s parts=%d", event.in_force_generation,
                        event.in_force_parts)  # fmt: skip
            return False
        if not raws and not event.in_force_generation:
            return False  # nothing put in force yet (the first sets were invalid): no peers
        objects: list[ConfigObject] = []
        for raw in raws:
            try:
                objects.append(parse_config_object(raw))
            except InvalidConfigObject as error:  # the ipam validated it: only a newer schema gets here
                log.warning("in force object unreadable error=%s", error)
        self.in_force = tuple(objects)
        self.configuration = Configuration.of(self.in_force)
        self._terms.clear()  # terms of advertisements gone are not kept; live ones are interned again
        return True

    def skims(self, data: bytes) -> bool:
        """True when the body ``data`` is a BGP decision that changes nothing here: of this build's version,
        for an IP advertised only from other nodes (``nodes`` a list without this one) and holding no decision
        here. The caller then passes over it unread (no model built); anything else, False: read it in full."""
        ip = _another_nodes_ip(data, self.node)
        return ip is not None and ip not in self.decisions

    # --- views for the planner -------------------------------------------------------------------------

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
                                          has_password=password is not None)  # fmt: skip
        if problem is not None:
            return PasswordUnavailable(problem, password_secret_message(problem, namespace, reference.name))
        return password


@dataclass(frozen=True, slots=True)
class PasswordUnavailable:
    """A password the peer asks for and cannot have: what is wrong with its Secret (None: an inline
    password not received yet), and the message saying so. The peer is refused, never served without it."""

    problem: PasswordSecretProblem | None
    message: str


_DECIDED = BGPAdvertisementDecided.version


_WORD = 0xFFFFFFFF


def _field(item: object, name: str, default: object = None) -> object:
    return item.get(name, default) if isinstance(item, dict) else None


def _words(value: object) -> tuple[int, ...] | None:
    """A JSON list of unsigned 32-bit integers as a tuple; None for anything else."""
    if not isinstance(value, list) or not all(type(v) is int and 0 <= v <= _WORD for v in value):
        return None
    return tuple(value)


def _decision_json(data: bytes) -> dict[str, object] | None:
    """The ``event`` of a ``BGPAdvertisementDecided`` body of this build's version, as JSON; else None."""
    if len(data) > MAX_BODY_BYTES or b'"BGPAdvertisementDecided"' not in data:
        return None
    try:
        body = from_json(data)
    except ValueError:
        return None
    event = body.get("event") if isinstance(body, dict) else None
    if not isinstance(event, dict) or body.get("schema_version") != _DECIDED:
        return None
    return event if event.get("type") == "BGPAdvertisementDecided" else None


def _another_nodes_ip(data: bytes, node: str) -> str | None:
    """The IP of a ``BGPAdvertisementDecided`` of this build's version whose ``nodes`` is a list without
    ``node``; None for anything else (another type, version or node, a body that is not JSON): the total reader
    upcasts or refuses it. The other fields are not checked: a broken body naming other nodes is dropped."""
    if b'"nodes":null' in data or b'"%s"' % node.encode() in data:
        return None  # for every node (Cluster), or the node's name in it (likely among ``nodes``): read in full
    event = _decision_json(data)
    if event is None:
        return None
    ip, nodes = event.get("ip"), event.get("nodes")
    if not isinstance(ip, str) or not isinstance(nodes, list):
        return None
    return None if node in nodes else ip
