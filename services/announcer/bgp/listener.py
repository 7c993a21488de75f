"""One listening socket per address and port, handing each accepted connection to the speaker of its peer."""

from __future__ import annotations

import asyncio

from services.announcer.bgp import tcp
from services.announcer.bgp.nlri import IPAddress
from services.announcer.bgp.speaker import Connection, Speaker


class Listener:
    """Accepts BGP connections on one address and port and hands each to the speaker for its peer."""

    def __init__(self, *, address: IPAddress, port: int = 179) -> None:
        self.address, self.port = address, port
        self._speakers: dict[IPAddress, Speaker] = {}
        self._sock = tcp.server_socket(address=address, port=port)
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _speaker_for(self, address: IPAddress | None) -> Speaker | None:
        return self._speakers.get(address) if address is not None else None

    def add(self, speaker: Speaker) -> None:
        self._speakers[speaker.config.peer_address] = speaker
        if speaker.config.password:
            tcp.set_md5(self._sock, speaker.config.peer_address, speaker.config.password)

    def remove(self, speaker: Speaker) -> None:
        if self._speakers.get(speaker.config.peer_address) is speaker:
            del self._speakers[speaker.config.peer_address]
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
