"""Checks across ``metallb.io`` objects, on already parsed models. Pure: values in, a report out.

Each object may be valid alone and still not fit with the rest: two pools claiming the same addresses,
a peer naming a missing BFD profile, an unknown community alias, two advertisements giving one update
different local preferences. :func:`validate_configuration` lists every such problem with its reason (a
``ConfigProblemReason``, the contract's). As in MetalLB, an advertisement naming a pool or a peer that does
not exist is no problem: it selects those that do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas.events.reasons import ConfigProblemReason
from schemas.metallb.addresses import AddressRange, IPFamily, unusable_kinds, usable_count
from schemas.metallb.advertisements import BGPAdvertisement, ipv6_pool_advertised_to
from schemas.metallb.bfd import BFDProfile
from schemas.metallb.bgp import BGPPeer
from schemas.metallb.common import MetallbObject
from schemas.metallb.community import Community, looks_like_community_value
from schemas.metallb.parsing import ConfigObject
from schemas.metallb.pools import IPAddressPool


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    kind: str
    namespace: str | None
    name: str
    field: str
    code: ConfigProblemReason
    message: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class ConfigurationReport:
    problems: tuple[ConfigProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def for_object(self, kind: str, namespace: str | None, name: str) -> tuple[ConfigProblem, ...]:
        return tuple(p for p in self.problems if (p.kind, p.namespace, p.name) == (kind, namespace, name))

    def codes(self) -> frozenset[ConfigProblemReason]:
        return frozenset(problem.code for problem in self.problems)


def _problem(obj: MetallbObject, field: str, code: ConfigProblemReason, message: str) -> ConfigProblem:
    return ConfigProblem(obj.KIND, obj.namespace, obj.name, field, code, message)


#: Node name → labels: the nodes there are, which BGP advertisements' ``nodeSelectors`` select.
NodeLabels = Mapping[str, Mapping[str, str]]


def validate_configuration(objects: Iterable[ConfigObject], *, nodes: NodeLabels | None = None) -> ConfigurationReport:
    """Check a whole configuration (all ``metallb.io`` objects of the namespace, parsed). ``nodes``: the
    cluster's nodes, for what depends on which nodes an advertisement selects (None: not known, so any
    two advertisements may share a node).

    The report is deterministic: problems come in a stable order whatever the input order.
    """
    ordered = sorted(objects, key=lambda o: (o.KIND, o.namespace or "", o.name))
    pools = [o for o in ordered if isinstance(o, IPAddressPool)]
    peers = [o for o in ordered if isinstance(o, BGPPeer)]
    profiles = [o for o in ordered if isinstance(o, BFDProfile)]
    bgp_ads = [o for o in ordered if isinstance(o, BGPAdvertisement)]
    communities = [o for o in ordered if isinstance(o, Community)]

    problems: list[ConfigProblem] = []
    problems += _duplicate_names(ordered)
    problems += _overlapping_pools(pools)
    problems += [problem for pool in pools if (problem := _unusable_pool(pool)) is not None]
    profile_names = {profile.name for profile in profiles}
    for peer in peers:
        if peer.spec.bfd_profile and peer.spec.bfd_profile not in profile_names:
            problems.append(
                _problem(
                    peer,
                    "spec.bfdProfile",
                    ConfigProblemReason.UNKNOWN_BFD_PROFILE,
                    f"BFDProfile {peer.spec.bfd_profile!r} does not exist",
                )
            )
    problems += _echo_with_ipv6(peers, profiles, pools, bgp_ads)
    aliases, alias_problems = _community_aliases(communities)
    problems += alias_problems
    for ad in bgp_ads:
        problems += _check_bgp_advertisement(ad, pools, aliases)
    problems += local_pref_conflicts(ordered, nodes=nodes)
    return ConfigurationReport(tuple(problems))


def _echo_with_ipv6(
    peers: list[BGPPeer], profiles: list[BFDProfile], pools: list[IPAddressPool], ads: list[BGPAdvertisement]
) -> list[ConfigProblem]:
    """A peer with an echo profile that an advertisement sends a pool with IPv6 addresses, in MetalLB's words."""
    echo = {profile.name for profile in profiles if profile.spec.echo_mode}
    problems = []
    for peer in peers:
        if peer.spec.bfd_profile in echo and (found := ipv6_pool_advertised_to(peer.name, pools, ads)) is not None:
            pool, ad = found
            message = (f"pool {pool} has bgpadvertisement {ad} which references peer {peer.name} which has bfd echo "
                       "enabled, which is not possible")  # fmt: skip
            problems.append(_problem(peer, "spec.bfdProfile", ConfigProblemReason.BFD_ECHO_WITH_IPV6, message))
    return problems


