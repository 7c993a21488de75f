"""What the BGP agent folds: the configuration ipam put in force (no other), decisions coming and going with
only this node's part kept, this node's Node alone, passwords from Secrets; and what a peer's session is made
of."""

from __future__ import annotations

import ipaddress
from typing import Any

from schemas.events import BGPWithdrawReason, ConfigObjectObserved, Event, ObjectKind
from schemas.events.codec import encode, wrap
from schemas.events.decisions import ConfigurationEvaluated
from schemas.metallb import BGPPeer, parse_config_object
from services.announcer.agents.bgp_inputs import BgpInputs
from services.announcer.agents.bgp_sessions import session_spec_for
from services.announcer.bgp.peer_session import SessionSpec
from services.announcer.bgp.peering import Refusal, Refused
from services.watcher.observe.translate import config_observed, peer_password_observed
from tests.bgp_world import (
    bgp_peer,
    config_object,
    decided,
    deleted,
    in_force,
    node,
    route,
    secret,
    withdrawn,
)


def test_only_the_configuration_ipam_put_in_force_counts() -> None:
    inputs = BgpInputs("node-a")
    assert not inputs.apply(bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513))  # observed: not ours to judge
    assert inputs.in_force is None and not inputs.configuration.peers
    assert not inputs.apply(ConfigurationEvaluated(valid=False))  # nothing in force yet: still no peers
    assert inputs.in_force is None
    assert inputs.apply(in_force(bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513)))
    assert [p.name for p in inputs.configuration.peers] == ["tor"]
    assert inputs.apply(in_force())  # a valid empty configuration: no peers any more
    assert inputs.in_force == () and not inputs.configuration.peers


def test_decisions_come_and_go_and_only_this_nodes_part_is_kept() -> None:
    inputs = BgpInputs("node-a")
    assert inputs.apply(decided("198.51.100.7"))
    assert "198.51.100.7" in inputs.decisions
    assert not inputs.apply(decided("198.51.100.7"))  # the same decision again: nothing to re-plan
    assert inputs.apply(decided("198.51.100.7", nodes=("node-b",)))  # Local, served elsewhere: nothing kept
    assert "198.51.100.7" not in inputs.decisions
    assert not inputs.apply(decided("198.51.100.7", nodes=("node-b", "node-c")))  # still not here: the same
    assert not inputs.apply(decided("198.51.100.8", nodes=("node-b",)))  # never here: nothing to re-plan
    assert inputs.apply(decided("198.51.100.7", nodes=("node-a", "node-b")))
    assert inputs.apply(withdrawn("198.51.100.7", BGPWithdrawReason.NO_SERVING_ENDPOINTS))
    assert not inputs.decisions
    assert not inputs.apply(withdrawn("198.51.100.7"))


def test_route_terms_are_shared_by_every_ip_of_one_advertisement() -> None:
    inputs = BgpInputs("node-a")
    for last in range(1, 4):
        inputs.apply(decided(f"198.51.100.{last}", route("ads", f"198.51.100.{last}/32", communities=(7,),
                                                         node_selectors=({"matchLabels": {"rack": "a"}},))))
    terms = {id(d.routes[0][1]) for d in inputs.decisions.values()}
    assert len(terms) == 1
    (prefix, shared) = inputs.decisions["198.51.100.2"].routes[0]
    assert str(prefix) == "198.51.100.2/32" and shared.communities == (7,)


def test_only_this_nodes_node_counts() -> None:
    inputs = BgpInputs("node-a")
    assert not inputs.apply(node("node-b", "10.0.0.12"))
    assert inputs.apply(node("node-a", "10.0.0.11", "fd00::11", labels={"rack": "a"}))
    assert not inputs.apply(node("node-a", "10.0.0.11", "fd00::11", labels={"rack": "a"}, version="2"))
    facts = inputs.this_node
    assert facts is not None and facts.addresses == ("10.0.0.11", "fd00::11") and facts.labels == {"rack": "a"}
    assert not inputs.apply(deleted(ObjectKind.NODE, "node-b", namespace=""))
    assert inputs.apply(deleted(ObjectKind.NODE, "node-a", namespace=""))
    assert inputs.this_node is None


