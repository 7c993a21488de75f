"""The liveness protocol between announcers and ipam, in numbers both sides share.

An announcer heartbeats every ``HEARTBEAT_INTERVAL`` seconds, or every ``GRANTED_INTERVAL`` while the active
ipam grants it (a roll call that names that interval, renewed every ``GRANT_RENEW``, lapsing after
``GRANT_FOR``), at once after every (re)connect and in answer to a roll call (``ROLL_CALL``, at most once every
``ROLL_CALL_GAP``), on the connection the heartbeat names; the NATS server reports that connection closed when
the process dies (at once) or stops answering the server's pings (about a second). ipam declares a node dead
on that report, on its ``leaving`` heartbeat, or ``LIVENESS_BACKSTOP`` seconds after its last heartbeat.

The server's report is what makes failover fast; the periodic heartbeat is only the backstop for a death the
server cannot report (the server the node was connected to died with it, or the report was lost while ipam's
own connection was down). So it is rare: what ipam pays to follow liveness grows with nodes / interval (5 000
nodes every 2 s cost a replica 0.25 cores), and the backstop's 25 s only bounds those rarer deaths. Whoever
starts listening calls the roll instead of waiting an interval to hear every node.

The long interval is granted, not assumed, so that an ipam of the previous release (a 5 s backstop, no roll
calls) is never left with announcers it would take for dead: announcers are upgraded before ipam, and they
heartbeat every 2 s until an upgraded ipam is active and grants 10 s (and again once a grant lapses, say after
ipam was rolled back).
"""

from __future__ import annotations

#: An announcer's interval without a grant: what the previous release's ipam judges by (its backstop: 5 s).
HEARTBEAT_INTERVAL = 2.0
#: The interval the active ipam grants: what following 5 000 nodes costs a replica is a fifth of the above.
GRANTED_INTERVAL = 10.0
#: The longest interval an announcer takes from a roll call, whatever it says.
LONGEST_GRANT = 10.0
#: How long a grant holds unless renewed, and how often the active replica renews it.
GRANT_FOR = 600.0
GRANT_RENEW = 300.0
#: Two and a half granted heartbeats: one lost heartbeat never kills a node.
LIVENESS_BACKSTOP = 25.0
#: Heartbeats leave on the ticks of a wall-clock grid every node shares (every ``BEAT_TICK`` seconds): ipam
#: reads the heartbeats of one tick together, in one wakeup of its loop, instead of waking once for each.
#: A wakeup costs a Python NATS client far more than the message it reads: 500 heartbeats a second, one at a
#: time, cost a subscriber 0.06-0.07 cores on a shared 2-core machine; in batches of 50 every 0.1 s, 0.009-0.010
#: (``bench/heartbeat_batching.py``). Clocks out of step only lose the batching (the heartbeats still leave
#: every interval).
BEAT_TICK = 0.1
#: How long a roll caller listens for the answers (an announcer busy for a second or two still answers).
ROLL_CALL_LISTEN = 2.5
#: An announcer answers at most one roll call this often: callers cannot make it heartbeat faster.
ROLL_CALL_GAP = 1.0


def next_tick_in(wait: float, now: float, tick: float = BEAT_TICK) -> float:
    """Seconds from ``now`` (the wall clock) until the first tick of a grid of ``tick`` seconds at least
    ``wait`` seconds away."""
    return wait + (-(now + wait)) % tick


def next_beat_in(wait: float, now: float) -> float:
    """When an announcer's next heartbeat leaves: :func:`next_tick_in` on a grid never coarser than a tenth
    of ``wait``, so a short interval (a test's) keeps its length."""
    tick = min(BEAT_TICK, wait / 10)
    if tick <= 0:
        return max(wait, 0.0)
    return next_tick_in(wait, now, tick)
