"""The liveness protocol between announcers and ipam, in numbers both sides share.

An announcer heartbeats every ``HEARTBEAT_INTERVAL`` seconds, at once after every (re)connect and in answer
to a roll call (``ROLL_CALL``, at most once every ``ROLL_CALL_GAP``), on the connection the heartbeat names;
the NATS server reports that connection closed when the process dies (at once) or stops answering the
server's pings (about a second). ipam declares a node dead on that report, on its ``leaving`` heartbeat, or
``LIVENESS_BACKSTOP`` seconds after its last heartbeat.

The server's report is what makes failover fast; the periodic heartbeat is only the backstop for a death the
server cannot report (the server the node was connected to died with it, or the report was lost while ipam's
own connection was down). So it is rare: what ipam pays to follow liveness grows with nodes / interval (5 000
nodes every 2 s cost a replica 0.25 cores), and the backstop's 25 s only bounds those rarer deaths. Whoever
starts listening calls the roll instead of waiting an interval to hear every node.
"""

from __future__ import annotations

HEARTBEAT_INTERVAL = 10.0
#: Two and a half heartbeats: one lost heartbeat never kills a node.
LIVENESS_BACKSTOP = 25.0
#: How long a roll caller listens for the answers (an announcer busy for a second or two still answers).
ROLL_CALL_LISTEN = 2.5
#: An announcer answers at most one roll call this often: callers cannot make it heartbeat faster.
ROLL_CALL_GAP = 1.0
