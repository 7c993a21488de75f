"""Run one BGP speaker in this process (meant for `ip netns exec`), driven by JSON lines on stdin.

    python -m tests.network.bgp.speaker_proc '<speaker config JSON>' LOGFILE
    stdin:  {"routes": [{"prefix": "198.51.100.7/32", "communities": ["65000:7"], ...}]}
            {"stop": {"keep_routes": false, "message": "bye"}}
Every event is written to LOGFILE as one line `event <repr>`; end of stdin or SIGTERM stops with a Cease.
With `"bfd": {"desired_min_tx": 0.1, ...}` a BFD session runs beside it and its Down ends the BGP session
(`"multihop": true` for RFC 5883, `"echo_interval": 0.05` for the echo function); `"ttl": 255` for ebgpMultiHop.
With `"listen": true` it also accepts the peer's connections on port 179 of `listen_address` (default
`source_address`; `"::"` listens on every address, as the announcer does); with `"connect": false` it only does
that. `"device"` binds its connections to a device (a VRF's master, as a `vrf` session's).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
import sys
from typing import Any

from services.announcer.bgp.attributes import parse_community
from services.announcer.bgp.bfd import BfdConfig, BfdState, BfdStateChanged
from services.announcer.bgp.bfd_peer import BfdEndpoint, BfdPeer
from services.announcer.bgp.events import Event
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig

log = logging.getLogger("speaker_proc")


def speaker_config(raw: dict[str, Any]) -> SpeakerConfig:
    def address(key: str) -> Any:
        return ipaddress.ip_address(raw[key]) if raw.get(key) else None

    session = SessionConfig(
        local_as=raw["local_as"],
        peer_as=raw["peer_as"],
        router_id=ipaddress.IPv4Address(raw["router_id"]),
        hold_time=raw.get("hold_time", 90),
        graceful_restart=raw.get("graceful_restart", False),
        restart_time=raw.get("restart_time", 120),
        restarting=raw.get("restarting", False),
        next_hop_v4=address("next_hop_v4"),
        next_hop_v6=address("next_hop_v6"),
    )
    return SpeakerConfig(
        session=session,
        peer_address=ipaddress.ip_address(raw["peer_address"]),
        source_address=address("source_address"),
        password=raw.get("password"),
        connect=raw.get("connect", True),
        min_backoff=0.1,
        connect_time=2.0,
        connect_timeout=2.0,
        ttl=raw.get("ttl"),
        device=raw.get("device"),
    )


def routes(raw: list[dict[str, Any]]) -> dict[Prefix, Route]:
    out: dict[Prefix, Route] = {}
    for item in raw:
        out[ipaddress.ip_network(item["prefix"])] = Route(
            next_hop=ipaddress.ip_address(item["next_hop"]) if item.get("next_hop") else None,
            communities=tuple(parse_community(c) for c in item.get("communities", ())),
            large_communities=tuple(
                (int(g), int(a), int(b)) for g, a, b in (c.split(":") for c in item.get("large_communities", ()))
            ),
            local_pref=item.get("local_pref"),
        )
    return out


async def main(config: SpeakerConfig, *, listen: str | None, bfd: BfdConfig | None) -> None:
    """``listen``: the address to accept the peer's connections on (None: dial only)."""
    if listen is None:
        await run(config, None, bfd)
        return
    async with Listener(address=ipaddress.ip_address(listen), port=179) as listener:
        await run(config, listener, bfd)


async def run(config: SpeakerConfig, listener: Listener | None, bfd: BfdConfig | None) -> None:
    loop = asyncio.get_running_loop()

    def on_event(event: Event) -> None:
        log.info("event %r", event)

    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)  # one line holds the whole desired set
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    keep_routes, message = False, "speaker stopped"
    async with Speaker(config, on_event=on_event) as speaker:
        if listener is not None:
            listener.add(speaker)
        liveness: tuple[BfdEndpoint, BfdPeer] | None = None
        if bfd is not None:
            assert config.source_address is not None

            def on_bfd(change: BfdStateChanged) -> None:
                log.info("bfd %s -> %s (%s)", change.old.name, change.new.name, change.diagnostic.name)
                if change.old is BfdState.UP:
                    speaker.peer_down()

            endpoint = BfdEndpoint(address=config.source_address, port=bfd.port)
            liveness = endpoint, BfdPeer(endpoint, peer=config.peer_address, config=bfd, on_change=on_bfd)
        lines = asyncio.ensure_future(reader.readline())
        stop = asyncio.ensure_future(terminated.wait())
        while True:
            await asyncio.wait({lines, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done() or not lines.result():
                break
            command = json.loads(lines.result())
            log.info("command %s", command)
            if "routes" in command:
                speaker.set_advertisements(routes(command["routes"]))
            if "stop" in command:
                keep_routes = bool(command["stop"].get("keep_routes", False))
                message = str(command["stop"].get("message", message))
                break
            lines = asyncio.ensure_future(reader.readline())
        lines.cancel()
        stop.cancel()
        if liveness is not None:
            liveness[1].close()
            liveness[0].close()
        await speaker.stop(keep_routes=keep_routes, message=message)
    log.info("stopped")


if __name__ == "__main__":
    logging.basicConfig(
        filename=sys.argv[2], level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    raw = json.loads(sys.argv[1])
    bfd = BfdConfig(**raw["bfd"]) if raw.get("bfd") else None
    listen = (raw.get("listen_address") or raw.get("source_address")) if raw.get("listen") else None
    asyncio.run(main(speaker_config(raw), listen=listen, bfd=bfd))
