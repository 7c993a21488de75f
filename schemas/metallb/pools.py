"""``IPAddressPool`` (metallb.io/v1beta1): the addresses LoadBalancer Services get their IPs from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from schemas.metallb.addresses import AddressRange, IPAddress, is_buggy_ip, parse_address_range
from schemas.metallb.common import (
    API_GROUP,
    LabelSelector,
    MetallbObject,
    WireModel,
    any_selector_matches,
    check_unique_selectors,
    check_unique_strings,
    invalid,
)


def _check_address(text: str) -> str:
    try:
        parse_address_range(text)
    except ValueError as error:
        raise invalid(str(error)) from None
    return text


AddressText = Annotated[str, AfterValidator(_check_address)]
"""One ``spec.addresses`` entry, kept as written; :meth:`IPAddressPoolSpec.ranges` gives it parsed."""


class ServiceAllocation(WireModel):
    """``spec.serviceAllocation``: which Services may take addresses from the pool, and with what priority.

    Priority 1 is the highest; a larger number is lower; 0 (or unset) is the lowest of all, after every
    numbered priority (MetalLB's documented order). :attr:`rank` sorts in that order.
    """

    priority: int = 0
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    @field_validator("namespaces")
    @classmethod
    def _unique_namespaces(cls, namespaces: tuple[str, ...]) -> tuple[str, ...]:
        return check_unique_strings(namespaces, "namespace")

    @field_validator("namespace_selectors")
    @classmethod
    def _unique_namespace_selectors(cls, value: tuple[LabelSelector, ...]) -> tuple[LabelSelector, ...]:
        return check_unique_selectors(value, "namespaceSelectors")

    @field_validator("service_selectors")
    @classmethod
    def _unique_service_selectors(cls, value: tuple[LabelSelector, ...]) -> tuple[LabelSelector, ...]:
        return check_unique_selectors(value, "serviceSelectors")

    @property
    def rank(self) -> tuple[bool, int]:
        """Sort key, most preferred first: numbered priorities ascending, then priority 0."""
        return (self.priority <= 0, self.priority)

    def allows_namespace(self, namespace: str, namespace_labels: Mapping[str, str]) -> bool:
        """Whether a Service in ``namespace`` passes the namespace part of the allocation.

        With neither ``namespaces`` nor ``namespaceSelectors`` every namespace passes.
        """
        if not self.namespaces and not self.namespace_selectors:
            return True
        if namespace in self.namespaces:
            return True
        return any(selector.matches(namespace_labels) for selector in self.namespace_selectors)

    def allows_service_labels(self, service_labels: Mapping[str, str]) -> bool:
        """Whether a Service with these labels passes ``serviceSelectors`` (none: every Service passes)."""
        return any_selector_matches(self.service_selectors, service_labels)


class IPAddressPoolSpec(WireModel):
    addresses: tuple[AddressText, ...] = ()
    auto_assign: bool = True
    avoid_buggy_ips: bool = Field(default=False, alias="avoidBuggyIPs")
    service_allocation: ServiceAllocation | None = None

    @model_validator(mode="after")
    def _addresses_present(self) -> IPAddressPoolSpec:
        if not self.addresses:
            raise invalid("pool has no addresses defined", field="addresses")
        return self

    def ranges(self) -> tuple[AddressRange, ...]:
        """The address entries parsed, in the order written."""
        return tuple(parse_address_range(text) for text in self.addresses)


class IPAddressPool(MetallbObject):
    KIND: ClassVar[str] = "IPAddressPool"
    API_VERSIONS: ClassVar[tuple[str, ...]] = (f"{API_GROUP}/v1beta1",)

    api_version: str = "metallb.io/v1beta1"
    kind: str = "IPAddressPool"
    spec: IPAddressPoolSpec

    def ranges(self) -> tuple[AddressRange, ...]:
        """The pool's address ranges as integers with their family, exact even for /64 and bigger."""
        return self.spec.ranges()

    def avoids(self, address: IPAddress) -> bool:
        """Whether ``avoidBuggyIPs`` keeps ``address`` out of allocation (IPv4 ending in .0 or .255)."""
        return self.spec.avoid_buggy_ips and is_buggy_ip(address)

    @property
    def size(self) -> int:
        """Total number of addresses (entries of a valid configuration do not overlap)."""
        return sum(address_range.size for address_range in self.ranges())
