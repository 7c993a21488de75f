"""``metalbus ipam`` with its work made heavy, for tests of leadership under load.

Adoption, and each decision on a Service named ``heavy-*``, first keep the CPU busy without ever
yielding to the event loop, for the given seconds: what re-adopting a world ten times today's benchmark
(100 000 Services) costs, without building one.

    python -m tests.integration.ipam.heavy_ipam ADOPT_SECONDS DECIDE_SECONDS [ipam options...]
"""

from __future__ import annotations

import sys
import time

from schemas.events import Event, EventId, ServiceObserved
from services.cli import main
from services.ipam.decider import Decider, Outgoing

HEAVY_PREFIX = "heavy-"


#: Written to stderr as each heavy piece of work starts, so a test knows the replica is busy.
BUSY_MARK = "heavy work started"


def work_without_yielding(seconds: float) -> None:
    """CPU-bound work that never gives the event loop back (a long adoption, a big batch)."""
    print(BUSY_MARK, file=sys.stderr, flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def make_work_heavy(*, adopt_seconds: float, decide_seconds: float) -> None:
    adopt, observe = Decider.adopt, Decider.observe

    def heavy_adopt(self: Decider) -> None:
        work_without_yielding(adopt_seconds)
        adopt(self)

    def heavy_observe(
        self: Decider, event: Event, *, cause: EventId | None = None, defer_to_batch: bool = False
    ) -> list[Outgoing]:
        if isinstance(event, ServiceObserved) and event.ref.name.startswith(HEAVY_PREFIX):
            work_without_yielding(decide_seconds)
        return observe(self, event, cause=cause, defer_to_batch=defer_to_batch)

    Decider.adopt = heavy_adopt  # type: ignore[method-assign]
    Decider.observe = heavy_observe  # type: ignore[method-assign]


if __name__ == "__main__":
    make_work_heavy(adopt_seconds=float(sys.argv[1]), decide_seconds=float(sys.argv[2]))
    sys.exit(main(["ipam", *sys.argv[3:]]))
