"""Invalid objects are refused with the object, the field path and the problem named."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.metallb import InvalidConfigObject, parse_config_object

V1B1 = "metallb.io/v1beta1"
V1B2 = "metallb.io/v1beta2"
PEER = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1"}


def obj(kind: str, spec: dict[str, Any] | None, *, api: str = V1B1, name: str = "lan") -> dict[str, Any]:
    raw: dict[str, Any] = {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "metallb-system"},
    }
    if spec is not None:
        raw["spec"] = spec
    return raw


def peer(**changes: Any) -> dict[str, Any]:
    spec = {**PEER, **changes}
    return obj("BGPPeer", {k: v for k, v in spec.items() if v is not None}, api=V1B2, name="tor")


# (case id, raw object, expected field, expected reason fragment)
REJECTED: list[tuple[str, dict[str, Any], str, str]] = [
    # --- IPAddressPool
    ("no addresses", obj("IPAddressPool", {"addresses": []}), "spec.addresses", "pool has no addresses"),
    ("no spec", obj("IPAddressPool", None), "spec", "Field required"),
    (
        "bad ip",
        obj("IPAddressPool", {"addresses": ["192.168.10.300/32"]}),
        "spec.addresses[0]",
        'invalid CIDR "192.168.10.300/32": invalid IP',
    ),
    (
        "bad prefix",
        obj("IPAddressPool", {"addresses": ["10.0.0.0/33"]}),
        "spec.addresses[0]",
        'invalid prefix length "33"',
    ),
    ("bare address", obj("IPAddressPool", {"addresses": ["10.0.0.1"]}), "spec.addresses[0]", 'invalid CIDR "10.0.0.1"'),
    (
        "reversed range",
        obj("IPAddressPool", {"addresses": ["192.168.9.5-192.168.9.1"]}),
        "spec.addresses[0]",
        'start IP "192.168.9.5" is after the end IP "192.168.9.1"',
    ),
    (
        "mixed range",
        obj("IPAddressPool", {"addresses": ["192.168.9.1-fc00::1"]}),
        "spec.addresses[0]",
        "different families",
    ),
    (
        "bad range end",
        obj("IPAddressPool", {"addresses": ["192.168.9.1-192.168.9"]}),
        "spec.addresses[0]",
        'invalid end IP "192.168.9"',
    ),
    (
        "autoAssign type",
        obj("IPAddressPool", {"addresses": ["10.0.0.0/30"], "autoAssign": "sometimes"}),
        "spec.autoAssign",
        "valid boolean",
    ),
    (
        "duplicate namespace",
        obj("IPAddressPool", {"addresses": ["10.0.0.0/30"], "serviceAllocation": {"namespaces": ["a", "a"]}}),
        "spec.serviceAllocation.namespaces",
        "duplicate definition of namespace 'a'",
    ),
    # --- selectors
    (
        "In without values",
        obj(
            "L2Advertisement",
            {"nodeSelectors": [{"matchExpressions": [{"key": "rack", "operator": "In", "values": []}]}]},
        ),
        "spec.nodeSelectors[0].matchExpressions[0].values",
        "operator In needs at least one value",
    ),
    (
        "Exists with values",
        obj(
            "L2Advertisement",
            {"nodeSelectors": [{"matchExpressions": [{"key": "rack", "operator": "Exists", "values": ["a"]}]}]},
        ),
        "spec.nodeSelectors[0].matchExpressions[0].values",
        "operator Exists takes no values",
    ),
    (
        "unknown operator",
        obj(
            "L2Advertisement",
            {"nodeSelectors": [{"matchExpressions": [{"key": "rack", "operator": "Gt", "values": ["1"]}]}]},
        ),
        "spec.nodeSelectors[0].matchExpressions[0].operator",
        "'In', 'NotIn', 'Exists' or 'DoesNotExist'",
    ),
    (
        "duplicate selectors",
        obj("L2Advertisement", {"nodeSelectors": [{"matchLabels": {"a": "b"}}, {"matchLabels": {"a": "b"}}]}),
        "spec.nodeSelectors",
        "duplicate definition of nodeSelectors",
    ),
    # --- L2Advertisement
    (
        "duplicate pools",
        obj("L2Advertisement", {"ipAddressPools": ["a", "a"]}),
        "spec.ipAddressPools",
        "duplicate definition of ipAddressPools 'a'",
    ),
    (
        "interface with newline",
        obj("L2Advertisement", {"interfaces": ["eth0\nrm"]}),
        "spec.interfaces",
        "contains invalid characters",
    ),
    (
        "preferred weight",
        obj("L2Advertisement", {"preferredNodeSelectors": [{"weight": 0, "preference": {"matchLabels": {"a": "b"}}}]}),
        "spec.preferredNodeSelectors[0].weight",
        "greater than or equal to 1",
    ),
    # --- BGPAdvertisement
    (
        "aggregation v4",
        obj("BGPAdvertisement", {"aggregationLength": 33}),
        "spec.aggregationLength",
        "less than or equal to 32",
    ),
    (
        "aggregation v6",
        obj("BGPAdvertisement", {"aggregationLengthV6": 129}),
        "spec.aggregationLengthV6",
        "less than or equal to 128",
    ),
    (
        "negative aggregation",
        obj("BGPAdvertisement", {"aggregationLength": -1}),
        "spec.aggregationLength",
        "greater than or equal to 0",
    ),
    (
        "localPref too big",
        obj("BGPAdvertisement", {"localPref": 4294967296}),
        "spec.localPref",
        "less than or equal to 4294967295",
    ),
    (
        "community part too big",
        obj("BGPAdvertisement", {"communities": ["65535:65282", "65536:1"]}),
        "spec.communities[1]",
        'invalid community "65536:1": each part must be at most 65535',
    ),
    (
        "large community shape",
        obj("BGPAdvertisement", {"communities": ["large:1:2"]}),
        "spec.communities[0]",
        'invalid large community "large:1:2"',
    ),
    (
        "large community part",
        obj("BGPAdvertisement", {"communities": ["large:4294967296:1:1"]}),
        "spec.communities[0]",
        "each part must be at most 4294967295",
    ),
    (
        "duplicate community",
        obj("BGPAdvertisement", {"communities": ["1:1", "1:1"]}),
        "spec.communities",
        "duplicate definition of community '1:1'",
    ),
    (
        "selectors and aggregation",
        obj("BGPAdvertisement", {"serviceSelectors": [{"matchLabels": {"a": "b"}}], "aggregationLength": 24}),
        "spec.aggregationLength",
        "serviceSelectors and aggregationLength are mutually exclusive",
    ),
    # --- BGPPeer
    ("no peer asn", peer(peerASN=None), "spec.peerASN", "one of peerASN and dynamicASN is required"),
    ("both asns", peer(dynamicASN="external"), "spec.dynamicASN", "mutually exclusive"),
    ("bad dynamic asn", peer(peerASN=None, dynamicASN="sideways"), "spec.dynamicASN", "'internal' or 'external'"),
    ("no local asn", peer(myASN=None), "spec.myASN", "missing local ASN"),
    ("asn too big", peer(peerASN=4294967296), "spec.peerASN", "less than or equal to 4294967295"),
    ("no address", peer(peerAddress=None), "spec.peerAddress", "one of peerAddress and interface"),
    ("address and interface", peer(interface="eth0"), "spec.interface", "mutually exclusive"),
    ("bad address", peer(peerAddress="10.0.0"), "spec.peerAddress", "invalid BGPPeer address '10.0.0'"),
    ("bad source", peer(sourceAddress="nope"), "spec.sourceAddress", "invalid source IP 'nope'"),
    ("bad router id", peer(routerID="fc00::1"), "spec.routerID", "must be an IPv4 address"),
    ("port zero", peer(peerPort=0), "spec.peerPort", "greater than or equal to 1"),
    ("port too big", peer(peerPort=16385), "spec.peerPort", "less than or equal to 16384"),
    (
        "both passwords",
        peer(password="x", passwordSecret={"name": "bgp"}),
        "spec.passwordSecret",
        "password and passwordSecret are mutually exclusive",
    ),
    ("password newline", peer(password="a\nb"), "spec.password", "contains invalid characters"),
    ("hold below 3s", peer(holdTime="2s"), "spec.holdTime", "invalid hold time 2s: must be 0 or >= 3s"),
    ("derived hold below 3s", peer(keepaliveTime="500ms"), "spec.keepaliveTime", "must be 0 or >= 3s"),
    (
        "keepalive above hold",
        peer(holdTime="30s", keepaliveTime="1m"),
        "spec.keepaliveTime",
        "keepalive time 60s must not be above hold time 30s",
    ),
    (
        "duration without unit",
        peer(holdTime="90"),
        "spec.holdTime",
        'invalid duration "90": missing unit (one of ns, us, ms, s, m, h)',
    ),
    ("duration garbage", peer(holdTime="1m30x"), "spec.holdTime", 'invalid duration "1m30x"'),
    ("duration as number", peer(holdTime=90), "spec.holdTime", 'duration must be a string such as "90s"'),
    (
        "connect time small",
        peer(connectTime="500ms"),
        "spec.connectTime",
        "connect time should be between 1 seconds to 65535",
    ),
    (
        "connect time fraction",
        peer(connectTime="1.5s"),
        "spec.connectTime",
        "connect time should contain a whole number of seconds",
    ),
    (
        "multihop ibgp",
        peer(peerASN=64500, ebgpMultiHop=True),
        "spec.ebgpMultiHop",
        "invalid ebgpMultiHop set for an iBGP peer",
    ),
    # --- BFDProfile
    (
        "bfd receive low",
        obj("BFDProfile", {"receiveInterval": 9}),
        "spec.receiveInterval",
        "greater than or equal to 10",
    ),
    (
        "bfd transmit high",
        obj("BFDProfile", {"transmitInterval": 60001}),
        "spec.transmitInterval",
        "less than or equal to 60000",
    ),
    (
        "bfd multiplier",
        obj("BFDProfile", {"detectMultiplier": 1}),
        "spec.detectMultiplier",
        "greater than or equal to 2",
    ),
    ("bfd echo", obj("BFDProfile", {"echoInterval": 60001}), "spec.echoInterval", "less than or equal to 60000"),
    ("bfd ttl", obj("BFDProfile", {"minimumTtl": 255}), "spec.minimumTtl", "less than or equal to 254"),
    # --- Community
    (
        "alias value",
        obj("Community", {"communities": [{"name": "x", "value": "vpn"}]}),
        "spec.communities[0].value",
        'invalid community "vpn"',
    ),
    (
        "duplicate alias",
        obj("Community", {"communities": [{"name": "x", "value": "1:1"}, {"name": "x", "value": "1:2"}]}),
        "spec.communities",
        "duplicate definition of community 'x'",
    ),
    # --- envelope
    (
        "missing name",
        {
            "apiVersion": V1B1,
            "kind": "IPAddressPool",
            "metadata": {"namespace": "metallb-system"},
            "spec": {"addresses": ["10.0.0.0/30"]},
        },
        "metadata.name",
        "Field required",
    ),
]


@pytest.mark.parametrize(
    ("raw", "field", "reason"), [case[1:] for case in REJECTED], ids=[case[0] for case in REJECTED]
)
def test_invalid_object_is_refused_precisely(raw: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidConfigObject) as caught:
        parse_config_object(raw)
    error = caught.value
    assert error.kind == raw["kind"]
    assert error.name == raw["metadata"].get("name")
    assert error.namespace == "metallb-system"
    assert error.field == field
    assert reason in error.reason
    assert str(error).startswith(f"{error.kind} metallb-system/")
    assert f": {field}: " in str(error)


def test_message_reads_kind_namespace_name_field_reason() -> None:
    with pytest.raises(InvalidConfigObject) as caught:
        parse_config_object(obj("IPAddressPool", {"addresses": ["192.168.10.0/24", "10.0.0.9-10.0.0.1"]}))
    assert str(caught.value) == (
        'IPAddressPool metallb-system/lan: spec.addresses[1]: invalid IP range "10.0.0.9-10.0.0.1": '
        'start IP "10.0.0.9" is after the end IP "10.0.0.1"'
    )


def test_every_problem_is_listed() -> None:
    raw = obj("BGPAdvertisement", {"aggregationLength": 40, "communities": ["70000:1"]})
    with pytest.raises(InvalidConfigObject) as caught:
        parse_config_object(raw)
    assert [field for field, _ in caught.value.problems] == ["spec.aggregationLength", "spec.communities[0]"]
    assert "; spec.communities[0]: " in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"}},
            "apiVersion",
            "expected metallb.io/<version>",
        ),
        (
            {"apiVersion": V1B1, "kind": "AddressPool", "metadata": {"name": "old"}},
            "kind",
            "unknown metallb.io kind 'AddressPool'",
        ),
        (
            {"apiVersion": "metallb.io/v1alpha1", "kind": "IPAddressPool", "metadata": {"name": "p"}},
            "apiVersion",
            "unsupported apiVersion 'metallb.io/v1alpha1' for IPAddressPool",
        ),
        (
            {"apiVersion": V1B2, "kind": "BFDProfile", "metadata": {"name": "p"}},
            "apiVersion",
            "unsupported apiVersion 'metallb.io/v1beta2' for BFDProfile",
        ),
    ],
    ids=["not metallb", "unknown kind", "unknown version", "version of another kind"],
)
def test_foreign_or_unknown_objects_are_refused(raw: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidConfigObject) as caught:
        parse_config_object(raw)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_object_without_namespace_is_named_by_name_alone() -> None:
    raw = obj("BFDProfile", {"detectMultiplier": 300})
    del raw["metadata"]["namespace"]
    with pytest.raises(InvalidConfigObject) as caught:
        parse_config_object(raw)
    assert str(caught.value).startswith("BFDProfile lan: spec.detectMultiplier: ")
