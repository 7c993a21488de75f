"""The liveness protocol between announcers and ipam, in numbers both sides share.

An announcer heartbeats every ``HEARTBEAT_INTERVAL`` seconds (and at once after every (re)connect) on
the connection the heartbeat names; the NATS server reports that connection closed when the process dies
(at once) or stops answering the server's pings (about a second). ipam declares a node dead on that
report, on its ``leaving`` heartbeat, or ``LIVENESS_BACKSTOP`` seconds after its last heartbeat.
"""

from __future__ import annotations

HEARTBEAT_INTERVAL = 2.0
#: Two and a half heartbeats: one lost heartbeat never kills a node.
LIVENESS_BACKSTOP = 5.0
