"""BGPPeer fields about who the session is with: ``localASN`` (the AS presented to one peer) and peers of one
node sharing an address (a connection from it could belong to either)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from schemas.metallb.bgp import BGPPeerSpec
from services.announcer.bgp.peering import Refusal, Refused, duplicate_peer_addresses, speaker_config_for
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import ReceivedRoutes, SessionConfig
from services.announcer.bgp.speaker import SpeakerConfig
from tests.unit.announcer.bgp.test_session import Pair, attrs_dict

NODE_ID = ipaddress.IPv4Address("192.0.2.10")


def spec(**fields: Any) -> BGPPeerSpec:
    return BGPPeerSpec.model_validate({"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", **fields})


def config(**fields: Any) -> SpeakerConfig | Refused:
    return speaker_config_for(spec(**fields), router_id=NODE_ID)


def test_local_asn_is_the_as_the_peer_sees_in_the_open_and_the_as_path() -> None:
    """The router is configured with the peer AS 65410: the session comes up, and the AS_PATH it receives holds
    65410 alone (FRR's ``local-as 65410 no-prepend replace-as``: myASN 64500 appears nowhere)."""
    result = config(localASN=65410)
    assert isinstance(result, SpeakerConfig)
    router = SessionConfig(local_as=64501, peer_as=65410, router_id=ipaddress.IPv4Address("10.0.0.1"),
                           received_routes=ReceivedRoutes.DECODED)  # fmt: skip
    pair = Pair.established(result.session, router)
    pair.a.set_advertisements({ipaddress.ip_network("198.51.100.5/32"): Route()}, pair.now)
    pair.pump()
    (attributes,) = pair.received_by_b().values()
    assert attrs_dict(attributes)["AS_PATH"] == [{"type": "AS_SEQUENCE", "asns": [65410]}]


def test_without_local_asn_the_session_presents_my_asn() -> None:
    result = config()
    assert isinstance(result, SpeakerConfig) and result.session.local_as == 64500


def test_local_asn_with_dynamic_external_peer() -> None:
    result = config(peerASN=None, dynamicASN="external", localASN=65410)
    assert isinstance(result, SpeakerConfig) and result.session.local_as == 65410


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"peerASN": 64500, "localASN": 65410}, "external (eBGP) peers only"),  # iBGP by peerASN
        ({"peerASN": None, "dynamicASN": "internal", "localASN": 65410}, "external (eBGP) peers only"),
        ({"localASN": 64500}, "is myASN"),
        ({"localASN": 64501}, "the peer's own AS"),
    ],
)
def test_local_asn_where_frr_refuses_local_as_is_refused_with_a_reason(fields: dict[str, Any], why: str) -> None:
    result = config(**fields)
    assert isinstance(result, Refused) and result.reason is Refusal.LOCAL_ASN_NOT_EXTERNAL
    assert why in result.message


def test_local_asn_out_of_range_is_an_invalid_object() -> None:
    with pytest.raises(ValueError, match="localASN"):
        spec(localASN=0)
    with pytest.raises(ValueError, match="localASN"):
        spec(localASN=1 << 32)


def test_peers_sharing_an_address_are_each_refused_naming_the_others() -> None:
    refused = duplicate_peer_addresses({
        "a": spec(), "b": spec(peerAddress="10.0.0.2"), "c": spec(peerPort=1179, holdTime="9s"),
        "v6": spec(peerAddress="fd00::1"), "v6-long": spec(peerAddress="fd00:0:0::1"),
        "other-vrf": spec(vrf="red"),
    })  # fmt: skip
    assert set(refused) == {"a", "c", "v6", "v6-long"}
    assert all(r.reason is Refusal.DUPLICATE_PEER_ADDRESS for r in refused.values())
    assert refused["a"].message == "BGPPeer c on this node has the same peer address 10.0.0.1"
    assert refused["v6-long"].message == "BGPPeer v6 on this node has the same peer address fd00::1"


def test_two_unnumbered_peers_on_one_interface_are_refused() -> None:
    refused = duplicate_peer_addresses({"x": spec(peerAddress="", interface="eth0"),
                                        "y": spec(peerAddress="", interface="eth0")})  # fmt: skip
    assert refused["x"].message == "BGPPeer y on this node has the same interface eth0"


def test_one_address_in_two_vrfs_is_two_peers() -> None:
    assert duplicate_peer_addresses({"red": spec(vrf="red"), "blue": spec(vrf="blue")}) == {}
    both = duplicate_peer_addresses({"x": spec(vrf="red"), "y": spec(vrf="red")})
    assert both["x"].message == "BGPPeer y on this node has the same peer address 10.0.0.1 in VRF 'red'"
