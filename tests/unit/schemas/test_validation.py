"""Checks across objects: a configuration that is valid object by object can still not fit together."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from schemas.events import ConfigProblemReason
from schemas.metallb import (
    ConfigObject,
    ConfigProblem,
    InvalidConfigObject,
    parse_config_object,
    validate_configuration,
)
from tests.unit.schemas import metallb_docs as docs

NS = "metallb-system"


def load(text: str) -> ConfigObject:
    raw = yaml.safe_load(text)
    assert isinstance(raw, dict)
    return parse_config_object(raw)


def make(
    kind: str, name: str, spec: dict[str, Any], *, api: str = "metallb.io/v1beta1", labels: dict[str, str] | None = None
) -> ConfigObject:
    return parse_config_object(
        {
            "apiVersion": api,
            "kind": kind,
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "spec": spec,
        }
    )


def pool(name: str, *addresses: str, labels: dict[str, str] | None = None) -> ConfigObject:
    return make("IPAddressPool", name, {"addresses": list(addresses)}, labels=labels)


def peer(name: str, **extra: Any) -> ConfigObject:
    spec = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", **extra}
    return make("BGPPeer", name, spec, api="metallb.io/v1beta2")


def summary(problems: tuple[ConfigProblem, ...]) -> list[tuple[str, str, str, ConfigProblemReason]]:
    return [(p.kind, p.name, p.field, p.code) for p in problems]


def test_documented_configuration_is_consistent() -> None:
    objects = [
        load(docs.FIRST_POOL_MIXED),
        load(docs.EXPENSIVE_POOL),
        load(docs.L2_FIRST_POOL),
        load(docs.BGP_PEER_BFD),
        load(docs.BFD_PROFILE),
        load(docs.COMMUNITY_ALIASES),
        load(docs.BGP_ADV_ALIAS),
    ]
    report = validate_configuration(objects)
    assert report.ok, [str(p) for p in report.problems]
    # Two examples of the documentation that do not go together: first-pool's prefixes to every peer from
    # every node with localPref 100 (BGP_ADV_ALIAS) and with 0 (BGP_ADV_FIRST_POOL); MetalLB refuses the pair.
    report = validate_configuration([*objects, load(docs.BGP_ADV_FIRST_POOL)])
    assert report.codes() == {ConfigProblemReason.CONFLICTING_LOCAL_PREF}


# A story: each row adds objects to the configuration of the rows before it, and says what the
# report must then contain (the problems introduced by that row, in the report's stable order).
STORY: list[tuple[str, list[ConfigObject], list[tuple[str, str, str, ConfigProblemReason]]]] = [
    ("two disjoint pools", [pool("lan", "192.168.10.0/24"), pool("wan", "fc00::/64")], []),
    (
        "a pool overlapping the first",
        [pool("dmz", "192.168.10.128-192.168.10.130")],
        [("IPAddressPool", "dmz", "spec.addresses[0]", ConfigProblemReason.OVERLAPPING_ADDRESSES)],
    ),
    (
        "an L2 ad for a missing pool is accepted, as MetalLB accepts it (it selects what exists)",
        [make("L2Advertisement", "l2", {"ipAddressPools": ["lan", "gone"]})],
        [],
    ),
    (
        "a peer with a missing BFD profile",
        [peer("tor", bfdProfile="fast")],
        [("BGPPeer", "tor", "spec.bfdProfile", ConfigProblemReason.UNKNOWN_BFD_PROFILE)],
    ),
    (
        "a BGP ad with an unknown alias and peer",
        [
            make(
                "BGPAdvertisement",
                "bgp",
                {"ipAddressPools": ["wan"], "communities": ["vpn-only", "1:1"], "peers": ["tor", "spine"]},
            )
        ],
        [("BGPAdvertisement", "bgp", "spec.communities[0]", ConfigProblemReason.UNKNOWN_COMMUNITY_ALIAS)],
    ),
    (
        "aggregating wider than a pool entry",
        [
            make(
                "BGPAdvertisement",
                "agg",
                {"ipAddressPoolSelectors": [{"matchLabels": {"tier": "public"}}], "aggregationLength": 16},
            ),
            pool("public", "198.51.100.0/24", labels={"tier": "public"}),
        ],
        [("BGPAdvertisement", "agg", "spec.aggregationLength", ConfigProblemReason.AGGREGATION_TOO_SHORT)],
    ),
    (
        "two Community objects with one alias",
        [
            make("Community", "c1", {"communities": [{"name": "vpn-only", "value": "1234:1"}]}),
            make("Community", "c2", {"communities": [{"name": "vpn-only", "value": "1234:2"}]}),
        ],
        [("Community", "c2", "spec.communities[0].name", ConfigProblemReason.DUPLICATE_COMMUNITY_ALIAS)],
    ),
    (
        "the same pool name twice",
        [pool("lan", "10.1.0.0/16")],
        [("IPAddressPool", "lan", "metadata.name", ConfigProblemReason.DUPLICATE_NAME)],
    ),
]


def test_story() -> None:
    objects: list[ConfigObject] = []
    expected: list[tuple[str, str, str, ConfigProblemReason]] = []
    for step, added, introduced in STORY:
        objects += added
        expected += introduced
        # The alias now defined by c1 resolves the earlier unknown alias.
        if step == "two Community objects with one alias":
            expected.remove(
                ("BGPAdvertisement", "bgp", "spec.communities[0]", ConfigProblemReason.UNKNOWN_COMMUNITY_ALIAS)
            )
        report = validate_configuration(objects)
        assert sorted(summary(report.problems)) == sorted(expected), step


def test_report_is_independent_of_input_order() -> None:
    objects = [
        pool("a", "10.0.0.0/24"),
        pool("b", "10.0.0.0/25"),
        pool("c", "10.0.0.64/26"),
        make("BGPAdvertisement", "one", {"localPref": 100}),
        make("BGPAdvertisement", "two", {"localPref": 200}),
    ]
    forward = validate_configuration(objects)
    backward = validate_configuration(list(reversed(objects)))
    assert forward == backward
    assert [str(p) for p in forward.problems] == [
        "IPAddressPool metallb-system/b: spec.addresses[0]: '10.0.0.0/25' overlaps '10.0.0.0/24' of IPAddressPool 'a'",
        "IPAddressPool metallb-system/c: spec.addresses[0]: '10.0.0.64/26' overlaps '10.0.0.0/24' of IPAddressPool 'a'",
        "BGPAdvertisement metallb-system/two: spec.localPref: invalid local preference 200: local preference 100 "
        "was already set for the same type of BGP update (BGPAdvertisement 'one', IPAddressPool 'a'). Check "
        "existing BGP advertisements with common pools and aggregation lengths",
    ]


@pytest.mark.parametrize(
    ("addresses", "overlap"),
    [
        (["10.0.0.0/24", "10.0.1.0/24"], False),
        (["10.0.0.0-10.0.0.10", "10.0.0.10/32"], True),
        (["10.0.0.0/24", "10.0.0.0/24"], True),
        (["fc00::/64", "fc00:0:0:1::/64"], False),
        (["fc00::/48", "fc00::ffff/128"], True),
        (["10.0.0.0/8", "::a00:0/104"], False),  # same integers, other family
    ],
)
def test_overlap_within_one_pool(addresses: list[str], overlap: bool) -> None:
    report = validate_configuration([pool("p", *addresses)])
    assert (ConfigProblemReason.OVERLAPPING_ADDRESSES in report.codes()) is overlap


def test_advertisement_without_pools_reaches_every_pool() -> None:
    report = validate_configuration(
        [pool("v6", "fc00::/120"), make("BGPAdvertisement", "all", {"aggregationLengthV6": 112})]
    )
    assert summary(report.problems) == [
        ("BGPAdvertisement", "all", "spec.aggregationLengthV6", ConfigProblemReason.AGGREGATION_TOO_SHORT)
    ]
    assert report.for_object("BGPAdvertisement", NS, "all") == report.problems


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        (["0.0.0.0/32"], "'0.0.0.0/32' is unspecified"),
        (["::/127"], "'::/127' is unspecified and loopback"),
        (["127.0.0.0/8"], "'127.0.0.0/8' is loopback"),
        (["169.254.0.0/16", "fe80::/10"], "'169.254.0.0/16' is link-local; 'fe80::/10' is link-local"),
        (["224.0.0.0/4", "ff02::1-ff02::ff"], "'224.0.0.0/4' is multicast; 'ff02::1-ff02::ff' is multicast"),
        (["255.255.255.255/32"], "'255.255.255.255/32' is broadcast"),
        (
            ["224.0.0.1/32", "224.0.0.2/32", "224.0.0.3/32", "224.0.0.4/32", "224.0.0.5/32"],
            "'224.0.0.1/32' is multicast; '224.0.0.2/32' is multicast; '224.0.0.3/32' is multicast; and 2 more",
        ),
    ],
)
def test_a_pool_made_only_of_unusable_addresses_is_refused(addresses: list[str], message: str) -> None:
    report = validate_configuration([pool("void", *addresses)])
    assert summary(report.problems) == [
        ("IPAddressPool", "void", "spec.addresses", ConfigProblemReason.NO_USABLE_ADDRESSES)
    ]
    assert str(report.problems[0]) == (
        f"IPAddressPool {NS}/void: spec.addresses: no address of the pool can be handed out ({message})"
    )


@pytest.mark.parametrize(
    "addresses",
    [["0.0.0.0/0"], ["::/0"], ["127.0.0.0/8", "10.0.0.7/32"], ["0.0.0.0-0.0.0.1"], ["fe80::/10", "fc00::/128"]],
)
def test_a_pool_with_one_usable_address_is_accepted(addresses: list[str]) -> None:
    """The allocator skips the unusable addresses; a pool is refused only when nothing is left."""
    assert validate_configuration([pool("wide", *addresses)]).ok


def bgp_ad(name: str, local_pref: int, **spec: Any) -> ConfigObject:
    return make("BGPAdvertisement", name, {"localPref": local_pref, **spec})


NODES = {"a": {"rack": "1"}, "b": {"rack": "2"}}
RACK_1 = [{"matchLabels": {"rack": "1"}}]
RACK_2 = [{"matchLabels": {"rack": "2"}}]

# MetalLB's rule (BGPAdvertisementsHaveCompatibleLocalPref): two advertisements of one pool that give it
# different localPrefs are refused unless something tells their updates apart: another aggregation length
# (for every family the pool has), peer lists that share no peer, node sets that share no node, or a
# serviceSelector (which Services they concern is not known in advance).
LOCAL_PREF_ROWS = {
    "the same localPref": ([bgp_ad("x", 100), bgp_ad("y", 100)], False),
    "different localPrefs for the same prefix, nodes and peers": ([bgp_ad("x", 100), bgp_ad("y", 200)], True),
    "another aggregation length": ([bgp_ad("x", 100), bgp_ad("y", 200, aggregationLength=24)], False),
    "another IPv6 aggregation length only, for an IPv4 pool": (
        [bgp_ad("x", 100), bgp_ad("y", 200, aggregationLengthV6=64)], True),
    "disjoint peers": ([bgp_ad("x", 100, peers=["p1"]), bgp_ad("y", 200, peers=["p2"])], False),
    "a shared peer": ([bgp_ad("x", 100, peers=["p1", "p2"]), bgp_ad("y", 200, peers=["p2"])], True),
    "peers on one side only": ([bgp_ad("x", 100, peers=["p1"]), bgp_ad("y", 200)], True),
    "disjoint nodes": ([bgp_ad("x", 100, nodeSelectors=RACK_1), bgp_ad("y", 200, nodeSelectors=RACK_2)], False),
    "a shared node": ([bgp_ad("x", 100), bgp_ad("y", 200, nodeSelectors=RACK_2)], True),
    "a service selector": ([bgp_ad("x", 100), bgp_ad("y", 200, serviceSelectors=[{"matchLabels": {"a": "b"}}])],
                           False),
    "different pools": ([bgp_ad("x", 100, ipAddressPools=["lan"]), bgp_ad("y", 200, ipAddressPools=["wan"])],
                        False),
}


@pytest.mark.parametrize(("ads", "refused"), LOCAL_PREF_ROWS.values(), ids=LOCAL_PREF_ROWS.keys())
def test_different_local_prefs_for_the_same_update_are_refused(ads: list[ConfigObject], refused: bool) -> None:
    objects = [pool("lan", "192.168.10.0/24"), pool("wan", "198.51.100.0/24"), *ads]
    report = validate_configuration(objects, nodes=NODES)
    assert (ConfigProblemReason.CONFLICTING_LOCAL_PREF in report.codes()) is refused
    if refused:
        [problem] = report.problems
        assert (problem.name, problem.field) == ("y", "spec.localPref")


def test_node_sets_are_those_of_the_nodes_there_are() -> None:
    ads = [bgp_ad("x", 100, nodeSelectors=RACK_1), bgp_ad("y", 200)]
    objects = [pool("lan", "192.168.10.0/24"), *ads]
    assert not validate_configuration(objects, nodes={"b": {"rack": "2"}}).problems  # nobody in rack 1
    assert validate_configuration(objects, nodes=NODES).problems
    assert validate_configuration(objects).problems  # nodes unknown: every node may be in both


def test_a_dual_stack_pool_needs_both_aggregation_lengths_to_differ() -> None:
    dual = pool("dual", "192.168.10.0/24", "fc00::/112")
    only_v4 = [bgp_ad("x", 100), bgp_ad("y", 200, aggregationLength=24)]
    both = [bgp_ad("x", 100), bgp_ad("y", 200, aggregationLength=24, aggregationLengthV6=120)]
    assert validate_configuration([dual, *only_v4]).codes() == {ConfigProblemReason.CONFLICTING_LOCAL_PREF}
    assert validate_configuration([dual, *both]).ok


def test_advertisements_naming_missing_peers_and_pools_are_accepted() -> None:
    objects = [pool("lan", "192.168.10.0/24"), peer("tor"),
               make("BGPAdvertisement", "bgp", {"ipAddressPools": ["lan", "later"], "peers": ["tor", "spine"]}),
               make("L2Advertisement", "l2", {"ipAddressPools": ["gone"]})]
    assert validate_configuration(objects).ok


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", "secret ref not found: Secret metallb-system/md5 does not exist"),
        ("wrongType", 'secret type mismatch on "metallb-system/md5", type "kubernetes.io/basic-auth" is expected'),
        ("noPassword", 'password not specified in the secret "metallb-system/md5"'),
    ],
)
def test_a_peer_whose_password_secret_gives_no_password_is_invalid(problem: str, message: str) -> None:
    """The watcher says what the Secret gives beside the peer (the Secret itself never leaves for ipam)."""
    raw = {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
           "metadata": {"name": "tor", "namespace": NS},
           "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", "passwordSecret": {"name": "md5"}},
           "metalbusPasswordSecret": {"problem": problem, "version": "7"}}
    with pytest.raises(InvalidConfigObject) as refused:
        parse_config_object(raw)
    assert refused.value.field == "spec.passwordSecret" and message in str(refused.value)
    usable = {**raw, "metalbusPasswordSecret": {"version": "8"}}
    assert parse_config_object(usable).name == "tor"