def _duplicate_names(ordered: list[ConfigObject]) -> list[ConfigProblem]:
    seen: set[tuple[str, str | None, str]] = set()
    problems = []
    for obj in ordered:
        key = (obj.KIND, obj.namespace, obj.name)
        if key in seen:
            problems.append(
                _problem(obj, "metadata.name", ConfigProblemReason.DUPLICATE_NAME, f"duplicate {obj.KIND} name")
            )
        seen.add(key)
    return problems


def _overlapping_pools(pools: list[IPAddressPool]) -> list[ConfigProblem]:
    entries: dict[IPFamily, list[tuple[AddressRange, IPAddressPool, int]]] = defaultdict(list)
    for pool in pools:
        for index, address_range in enumerate(pool.ranges()):
            entries[address_range.family].append((address_range, pool, index))
    problems = []
    for family in IPFamily:
        # Sorted by start: an entry overlaps an earlier one exactly when it starts before the furthest
        # end seen so far; report it against the entry holding that end.
        furthest: tuple[AddressRange, IPAddressPool, int] | None = None
        for current in sorted(entries[family], key=lambda e: (e[0].first, -e[0].last, e[1].name, e[2])):
            address_range, pool, index = current
            if furthest is not None and address_range.first <= furthest[0].last:
                _, other_pool, other_index = furthest
                text = pool.spec.addresses[index]
                other_text = other_pool.spec.addresses[other_index]
                problems.append(
                    _problem(
                        pool,
                        f"spec.addresses[{index}]",
                        ConfigProblemReason.OVERLAPPING_ADDRESSES,
                        f"{text!r} overlaps {other_text!r} of IPAddressPool {other_pool.name!r}",
                    )
                )
            if furthest is None or address_range.last > furthest[0].last:
                furthest = current
    return problems


#: How many entries a refusal of an unusable pool names (the message stays short whatever the pool).
UNUSABLE_ENTRIES_NAMED = 3


def _unusable_pool(pool: IPAddressPool) -> ConfigProblem | None:
    """A pool none of whose addresses can be handed out, with what each entry holds."""
    ranges = pool.ranges()
    if any(usable_count(address_range) for address_range in ranges):
        return None
    described = []
    for text, address_range in list(zip(pool.spec.addresses, ranges, strict=True))[:UNUSABLE_ENTRIES_NAMED]:
        kinds = " and ".join(kind.value for kind in unusable_kinds(address_range))
        described.append(f"{text[:64]!r} is {kinds}")
    if len(ranges) > UNUSABLE_ENTRIES_NAMED:
        described.append(f"and {len(ranges) - UNUSABLE_ENTRIES_NAMED} more")
    return _problem(
        pool,
        "spec.addresses",
        ConfigProblemReason.NO_USABLE_ADDRESSES,
        f"no address of the pool can be handed out ({'; '.join(described)})",
    )


def _community_aliases(communities: list[Community]) -> tuple[set[str], list[ConfigProblem]]:
    names: set[str] = set()
    problems = []
    for community in communities:
        for index, alias in enumerate(community.spec.communities):
            if alias.name in names:
                problems.append(
                    _problem(
                        community,
                        f"spec.communities[{index}].name",
                        ConfigProblemReason.DUPLICATE_COMMUNITY_ALIAS,
                        f"community alias {alias.name!r} is already defined",
                    )
                )
            names.add(alias.name)
    return names, problems


