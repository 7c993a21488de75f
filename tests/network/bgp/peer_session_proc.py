"""Run one BGPPeer's session as the announcer's agent runs it (``session_spec_for`` then ``PeerSession``), in this
process (meant for ``ip netns exec``): the path a ``vrf`` or ``interface`` peer takes, device checks and
router discovery included.

    python -m tests.network.bgp.peer_session_proc '<JSON>' LOGFILE
    JSON: {"peer": <BGPPeer spec>, "node": {"name": ..., "addresses": [...]}, "routes": ["198.51.100.7/32", ...],
           "bfdProfiles": {<name>: <BFDProfile spec>, ...}}
stdin: {"routes": [...]} lines, each the whole set from then on. Every state change is written to LOGFILE as one
line ``state <State> <reason>``; SIGTERM or the end of stdin stops the session with a Cease.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
import sys
from typing import Any

from schemas.events import BGPSessionState
from schemas.metallb import BFDProfile, BGPPeer
from schemas.metallb.rules import NodeFacts
from services.announcer.agents.bgp_plan import Configuration
from services.announcer.agents.bgp_sessions import session_spec_for
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.peer_session import BfdEndpoints, PeerSession
from services.announcer.bgp.peering import Refused
from services.announcer.bgp.rib import Route

log = logging.getLogger("peer_session_proc")


async def main(raw: dict[str, Any]) -> None:
    peer = BGPPeer.model_validate(
        {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "peer", "namespace": "ns"},
         "spec": raw["peer"]}
    )  # fmt: skip
    node = NodeFacts(name=raw["node"]["name"], addresses=tuple(raw["node"].get("addresses", ())))
    profiles = {name: bfd_profile(name, profile) for name, profile in raw.get("bfdProfiles", {}).items()}
    configuration = Configuration(bfd_profiles=profiles)
    spec = session_spec_for(peer, node=node, password=None, configuration=configuration)
    if isinstance(spec, Refused):
        log.info("state Idle %s: %s", spec.reason.value, spec.message)
        return

    def on_state(session: PeerSession, state: BGPSessionState, reason: str) -> None:
        log.info("state %s %s", state.value, reason or "-")

    session = PeerSession(name="peer", ref="ns/peer", spec=spec, endpoints=BfdEndpoints(), on_state=on_state)
    session.start(routes(raw.get("routes", [])))
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)  # one line holds the whole desired set
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    waits = {asyncio.ensure_future(_follow(reader, session)), asyncio.ensure_future(done.wait())}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    await session.stop(message="test done")
    log.info("stopped")


def bfd_profile(name: str, spec: dict[str, Any]) -> BFDProfile:
    metadata = {"name": name, "namespace": "ns"}
    return BFDProfile.model_validate({"apiVersion": "metallb.io/v1beta1", "kind": "BFDProfile", "metadata": metadata,
                                      "spec": spec})  # fmt: skip


async def _follow(reader: asyncio.StreamReader, session: PeerSession) -> None:
    """``{"routes": [...]}`` lines set the whole desired set, until the end of stdin."""
    while line := await reader.readline():
        session.set_routes(routes(json.loads(line)["routes"]))
        log.info("routes set")


def routes(prefixes: list[str]) -> dict[Prefix, Route]:
    return {ipaddress.ip_network(p): Route() for p in prefixes}


if __name__ == "__main__":
    logging.basicConfig(filename=sys.argv[2], level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(json.loads(sys.argv[1])))
