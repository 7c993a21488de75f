"""Bounds on what a Service may ask for, checked before anything of it is parsed.

A tenant controls a Service's annotations (Kubernetes allows 256 KiB of them), so every value the
allocator reads from them is measured first: an oversized or over-long list is refused at the cost of
a length or a comma count, and the refusal quotes only a short prefix of it, never the value whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: MetalLB accepts one address per family: an IPv4 and an IPv6 address, so at most one comma.
MAX_REQUESTED_IPS = 2
#: The longest list of two addresses, generously: two full IPv6 forms (45 characters each), a comma, spaces.
MAX_REQUESTED_IPS_LENGTH = 128
#: A pool is a Kubernetes object: its name is a DNS subdomain of at most 253 characters.
MAX_POOL_NAME_LENGTH = 253
#: A sharing key is free text in MetalLB; metalbus bounds it like an object name.
MAX_SHARING_KEY_LENGTH = 253
#: Characters of a refused value quoted in a message.
QUOTED_PREFIX = 40


class Exceeded(Enum):
    """Which bound a value broke."""

    TOO_LONG = "too_long"
    TOO_MANY_ENTRIES = "too_many_entries"


@dataclass(frozen=True, slots=True)
class Breach:
    """A value over its bound, with a message that names it without copying it."""

    exceeded: Exceeded
    message: str


def quoted(value: str, *, limit: int = QUOTED_PREFIX) -> str:
    """``value`` for a message: whole when short, else a prefix and its length."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def too_long(source: str, value: str, limit: int) -> Breach | None:
    """A breach when ``value`` (from ``source``, e.g. an annotation) is longer than ``limit``."""
    if len(value) <= limit:
        return None
    return Breach(Exceeded.TOO_LONG, f"{source} is {len(value)} characters, at most {limit} are read: {quoted(value)}")


def requested_ips_breach(source: str, value: str) -> Breach | None:
    """A breach when the list of requested addresses has too many entries or is too long to hold two."""
    entries = value.count(",") + 1
    if entries > MAX_REQUESTED_IPS:
        return Breach(
            Exceeded.TOO_MANY_ENTRIES,
            f"{source} lists {entries} addresses, at most {MAX_REQUESTED_IPS} (one per family): {quoted(value)}",
        )
    return too_long(source, value, MAX_REQUESTED_IPS_LENGTH)
