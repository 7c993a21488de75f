"""A follower through the loss of the NATS server holding its consumer: how long until it follows again.

Real parts: the prod overlay's three TLS nats-servers with streams at three replicas (``tests/security/
shipped.py``), a follower of ``K8S`` as the ipam follows it (its own credential, given every server), a
writer as the watcher. Each run kills (SIGKILL) the server holding the follower's consumer, publishes one
observation as soon as the cluster takes it, and times, from the kill: the publish accepted, and the
observation handed out by the follower (which may be sooner than the publish's acknowledgement). The server
is started again before the next run.

``python bench/follower_loss.py [--runs N]``  (default 3; about 15 s a run). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from schemas.events import NodeObserved, ObjectRef
from services.common.bus import Bus, BusSettings
from services.common.errors import RetryableError
from services.common.follower import Follower
from services.common.permissions import BusUser
from services.common.subjects import StreamName, observed_subject
from tests.security.shipped import ShippedCluster, shipped_cluster


async def connect(cluster: ShippedCluster, user: BusUser) -> Bus:
    url = ",".join(cluster.credentials.url(server.url, user) for server in cluster.servers)
    return await Bus.connect(BusSettings(url=url, tls_ca_file=cluster.ca_file, initial_attempts=3),
                             producer=f"{user.value}/bench")


async def observe(bus: Bus, node: str) -> None:
    """Publish ``node``'s observation, again and again until the cluster takes it."""
    event = NodeObserved(ref=ObjectRef(name=node, uid=node, resource_version="1"))
    while True:
        try:
            await bus.publish(observed_subject(event), event)
            return
        except RetryableError:
            continue  # a request unanswered waits out its timeout: no pause needed


async def one_run(cluster: ShippedCluster, run: int) -> dict[str, float]:
    async with await connect(cluster, BusUser.WATCHER) as watcher, await connect(cluster, BusUser.IPAM) as ipam:
        await observe(watcher, f"before-{run}")
        follower = Follower(ipam, StreamName.K8S, start_sequence=await ipam.last_sequence(StreamName.K8S))
        try:
            while not await follower.fetch(wait=0.5):
                pass
            assert follower.consumer is not None
            info = await ipam.js.consumer_info(StreamName.K8S.value, follower.consumer)
            assert info.cluster is not None and info.cluster.leader
            server = cluster.server_named(info.cluster.leader)
            cluster.kill(server)
            killed = time.monotonic()
            publishing = asyncio.create_task(observe(watcher, f"after-{run}"))
            accepted: list[float] = []
            publishing.add_done_callback(lambda _: accepted.append(time.monotonic() - killed))
            seen: list[str] = []
            while not any(subject.endswith(f"after-{run}") for subject in seen):
                seen.extend(received.subject for received in await follower.fetch(wait=0.1))
            followed = time.monotonic() - killed
            await publishing
        finally:
            await follower.close()
    cluster.restart(server)
    return {"server": float(server.index), "accepted_s": round(accepted[0], 2), "followed_s": round(followed, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    results = []
    with tempfile.TemporaryDirectory(prefix="follower-loss-") as directory, \
            shipped_cluster("prod", Path(directory) / "nats", startup_timeout=60) as cluster:
        for run in range(runs):
            result = await one_run(cluster, run)
            print(f"run {run}: killed metalbus-nats-{int(result['server'])}; the next publish accepted after "
                  f"{result['accepted_s']:.2f} s, handed out by the follower after {result['followed_s']:.2f} s")
            results.append(result)
    followed = [r["followed_s"] for r in results]
    accepted = [r["accepted_s"] for r in results]
    print(json.dumps({"runs": runs, "accepted_s": accepted, "followed_s": followed,
                      "followed_s_median": statistics.median(followed), "followed_s_max": max(followed)}))


if __name__ == "__main__":
    asyncio.run(main())