def peer_of(**spec: Any) -> BGPPeer:
    parsed = parse_config_object(bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513, **spec).raw)
    assert isinstance(parsed, BGPPeer)
    return parsed


def test_password_inline_or_from_the_referenced_secret() -> None:
    world = BgpInputs("node-a")
    assert world.password_for(peer_of()) is None  # no password asked for
    assert world.password_for(peer_of(password="inline")) == "inline"
    referencing = peer_of(passwordSecret={"name": "md5"})
    world.apply(secret("md5", "s3cret"))
    assert world.password_for(referencing) == "s3cret"


def refusal(world: BgpInputs, peer: BGPPeer) -> Refused:
    """What the session of ``peer`` is, given the password the agent has for it: here, a refusal."""
    world.apply(node("node-a", "10.0.0.11"))
    facts = world.this_node
    assert facts is not None
    refused = session_spec_for(peer, node=facts, password=world.password_for(peer), configuration=world.configuration)
    assert isinstance(refused, Refused), refused
    return refused


def test_a_password_that_cannot_be_read_refuses_the_peer_never_a_session_without_md5() -> None:
    """MetalLB's checks of a passwordSecret (there, of type kubernetes.io/basic-auth, with a password key)."""
    world = BgpInputs("node-a")
    referencing = peer_of(passwordSecret={"name": "md5"})
    missing = refusal(world, referencing)
    assert missing.reason is Refusal.PASSWORD_SECRET_MISSING
    assert missing.message == "secret ref not found: Secret metallb-system/md5 does not exist"
    world.apply(secret("md5", "s3cret").model_copy(update={"secret_type": "Opaque"}))
    wrong = refusal(world, referencing)
    assert wrong.reason is Refusal.PASSWORD_SECRET_WRONG_TYPE
    assert wrong.message == 'secret type mismatch on "metallb-system/md5", type "kubernetes.io/basic-auth" is expected'
    world.apply(secret("md5", "s3cret").model_copy(update={"data": {}}))
    empty = refusal(world, referencing)
    assert empty.reason is Refusal.PASSWORD_SECRET_WITHOUT_PASSWORD
    assert empty.message == 'password not specified in the secret "metallb-system/md5"'
    world.apply(secret("md5", "s3cret"))
    assert world.password_for(referencing) == "s3cret"
    world.apply(deleted(ObjectKind.SECRET, "md5", namespace="metallb-system"))
    assert refusal(world, referencing).reason is Refusal.PASSWORD_SECRET_MISSING


def test_an_inline_password_taken_out_by_the_watcher_comes_from_secrets() -> None:
    """The BGPPeer as the watcher publishes it says only that it has a password; the value arrives apart."""
    world = BgpInputs("node-a")
    raw = bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513, password="inline-md5").raw
    published = config_observed(raw).event
    assert isinstance(published, ConfigObjectObserved) and "inline-md5" not in str(published.raw)
    assert world.apply(in_force(published))
    (peer,) = world.configuration.peers
    assert peer.has_inline_password and peer.spec.password == ""
    assert refusal(world, peer).reason is Refusal.PASSWORD_NOT_OBSERVED  # not observed yet: never without it
    apart = peer_password_observed(raw)
    assert apart is not None and world.apply(apart.event)
    assert world.password_for(peer) == "inline-md5"
    assert not world.apply(apart.event)  # the same password again changes nothing
    assert world.apply(deleted(ObjectKind.BGP_PEER_PASSWORD, "tor", namespace="metallb-system"))
    assert refusal(world, peer).reason is Refusal.PASSWORD_NOT_OBSERVED


