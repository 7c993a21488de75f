"""``L2Advertisement`` and ``BGPAdvertisement`` (metallb.io/v1beta1): how and where pools are announced."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from schemas.metallb.addresses import IPFamily
from schemas.metallb.common import (
    API_GROUP,
    LabelSelector,
    MetallbObject,
    WireModel,
    any_selector_matches,
    check_single_line,
    check_unique_selectors,
    check_unique_strings,
    invalid,
)
from schemas.metallb.community import CommunityOrAlias
from schemas.metallb.pools import IPAddressPool

_V1BETA1 = (f"{API_GROUP}/v1beta1",)


class PoolSelection(WireModel):
    """The fields both advertisement kinds share: which pools, from which nodes, for which Services."""

    ip_address_pools: tuple[str, ...] = ()
    ip_address_pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    @field_validator("ip_address_pools")
    @classmethod
    def _unique_pools(cls, pools: tuple[str, ...]) -> tuple[str, ...]:
        return check_unique_strings(pools, "ipAddressPools")

    @field_validator("ip_address_pool_selectors")
    @classmethod
    def _unique_pool_selectors(cls, value: tuple[LabelSelector, ...]) -> tuple[LabelSelector, ...]:
        return check_unique_selectors(value, "ipAddressPoolSelectors")

    @field_validator("node_selectors")
    @classmethod
    def _unique_node_selectors(cls, value: tuple[LabelSelector, ...]) -> tuple[LabelSelector, ...]:
        return check_unique_selectors(value, "nodeSelectors")

    @field_validator("service_selectors")
    @classmethod
    def _unique_service_selectors(cls, value: tuple[LabelSelector, ...]) -> tuple[LabelSelector, ...]:
        return check_unique_selectors(value, "serviceSelectors")

    @property
    def selects_all_pools(self) -> bool:
        """Neither pool names nor pool selectors: MetalLB applies the advertisement to every pool."""
        return not self.ip_address_pools and not self.ip_address_pool_selectors

    def selects_pool(self, pool_name: str, pool_labels: Mapping[str, str]) -> bool:
        if self.selects_all_pools or pool_name in self.ip_address_pools:
            return True
        return any(selector.matches(pool_labels) for selector in self.ip_address_pool_selectors)

    def selects_node(self, node_labels: Mapping[str, str]) -> bool:
        """No node selectors: every node; otherwise any selector must match."""
        return any_selector_matches(self.node_selectors, node_labels)

    def selects_service(self, service_labels: Mapping[str, str]) -> bool:
        return any_selector_matches(self.service_selectors, service_labels)


class PreferredNodeSelector(WireModel):
    """A soft node preference, shaped like Kubernetes' ``PreferredSchedulingTerm``."""

    weight: int = Field(ge=1, le=100)
    preference: LabelSelector


class L2AdvertisementSpec(PoolSelection):
    interfaces: tuple[str, ...] = ()
    preferred_node_selectors: tuple[PreferredNodeSelector, ...] = ()

    @field_validator("interfaces")
    @classmethod
    def _interfaces(cls, interfaces: tuple[str, ...]) -> tuple[str, ...]:
        for interface in interfaces:
            if not interface:
                raise invalid("interface name must not be empty")
            check_single_line(interface, f"interface {interface!r}")
        return check_unique_strings(interfaces, "interfaces")

    def node_preference(self, node_labels: Mapping[str, str]) -> int:
        """Sum of the weights of the preferred selectors a node matches (0: no preference)."""
        return sum(p.weight for p in self.preferred_node_selectors if p.preference.matches(node_labels))


class L2Advertisement(MetallbObject):
    KIND: ClassVar[str] = "L2Advertisement"
    API_VERSIONS: ClassVar[tuple[str, ...]] = _V1BETA1

    api_version: str = "metallb.io/v1beta1"
    kind: str = "L2Advertisement"
    spec: L2AdvertisementSpec = L2AdvertisementSpec()


class BGPAdvertisementSpec(PoolSelection):
    aggregation_length: int = Field(default=32, ge=0, le=32)
    aggregation_length_v6: int = Field(default=128, ge=0, le=128)
    local_pref: int = Field(default=0, ge=0, le=(1 << 32) - 1)
    communities: tuple[CommunityOrAlias, ...] = ()
    peers: tuple[str, ...] = ()

    @field_validator("communities")
    @classmethod
    def _unique_communities(cls, communities: tuple[str, ...]) -> tuple[str, ...]:
        return check_unique_strings(communities, "community")

    @field_validator("peers")
    @classmethod
    def _unique_peers(cls, peers: tuple[str, ...]) -> tuple[str, ...]:
        return check_unique_strings(peers, "peers")

    @model_validator(mode="after")
    def _selectors_exclude_aggregation(self) -> BGPAdvertisementSpec:
        if self.service_selectors and self.aggregation_length != 32:
            raise invalid("serviceSelectors and aggregationLength are mutually exclusive", field="aggregationLength")
        if self.service_selectors and self.aggregation_length_v6 != 128:
            raise invalid(
                "serviceSelectors and aggregationLengthV6 are mutually exclusive", field="aggregationLengthV6"
            )
        return self

    def selects_peer(self, peer_name: str) -> bool:
        """No peers listed: every peer."""
        return not self.peers or peer_name in self.peers


class BGPAdvertisement(MetallbObject):
    KIND: ClassVar[str] = "BGPAdvertisement"
    API_VERSIONS: ClassVar[tuple[str, ...]] = _V1BETA1

    api_version: str = "metallb.io/v1beta1"
    kind: str = "BGPAdvertisement"
    spec: BGPAdvertisementSpec = BGPAdvertisementSpec()


def ipv6_pool_advertised_to(
    peer: str, pools: Iterable[IPAddressPool], advertisements: Iterable[BGPAdvertisement]
) -> tuple[str, str] | None:
    """A pool with IPv6 addresses and a BGPAdvertisement that sends it to the BGPPeer named ``peer``, by
    name (the first of each by name), or None. MetalLB refuses a BFD echo profile on such a peer (the echo
    function is IPv4 only), whichever nodes the advertisement selects."""
    ads = sorted(advertisements, key=lambda ad: ad.name)
    for pool in sorted(pools, key=lambda pool: pool.name):
        if not any(r.family is IPFamily.IPV6 for r in pool.ranges()):
            continue
        for ad in ads:
            if ad.spec.selects_pool(pool.name, pool.labels) and ad.spec.selects_peer(peer):
                return pool.name, ad.name
    return None
