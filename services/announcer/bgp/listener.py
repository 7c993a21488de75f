"""One listening socket per address and port, handing each accepted connection to the speaker of its peer.

A connection from an address no speaker was added for is refused before OPEN: reset at once, nothing read from
it and nothing sent (no OPEN that would tell our AS and identifier), counted, and logged at its source's first
attempt and then at most once a minute with the count since (:mod:`unknown_sources`).
"""

from __future__ import annotations

import asyncio
import logging

from services.announcer.bgp import tcp
from services.announcer.bgp.nlri import IPAddress
from services.announcer.bgp.speaker import Connection, Speaker
from services.announcer.bgp.unknown_sources import UnknownSources

log = logging.getLogger(__name__)


class Listener:
    """Accepts BGP connections on one address and port and hands each to the speaker for its peer."""

    def __init__(self, *, address: IPAddress, port: int = 179) -> None:
        self.address, self.port = address, port
        self.unknown = UnknownSources()
        self._speakers: dict[_Where, Speaker] = {}  # by peer address and link-local scope or VRF
        self._sock = tcp.server_socket(address=address, port=port)
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def refused(self) -> int:
        """Connections refused before OPEN because no peer is configured at their source."""
        return self.unknown.total

    def _speaker_for(self, address: IPAddress | None, scope: int = 0, device: str = "") -> Speaker | None:
        """The speaker of a connection from ``address`` (``scope``: its link-local interface's index) accepted
        bound to ``device`` (a VRF's when it arrived through one)."""
        speaker = self._speakers.get(_where(address, scope, device)) if address is not None else None
        if speaker is None:
            count = self.unknown.refuse(address, asyncio.get_running_loop().time())
            if count is not None:
                reason = "no BGPPeer has this address" + (f" in VRF {device!r}" if device and not scope else "")
                log.warning("bgp connection refused before OPEN source=%s reason=%s refused=%d", address,
                            reason, count)  # fmt: skip
        return speaker

    def add(self, speaker: Speaker) -> None:
        if speaker.config.peer_address.is_unspecified:  # a peer still to be found on its link: none to route
            return
        self._speakers[_key(speaker)] = speaker
        if speaker.config.password:
            tcp.set_md5(self._sock, speaker.config.peer_address, speaker.config.password)

    def remove(self, speaker: Speaker) -> None:
        # found by identity: a link-local peer's interface (its key's scope) may be gone by now
        key = next((key for key, added in self._speakers.items() if added is speaker), None)
        if key is not None:
            del self._speakers[key]
            if speaker.config.password:
                tcp.set_md5(self._sock, speaker.config.peer_address, None)

    async def __aenter__(self) -> Listener:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(route=self._speaker_for), sock=self._sock)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        else:
            self._sock.close()


_Where = tuple[IPAddress, int, str]


def _where(address: IPAddress, scope: int, device: str) -> _Where:
    """A link-local peer is told apart by its interface (each link may have its own router at fe80::1), any
    other by its VRF: a connection that arrived through VRF red came from red's router at that address, not
    from the main table's (nor another VRF's), and a VRF session's speaker is bound to the VRF's device."""
    return (address, scope, "") if scope else (address, 0, device)


def _key(speaker: Speaker) -> _Where:
    config = speaker.config
    return _where(config.peer_address, tcp.scope_id(config.peer_address, config.device), config.device or "")
