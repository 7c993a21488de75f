"""The BGP agent's folded view: which configuration counts, passwords from Secrets, allocations coming and
going, facts that change only when they do; and what a peer's session is made of."""

from __future__ import annotations

import ipaddress
from typing import Any

from schemas.events import AllocationFailed, AllocationFailureReason, ConfigObjectObserved, ObjectKind, ServiceId
from schemas.events.decisions import ConfigurationEvaluated
from schemas.metallb import BGPPeer, parse_config_object
from services.announcer.agents.bgp_sessions import session_spec_for
from services.announcer.agents.bgp_world import BgpWorld
from services.announcer.bgp.peer_session import SessionSpec
from services.announcer.bgp.peering import Refusal, Refused
from services.watcher.observe.translate import config_observed, peer_password_observed
from tests.bgp_world import (
    allocated,
    bgp_advertisement,
    bgp_peer,
    config_object,
    deleted,
    endpoints,
    node,
    released,
    secret,
    service,
)
from tests.builders import pool


def test_observed_configuration_counts_until_the_ipam_has_one_in_force() -> None:
    world = BgpWorld("node-a")
    assert world.apply(pool("lan", "198.51.100.0/24"))
    assert set(world.configuration.pools) == {"lan"}
    # an advertisement naming an unknown peer is valid (MetalLB accepts it) ...
    assert world.apply(bgp_advertisement("ads", peers=["nobody"], localPref=100))
    assert len(world.configuration.advertisements) == 1
    # ... but an invalid set (another localPref for the same update) never replaces a valid one
    assert not world.apply(bgp_advertisement("other", localPref=200))
    assert len(world.configuration.advertisements) == 1
    in_force = ConfigurationEvaluated(valid=True, in_force=(pool("dmz", "203.0.113.0/28").raw,))
    assert world.apply(in_force)
    assert set(world.configuration.pools) == {"dmz"}
    assert not world.apply(pool("other", "192.0.2.0/28"))  # the ipam's set rules from now on
    assert set(world.configuration.pools) == {"dmz"}
    assert not world.apply(ConfigurationEvaluated(valid=False))  # nothing in force recorded: keep ours
    assert set(world.configuration.pools) == {"dmz"}


def test_allocations_come_and_go() -> None:
    world = BgpWorld("node-a")
    world.apply(allocated("web", "198.51.100.7", pool="lan"))
    assert world.allocations[("default", "web")].ips == ("198.51.100.7",)
    world.apply(released("web", "198.51.100.7"))
    assert not world.allocations
    world.apply(allocated("web", "198.51.100.7", pool="lan"))
    world.apply(AllocationFailed(service=ServiceId(namespace="default", name="web"),
                                 reason=AllocationFailureReason.NO_AVAILABLE_IP, message="y"))
    assert not world.allocations


def test_facts_follow_services_and_endpoints_and_only_other_nodes_are_ignored() -> None:
    world = BgpWorld("node-a")
    assert world.apply(service("web"))
    assert world.apply(endpoints("web", {"node-b": 1}))
    assert not world.apply(endpoints("web", {"node-b": 1}))  # the same facts: nothing to re-plan
    assert world.service_facts()[("default", "web")].serving == {"node-b": 1}
    assert world.apply(deleted(ObjectKind.ENDPOINTS, "web"))
    assert world.service_facts()[("default", "web")].serving == {}
    assert world.apply(deleted(ObjectKind.SERVICE, "web"))
    assert not world.service_facts()
    assert not world.apply(node("node-b", "10.0.0.12"))
    assert world.apply(node("node-a", "10.0.0.11", "fd00::11"))
    facts = world.this_node()
    assert facts is not None and facts.addresses == ("10.0.0.11", "fd00::11")


def peer_of(**spec: Any) -> BGPPeer:
    parsed = parse_config_object(bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513, **spec).raw)
    assert isinstance(parsed, BGPPeer)
    return parsed


def test_password_inline_or_from_the_referenced_secret() -> None:
    world = BgpWorld("node-a")
    assert world.password_for(peer_of()) is None  # no password asked for
    assert world.password_for(peer_of(password="inline")) == "inline"
    referencing = peer_of(passwordSecret={"name": "md5"})
    world.apply(secret("md5", "s3cret"))
    assert world.password_for(referencing) == "s3cret"


def refusal(world: BgpWorld, peer: BGPPeer) -> Refused:
    """What the session of ``peer`` is, given the password the world has for it: here, a refusal."""
    world.apply(node("node-a", "10.0.0.11"))
    facts = world.this_node()
    assert facts is not None
    refused = session_spec_for(peer, node=facts, password=world.password_for(peer), configuration=world.configuration)
    assert isinstance(refused, Refused), refused
    return refused


def test_a_password_that_cannot_be_read_refuses_the_peer_never_a_session_without_md5() -> None:
    """MetalLB's checks of a passwordSecret (there, of type kubernetes.io/basic-auth, with a password key)."""
    world = BgpWorld("node-a")
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
    world = BgpWorld("node-a")
    raw = bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513, password="inline-md5").raw
    published = config_observed(raw).event
    assert isinstance(published, ConfigObjectObserved) and "inline-md5" not in str(published.raw)
    assert world.apply(published)
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
    world = BgpWorld("node-a")
    world.apply(node("node-a", "10.0.0.11", "fd00::11"))
    profile = config_object("BFDProfile", "fast", {"receiveInterval": 300, "transmitInterval": 300})
    world.apply(profile)
    facts = world.this_node()
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
