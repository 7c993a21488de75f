"""MetalLB's rule for BFD echo: a peer whose BFD profile has echoMode may not be sent a pool with IPv6 addresses
(the echo function is IPv4 only). The configuration is Invalid, in MetalLB's words, whichever nodes the
advertisement selects."""

from __future__ import annotations

from schemas.events.reasons import ConfigProblemReason
from schemas.metallb import validate_configuration
from tests.unit.schemas.test_validation import make, peer, pool

ECHO = make("BFDProfile", "echo", {"echoMode": True})
PLAIN = make("BFDProfile", "plain", {})
DUAL = pool("dual", "192.168.10.0/24", "fc00::/112")
V4 = pool("v4", "192.168.20.0/24")


def test_an_echo_peer_sent_an_ipv6_pool_makes_the_configuration_invalid() -> None:
    objects = [ECHO, DUAL, peer("tor", bfdProfile="echo"), make("BGPAdvertisement", "all", {})]
    report = validate_configuration(objects)
    assert report.codes() == {ConfigProblemReason.BFD_ECHO_WITH_IPV6}
    (problem,) = report.problems
    assert (problem.kind, problem.name, problem.field) == ("BGPPeer", "tor", "spec.bfdProfile")
    assert problem.message == (
        "pool dual has bgpadvertisement all which references peer tor which has bfd echo enabled, which is not possible"
    )


def test_echo_is_fine_where_no_ipv6_pool_reaches_the_peer() -> None:
    to_other = make("BGPAdvertisement", "to-spine", {"ipAddressPools": ["dual"], "peers": ["spine"]})
    v4_to_all = make("BGPAdvertisement", "v4", {"ipAddressPools": ["v4"]})
    objects = [ECHO, PLAIN, DUAL, V4, peer("tor", bfdProfile="echo"),
               peer("spine", peerAddress="10.0.0.2", bfdProfile="plain"), to_other, v4_to_all]  # fmt: skip
    assert validate_configuration(objects).ok
    limited = make(
        "BGPAdvertisement", "rack", {"ipAddressPools": ["dual"], "nodeSelectors": [{"matchLabels": {"a": "b"}}]}
    )
    assert validate_configuration([*objects, limited]).codes() == {ConfigProblemReason.BFD_ECHO_WITH_IPV6}
