"""Leader election over a Lease in the API stand-in: one leader, hand-over, expiry, stepping down."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from services.watcher.leader import LeaderElector, LeaseSettings, lead
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

NAMESPACE = "metallb-system"
QUICK = LeaseSettings(duration=1.0, renew_every=0.2, renew_deadline=0.7, retry_every=0.1, stop_grace=1.0)
#: A Lease that cannot expire during a test: a hand-over can only come from a release.
LONG = LeaseSettings(duration=60.0, renew_every=0.2, renew_deadline=40.0, retry_every=0.1, stop_grace=1.0)


@dataclass
class Candidate:
    identity: str
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    terms: list[bool] = field(default_factory=list)
    working: bool = False
    term_ended: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return bool(self.terms) and self.terms[-1]

    async def work(self, over: asyncio.Event) -> None:
        self.working = True
        try:
            await over.wait()
        finally:
            self.working = False
            self.term_ended += 1


@contextlib.asynccontextmanager
async def candidates(kube_api: KubeApi, *names: str, settings: LeaseSettings = QUICK) -> AsyncIterator[list[Candidate]]:
    api = kube_api.api_client()
    coordination = client.CoordinationV1Api(api)
    electors = [LeaderElector(coordination=coordination, namespace=NAMESPACE, identity=n, settings=settings)
                for n in names]
    running = [Candidate(n) for n in names]
    for candidate, elector in zip(running, electors, strict=True):
        candidate.task = asyncio.create_task(
            lead(elector=elector, work=candidate.work, stopping=candidate.stopping, on_change=candidate.terms.append)
        )
    try:
        yield running
    finally:
        for candidate in running:
            candidate.stopping.set()
        await asyncio.gather(*(c.task for c in running if c.task), return_exceptions=True)
        for elector in electors:
            elector.close()
        await asyncio.to_thread(api.close)


def _holder(kube_api: KubeApi) -> str:
    lease = kube_api.get_object("leases", "metalbus-watcher", NAMESPACE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


async def test_one_leads_and_a_graceful_stop_hands_over_at_once(kube_api: KubeApi) -> None:
    async with candidates(kube_api, "a", "b", settings=LONG) as (a, b):
        await async_wait_until(lambda: a.working or b.working, what="a leader at work")
        leader, standby = (a, b) if a.working else (b, a)
        assert leader.leading and not standby.leading and not standby.working
        assert _holder(kube_api) == leader.identity
        leader.stopping.set()
        await async_wait_until(lambda: standby.leading and standby.working, what="the standby taking over")
        assert leader.term_ended == 1 and not leader.working
        assert _holder(kube_api) == standby.identity
        lease = kube_api.get_object("leases", "metalbus-watcher", NAMESPACE)
        assert lease is not None and lease["spec"]["leaseTransitions"] == 1


async def test_a_crashed_leader_is_replaced_once_its_lease_expires(kube_api: KubeApi) -> None:
    async with candidates(kube_api, "a", "b") as (a, b):
        await async_wait_until(lambda: a.leading or b.leading, what="a leader")
        leader, standby = (a, b) if a.leading else (b, a)
        assert leader.task is not None
        leader.task.cancel()  # gone without releasing the Lease
        with contextlib.suppress(asyncio.CancelledError):
            await leader.task
        started = time.monotonic()
        await async_wait_until(lambda: standby.leading, timeout=5, what="the standby taking over")
        assert time.monotonic() - started >= QUICK.duration * 0.5
        assert _holder(kube_api) == standby.identity


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_expires(kube_api: KubeApi) -> None:
    async with candidates(kube_api, "a") as (a,):
        await async_wait_until(lambda: a.leading, what="a leading")
        kube_api.fail_next("update", "leases", 500, times=1000)
        await async_wait_until(lambda: not a.leading, timeout=5, what="a stepping down")
        assert a.term_ended == 1 and not a.working


async def test_a_conflict_on_renewal_is_read_again_and_leadership_kept(kube_api: KubeApi) -> None:
    async with candidates(kube_api, "a") as (a,):
        await async_wait_until(lambda: a.leading, what="a leading")
        kube_api.fail_next("update", "leases", 409, times=1)
        renewed = kube_api.get_object("leases", "metalbus-watcher", NAMESPACE)
        assert renewed is not None
        first = renewed["spec"]["renewTime"]
        await async_wait_until(
            lambda: ((kube_api.get_object("leases", "metalbus-watcher", NAMESPACE) or {}).get("spec") or {})
            .get("renewTime") != first,
            what="a renewal after the conflict",
        )
        assert a.terms == [True] and a.working


class Hanging:
    """The official client's Lease calls, made to hang on demand: an API server that stops answering."""

    def __init__(self, real: client.CoordinationV1Api) -> None:
        self.real = real
        self.hang = threading.Event()
        self.answer = threading.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.hang.is_set():
                self.answer.wait(30)
            return method(*args, **kwargs)

        return call


async def test_a_leader_whose_api_server_stops_answering_steps_down_before_its_lease_can_expire(
    kube_api: KubeApi,
) -> None:
    """Renewals that go unanswered (each call may take 5 s, and a failed one is tried again) are cut off at the
    renew deadline: the leader stops leading before the Lease it last renewed can expire for another."""
    settings = LeaseSettings(duration=3.0, renew_every=0.2, renew_deadline=1.5, retry_every=0.1, stop_grace=1.0)
    api = kube_api.api_client()
    coordination = Hanging(client.CoordinationV1Api(api))
    elector = LeaderElector(coordination=coordination, namespace=NAMESPACE, identity="a",  # type: ignore[arg-type]
                            settings=settings)
    candidate = Candidate("a")
    task = asyncio.create_task(lead(elector=elector, work=candidate.work, stopping=candidate.stopping,
                                    on_change=candidate.terms.append))
    try:
        await async_wait_until(lambda: candidate.working, what="leading")
        hung = time.monotonic()  # the last renewal that landed was at most renew_every before this
        coordination.hang.set()
        await async_wait_until(lambda: not candidate.working, timeout=10, what="stepping down")
        stepped_down = time.monotonic() - hung
        assert stepped_down < settings.duration - settings.renew_every, (
            f"stepped down {stepped_down:.2f} s after the API server stopped answering: the Lease may have expired")
    finally:
        coordination.answer.set()
        candidate.stopping.set()
        await asyncio.wait_for(task, 15)
        elector.close()
        await asyncio.to_thread(api.close)
