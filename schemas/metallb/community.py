"""BGP community values and the ``Community`` object (metallb.io/v1beta1) that names them.

A value is ``a:b`` (RFC 1997, two 16-bit numbers) or ``large:a:b:c`` (RFC 8092, three 32-bit numbers).
In a ``BGPAdvertisement`` anything else is taken as the name of an alias from a ``Community`` object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BeforeValidator, field_validator

from schemas.metallb.common import API_GROUP, MetallbObject, WireModel, invalid

_UINT16 = (1 << 16) - 1
_UINT32 = (1 << 32) - 1
_STANDARD = re.compile(r"(\d+):(\d+)")
_LARGE_PREFIX = "large:"


@dataclass(frozen=True, slots=True, order=True)
class StandardCommunity:
    """An RFC 1997 community: ``asn:value``, both 16-bit."""

    asn: int
    value: int

    @property
    def as_int(self) -> int:
        """The 32-bit wire value."""
        return (self.asn << 16) | self.value

    def __str__(self) -> str:
        return f"{self.asn}:{self.value}"


@dataclass(frozen=True, slots=True, order=True)
class LargeCommunity:
    """An RFC 8092 large community: ``large:global:local1:local2``, all 32-bit."""

    global_admin: int
    local_data1: int
    local_data2: int

    def __str__(self) -> str:
        return f"large:{self.global_admin}:{self.local_data1}:{self.local_data2}"


BGPCommunity = StandardCommunity | LargeCommunity


def looks_like_community_value(text: str) -> bool:
    """Whether ``text`` is written as a value (so it is not an alias name), valid or not."""
    return text.startswith(_LARGE_PREFIX) or _STANDARD.fullmatch(text) is not None


def parse_community(text: str) -> BGPCommunity:
    """Parse ``a:b`` or ``large:a:b:c``. Raises ``ValueError`` with the reason."""
    if text.startswith(_LARGE_PREFIX):
        parts = text[len(_LARGE_PREFIX) :].split(":")
        if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
            raise ValueError(f'invalid large community "{text}": expected large:<uint32>:<uint32>:<uint32>')
        numbers = [int(part) for part in parts]
        if any(number > _UINT32 for number in numbers):
            raise ValueError(f'invalid large community "{text}": each part must be at most {_UINT32}')
        return LargeCommunity(*numbers)
    match = _STANDARD.fullmatch(text)
    if match is None:
        raise ValueError(f'invalid community "{text}": expected <uint16>:<uint16> or large:<uint32>:<uint32>:<uint32>')
    asn, value = int(match.group(1)), int(match.group(2))
    if asn > _UINT16 or value > _UINT16:
        raise ValueError(f'invalid community "{text}": each part must be at most {_UINT16}')
    return StandardCommunity(asn, value)


def _undo_yaml_sexagesimal(value: object) -> object:
    """YAML 1.1 (PyYAML's ``safe_load``) reads an unquoted ``1234:1`` as the base-60 integer 74041.

    The Kubernetes API never does that, but MetalLB's documented YAML has such values unquoted, so an
    integer here is turned back into ``a:b`` (exact for the two-part form, the only form that is an int).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return f"{value // 60}:{value % 60}"
    return value


def _check_community_value(text: str) -> str:
    try:
        parse_community(text)
    except ValueError as error:
        raise invalid(str(error)) from None
    return text


CommunityValue = Annotated[str, BeforeValidator(_undo_yaml_sexagesimal), AfterValidator(_check_community_value)]
"""A community written as a value (never an alias), kept as written."""


def _check_community_or_alias(text: str) -> str:
    if not text:
        raise invalid("community must not be empty")
    if looks_like_community_value(text):
        _check_community_value(text)
    return text


CommunityOrAlias = Annotated[str, BeforeValidator(_undo_yaml_sexagesimal), AfterValidator(_check_community_or_alias)]
"""A ``BGPAdvertisement.spec.communities`` entry: a value, or the name of a ``Community`` alias."""


class CommunityAlias(WireModel):
    name: str
    value: CommunityValue

    @field_validator("name")
    @classmethod
    def _name_not_value(cls, name: str) -> str:
        if not name:
            raise invalid("alias name must not be empty")
        return name

    @property
    def community(self) -> BGPCommunity:
        return parse_community(self.value)


class CommunitySpec(WireModel):
    communities: tuple[CommunityAlias, ...] = ()

    @field_validator("communities")
    @classmethod
    def _unique_names(cls, aliases: tuple[CommunityAlias, ...]) -> tuple[CommunityAlias, ...]:
        seen: set[str] = set()
        for alias in aliases:
            if alias.name in seen:
                raise invalid(f"duplicate definition of community {alias.name!r}")
            seen.add(alias.name)
        return aliases


class Community(MetallbObject):
    KIND: ClassVar[str] = "Community"
    API_VERSIONS: ClassVar[tuple[str, ...]] = (f"{API_GROUP}/v1beta1",)

    api_version: str = "metallb.io/v1beta1"
    kind: str = "Community"
    spec: CommunitySpec = CommunitySpec()

    def aliases(self) -> dict[str, BGPCommunity]:
        return {alias.name: alias.community for alias in self.spec.communities}