def _check_bgp_advertisement(ad: BGPAdvertisement, pools: list[IPAddressPool], aliases: set[str]
                             ) -> list[ConfigProblem]:
    problems = []
    for index, text in enumerate(ad.spec.communities):
        if text not in aliases and not looks_like_community_value(text):
            problems.append(
                _problem(
                    ad,
                    f"spec.communities[{index}]",
                    ConfigProblemReason.UNKNOWN_COMMUNITY_ALIAS,
                    f"{text!r} is neither a community value nor an alias defined by a Community object",
                )
            )
    for pool in pools:
        if not ad.spec.selects_pool(pool.name, pool.labels):
            continue
        for text, address_range in zip(pool.spec.addresses, pool.ranges(), strict=True):
            v4 = address_range.family is IPFamily.IPV4
            length = ad.spec.aggregation_length if v4 else ad.spec.aggregation_length_v6
            shortest = address_range.shortest_prefix()
            if length < shortest:
                field = "spec.aggregationLength" if v4 else "spec.aggregationLengthV6"
                problems.append(
                    _problem(
                        ad,
                        field,
                        ConfigProblemReason.AGGREGATION_TOO_SHORT,
                        f"aggregation length {length} is shorter than prefix /{shortest} of {text!r} "
                        f"in IPAddressPool {pool.name!r}",
                    )
                )
    return problems


def local_pref_conflicts(objects: Iterable[ConfigObject], *, nodes: NodeLabels | None) -> tuple[ConfigProblem, ...]:
    """The part of the report that depends on the nodes there are (:func:`validate_configuration` gives it
    too): what ipam checks again when a node's labels change. Nothing to do unless BGP advertisements give
    different local preferences, which is checked first."""
    ordered = sorted(objects, key=lambda o: (o.KIND, o.namespace or "", o.name))
    ads = [o for o in ordered if isinstance(o, BGPAdvertisement)]
    if len({ad.spec.local_pref for ad in ads if not ad.spec.service_selectors}) < 2:
        return ()
    return tuple(_conflicting_local_prefs(ads, [o for o in ordered if isinstance(o, IPAddressPool)], nodes))


def _conflicting_local_prefs(ads: list[BGPAdvertisement], pools: list[IPAddressPool], nodes: NodeLabels | None
                             ) -> list[ConfigProblem]:
    """MetalLB's rule: per pool, an advertisement (in name order) whose ``localPref`` differs from an
    earlier one's for the same kind of update is refused, once (the first such pair is named)."""
    problems = []
    refused: set[str] = set()
    for pool in pools:
        families = frozenset(address_range.family for address_range in pool.ranges())
        selecting = [ad for ad in ads if not ad.spec.service_selectors and ad.spec.selects_pool(pool.name, pool.labels)]
        for index, later in enumerate(selecting):
            if later.name in refused:
                continue
            earlier = next((ad for ad in selecting[:index] if _same_update(ad, later, families, nodes)
                            and ad.spec.local_pref != later.spec.local_pref), None)
            if earlier is None:
                continue
            refused.add(later.name)
            problems.append(
                _problem(
                    later,
                    "spec.localPref",
                    ConfigProblemReason.CONFLICTING_LOCAL_PREF,
                    f"invalid local preference {later.spec.local_pref}: local preference {earlier.spec.local_pref} "
                    f"was already set for the same type of BGP update (BGPAdvertisement {earlier.name!r}, "
                    f"IPAddressPool {pool.name!r}). Check existing BGP advertisements with common pools and "
                    "aggregation lengths",
                )
            )
    return problems


def _same_update(one: BGPAdvertisement, other: BGPAdvertisement, families: frozenset[IPFamily],
                 nodes: NodeLabels | None) -> bool:
    """Whether two advertisements of a pool with addresses of ``families`` may send the same prefix to the
    same peer from the same node: nothing tells them apart (aggregation lengths, peers, nodes)."""
    a, b = one.spec, other.spec
    v4_differs = a.aggregation_length != b.aggregation_length
    v6_differs = a.aggregation_length_v6 != b.aggregation_length_v6
    if all((v4_differs if family is IPFamily.IPV4 else v6_differs) for family in families):
        return False  # for every family the pool has, another prefix (a pool with no address: nothing sent)
    if a.peers and b.peers and not set(a.peers) & set(b.peers):
        return False
    if nodes is None:
        return True
    return any(a.selects_node(labels) and b.selects_node(labels) for labels in nodes.values())
