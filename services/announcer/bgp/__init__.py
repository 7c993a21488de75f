"""A native BGP-4 speaker for the announcer: RFC-shaped wire codecs, a sans-IO session core, a thin asyncio shell.

Layers, bottom up (each imports only the ones below it):

- wire codecs, pure and hostile-input safe (every decoder raises only :class:`Notification`):
  ``message`` (header, KEEPALIVE, stream reader), ``notification``, ``open`` + ``capabilities``,
  ``update`` + ``attributes`` / ``aspath`` / ``multiprotocol`` / ``nlri``, ``route_refresh``, ``wire``;
  ``update_count``: a received UPDATE checked (RFC 7606) and its prefixes counted, never decoded;
- ``rib``: the desired :class:`Route` per prefix, the Adj-RIB-Out and the diff packed into UPDATEs;
- ``session``: the RFC 4271 FSM without I/O (``receive(data, now)``, ``handle_timer(now)``,
  ``get_timer()``, ``data_to_send()``, ``next_event()``), events in ``events``;
- ``tcp``, ``speaker``, ``listener``: sockets (TCP MD5, source binding), timers, backoff, collisions;
- ``bfd`` (RFC 5880 packets and state machine, sans-IO) and ``bfd_peer`` (RFC 5881 UDP shell): a BFD Down
  is handed to :meth:`Speaker.peer_down`;
- ``peering``: MetalLB ``BGPPeer`` / ``BFDProfile`` specs to configurations, or refusals with a reason.
- ``peer_session`` (one session: its speaker and BFD beside it) and ``session_link`` (where a VRF or unnumbered
  session runs on the host).
"""

from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST, AddressFamily
from services.announcer.bgp.events import (
    AdvertisementsSent,
    Closed,
    CloseReason,
    EndOfRibReceived,
    Established,
    Event,
    RefreshRequested,
    RoutesCounted,
    RoutesReceived,
    State,
    StateChanged,
)
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.notification import Notification
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import DynamicAsn, ReceivedRoutes, Session, SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig

__all__ = [
    "IPV4_UNICAST",
    "IPV6_UNICAST",
    "AddressFamily",
    "AdvertisementsSent",
    "CloseReason",
    "Closed",
    "DynamicAsn",
    "EndOfRibReceived",
    "Established",
    "Event",
    "Listener",
    "Notification",
    "ReceivedRoutes",
    "RefreshRequested",
    "Route",
    "RoutesCounted",
    "RoutesReceived",
    "Session",
    "SessionConfig",
    "Speaker",
    "SpeakerConfig",
    "State",
    "StateChanged",
]
