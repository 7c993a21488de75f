"""Which interfaces answer ARP/NDP (pure).

Without an L2Advertisement `interfaces` list, every up, non-enslaved Ethernet interface answers except the
virtual ones named by the exclusion patterns and kinds. With a list, only the named interfaces answer (the
name patterns do not apply to an interface named explicitly; down, enslaved or MAC-less ones still never do).
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from services.announcer.l2.ethernet import is_unicast_mac

DEFAULT_EXCLUDED_NAMES: Final[tuple[str, ...]] = (
    "lo",
    "veth*",
    "docker*",
    "cni*",
    "kube-ipvs*",
    "cali*",
    "flannel*",
    "cilium*",
    "vxlan*",
    "lxc*",
    "tunl*",
    "weave*",
)
IPAddress = IPv4Address | IPv6Address
DEFAULT_EXCLUDED_KINDS: Final[frozenset[str]] = frozenset(
    {"dummy", "ifb", "vxlan", "geneve", "ipip", "sit", "gre", "gretap", "ip6tnl", "wireguard", "tun", "nlmon"}
)


@dataclass(frozen=True, slots=True)
class InterfaceFacts:
    """What rtnetlink says about one interface."""

    name: str
    index: int
    mac: bytes
    up: bool  # administratively up (IFF_UP)
    carrier: bool = True  # lower layer up (IFF_LOWER_UP)
    kind: str | None = None  # IFLA_INFO_KIND: "veth", "bridge", "vlan", ...; None for physical devices
    master: int | None = None  # ifindex of the bridge or bond this interface is enslaved to
    addresses: tuple[IPAddress, ...] = ()


class Ineligible(enum.Enum):
    """Why an interface does not answer."""

    DOWN = "down"
    NO_CARRIER = "no_carrier"
    ENSLAVED = "enslaved"
    NO_MAC = "no_mac"
    NOT_SELECTED = "not_selected"
    EXCLUDED_NAME = "excluded_name"
    EXCLUDED_KIND = "excluded_kind"


@dataclass(frozen=True, slots=True)
class ExclusionPolicy:
    """Configurable exclusion: shell-style name patterns and rtnetlink kinds."""

    names: tuple[str, ...] = DEFAULT_EXCLUDED_NAMES
    kinds: frozenset[str] = field(default=DEFAULT_EXCLUDED_KINDS)


DEFAULT_POLICY: Final = ExclusionPolicy()


def ineligibility(
    facts: InterfaceFacts, *, selected: Collection[str] = (), policy: ExclusionPolicy = DEFAULT_POLICY
) -> Ineligible | None:
    """None when `facts` may answer; otherwise the first reason it may not."""
    if not facts.up:
        return Ineligible.DOWN
    if not facts.carrier:
        return Ineligible.NO_CARRIER
    if facts.master is not None:
        return Ineligible.ENSLAVED
    if not is_unicast_mac(facts.mac):
        return Ineligible.NO_MAC
    if selected:
        return None if facts.name in selected else Ineligible.NOT_SELECTED
    if any(fnmatch.fnmatchcase(facts.name, pattern) for pattern in policy.names):
        return Ineligible.EXCLUDED_NAME
    if facts.kind is not None and facts.kind in policy.kinds:
        return Ineligible.EXCLUDED_KIND
    return None


def eligible_interfaces(
    interfaces: Iterable[InterfaceFacts],
    *,
    selected: Collection[str] = (),
    policy: ExclusionPolicy = DEFAULT_POLICY,
) -> tuple[InterfaceFacts, ...]:
    """The interfaces that may answer, ordered by index."""
    return tuple(
        sorted(
            (f for f in interfaces if ineligibility(f, selected=selected, policy=policy) is None),
            key=lambda f: f.index,
        )
    )


def ips_by_interface(
    desired: Mapping[IPAddress, Collection[str]],
    interfaces: Iterable[InterfaceFacts],
    *,
    policy: ExclusionPolicy = DEFAULT_POLICY,
) -> dict[str, frozenset[IPAddress]]:
    """For each interface that answers for at least one IP: the IPs it answers for.

    `desired` maps each owned IP to its allowed interface names (empty: every eligible interface)."""
    links = list(interfaces)
    by_selection: dict[frozenset[str], list[IPAddress]] = {}
    for ip, selected in desired.items():
        by_selection.setdefault(frozenset(selected), []).append(ip)
    result: dict[str, set[IPAddress]] = {}
    for selected, ips in by_selection.items():
        for facts in eligible_interfaces(links, selected=selected, policy=policy):
            result.setdefault(facts.name, set()).update(ips)
    return {name: frozenset(ips) for name, ips in result.items()}


def answerable_interfaces(
    interfaces: Iterable[InterfaceFacts], *, policy: ExclusionPolicy = DEFAULT_POLICY
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a node can answer on, as its data-plane report says it: the interfaces that answer when an
    advertisement names none, and those that answer only when named (excluded by ``policy`` but up, with
    carrier, a MAC and no master). Pod veths (veth kind, excluded by name) are in neither: no advertisement
    names them, and listing them would change the report with every pod."""
    everywhere: list[str] = []
    named_only: list[str] = []
    for facts in sorted(interfaces, key=lambda f: f.index):
        why = ineligibility(facts, policy=policy)
        if why is None:
            everywhere.append(facts.name)
        elif why in (Ineligible.EXCLUDED_NAME, Ineligible.EXCLUDED_KIND) and facts.kind != "veth":
            named_only.append(facts.name)
    return tuple(everywhere), tuple(named_only)