def test_session_spec_from_peer_node_and_profiles() -> None:
    world = BgpInputs("node-a")
    world.apply(node("node-a", "10.0.0.11", "fd00::11"))
    profile = config_object("BFDProfile", "fast", {"receiveInterval": 300, "transmitInterval": 300})
    world.apply(in_force(profile))
    facts = world.this_node
    assert facts is not None
    spec = session_spec_for(peer_of(bfdProfile="fast"), node=facts, password="pw", configuration=world.configuration)
    assert isinstance(spec, SessionSpec)
    assert spec.speaker.password == "pw"
    assert spec.speaker.session.router_id == ipaddress.IPv4Address("10.0.0.11")
    assert spec.speaker.session.next_hop_v4 is None  # the IPv4 session's own address
    assert spec.speaker.session.next_hop_v6 == ipaddress.IPv6Address("fd00::11")
    assert spec.bfd is not None and spec.bfd.desired_min_tx == 0.3
    missing = session_spec_for(peer_of(bfdProfile="nope"), node=facts, password=None,
                               configuration=world.configuration)  # fmt: skip
    assert isinstance(missing, Refused) and missing.reason is Refusal.BFD_UNAVAILABLE
    assert spec == session_spec_for(peer_of(bfdProfile="fast"), node=facts, password="pw",
                                    configuration=world.configuration)  # fmt: skip


def test_another_nodes_local_ip_is_skimmed_unread_unless_it_changes_something_here() -> None:
    inputs = BgpInputs("node-a")

    def body(event: Event) -> bytes:
        return encode(wrap(event, producer="ipam"))

    elsewhere = body(decided("198.51.100.7", nodes=("node-b", "node-c")))
    assert inputs.skims(elsewhere)  # nothing held for it: nothing to read
    assert not inputs.skims(body(decided("198.51.100.7", nodes=("node-a", "node-b"))))  # served here
    assert not inputs.skims(body(decided("198.51.100.7")))  # Cluster: every node
    assert not inputs.skims(body(withdrawn("198.51.100.7")))
    assert not inputs.skims(b"not json") and not inputs.skims(b'{"event": "BGPAdvertisementDecided"}')
    older = elsewhere.replace(b'"schema_version":1,', b'"schema_version":0,', 1)
    assert older != elsewhere and not inputs.skims(older)  # another version: the total reader upcasts it
    inputs.apply(decided("198.51.100.7", nodes=("node-a",)))
    assert not inputs.skims(elsewhere)  # it held a decision here: the change must be read (a withdrawal here)


def test_a_decision_taken_from_its_json_is_the_one_read_in_full() -> None:
    """At the start most decisions are folded from their JSON without a model: the same decision as the
    total reader's; a route with node selectors, another version or a body of the wrong shape is read in full."""
    plain = [
        decided("198.51.100.7"),
        decided("198.51.100.8", route("a1", "198.51.100.0/24", communities=(7, 9), large=((1, 2, 3),), local_pref=50),
                route("a2", "198.51.100.8/32", peers=("tor",)), services=("web", "db")),
        decided("2001:db8::7", nodes=("node-a", "node-b")),
    ]  # fmt: skip
    taken, read = BgpInputs("node-a"), BgpInputs("node-a")
    for event in plain:
        assert taken.takes(encode(wrap(event, producer="ipam")))
        read.apply(event)
    assert taken.decisions == read.decisions and list(taken.decisions) == list(read.decisions)
    assert taken.takes(encode(wrap(decided("198.51.100.7", nodes=("node-b",)), producer="ipam")))  # not here
    assert "198.51.100.7" not in taken.decisions

    selected = decided("198.51.100.9", route("ads", "198.51.100.9/32", node_selectors=({"matchLabels": {"a": "b"}},)))
    body = encode(wrap(selected, producer="ipam"))
    assert not taken.takes(body) and not taken.takes(body.replace(b'"schema_version":1,', b'"schema_version":0,'))
    assert not taken.takes(encode(wrap(withdrawn("198.51.100.7"), producer="ipam")))
    mangled = encode(wrap(plain[0], producer="ipam")).replace(b'"communities":[]', b'"communities":["7"]')
    assert b'"communities":["7"]' in mangled and not taken.takes(mangled)
