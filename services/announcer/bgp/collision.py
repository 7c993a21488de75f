"""Connection collisions (RFC 4271 §6.8): two TCP connections to one peer, which one carries the session.

Pure: the shell says who opened each connection, how far the one it already has got, and the two BGP
Identifiers (and AS numbers) once the peer's OPEN arrived on the newer one; :func:`resolve_collision` says
which one to keep. The other is closed with a Cease NOTIFICATION, subcode Connection Collision Resolution.
"""

from __future__ import annotations

import enum
import ipaddress

from services.announcer.bgp.events import State


class Initiator(enum.Enum):
    """Which end opened a TCP connection."""

    LOCAL = "local"  # we dialled out
    REMOTE = "remote"  # the peer dialled in (through a Listener)


class Kept(enum.Enum):
    """The connection a collision leaves in place."""

    EXISTING = "existing"  # the one the session already runs on
    NEW = "new"  # the one whose OPEN just settled the collision


def resolve_collision(
    *,
    local_id: ipaddress.IPv4Address,
    remote_id: ipaddress.IPv4Address,
    local_as: int,
    remote_as: int,
    existing: Initiator,
    existing_state: State,
    new: Initiator,
) -> Kept:
    """Which of two connections to one peer to keep, when the peer's OPEN arrives on the ``new`` one.

    - An Established session is never given up for a new connection (§6.8: "a connection collision with an
      existing BGP connection that is in the Established state causes closing of the newly created
      connection").
    - Two connections opened by different ends: keep the one opened by the end with the higher BGP Identifier,
      the two compared as 4-octet unsigned integers (§6.8, steps 1 to 3); both ends decide the same way, so
      they keep the same connection. Equal identifiers (allowed between external peers) are settled by the
      AS numbers the same way (RFC 6286 §2.3).
    - Two connections opened by the same end are no collision to resolve by identifier: that end gave up on the
      older one (it dials again only after a failure), so the newer one is kept.
    """
    if existing_state is State.ESTABLISHED:
        return Kept.EXISTING
    if existing is new:
        return Kept.NEW
    local_wins = (int(local_id), local_as) > (int(remote_id), remote_as)
    higher = Initiator.LOCAL if local_wins else Initiator.REMOTE
    return Kept.NEW if new is higher else Kept.EXISTING
