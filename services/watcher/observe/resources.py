"""Which resources the watcher observes, with what call and into which projection; and running them."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass

from schemas.events import CONFIG_KINDS, ObjectKind
from services.common.bus import Bus
from services.common.collector import survivors_frozen
from services.common.supervision import OnFailure, Supervisor
from services.watcher.kube import KubeClients
from services.watcher.observe import metrics
from services.watcher.observe.marks import mark_begun, watch_marks
from services.watcher.observe.oversized import WarnOversized
from services.watcher.observe.projection import (
    EndpointsProjection,
    LoadBalancerServices,
    ObjectProjection,
    PeerPasswordProjection,
    PeerProjection,
    Projection,
    SecretProjection,
    SecretReferences,
    SecretStates,
    ServiceProjection,
)
from services.watcher.observe.reflector import Reflector, ReflectorSettings, ResourceSpec
from services.watcher.observe.stream import ListCall
from services.watcher.observe.translate import (
    KUBE_PROXY_NAME,
    KUBE_PROXY_NAMESPACE,
    Observation,
    RawObject,
    config_observed,
    kube_proxy_observed,
    namespace_observed,
    node_observed,
    secret_observed,
    service_observed,
)
from services.watcher.sightings import TOLD_KINDS

log = logging.getLogger(__name__)

METALLB_GROUP = "metallb.io"

#: metallb.io plurals and the versions read, preferred first.
METALLB_RESOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "IPAddressPool": ("ipaddresspools", ("v1beta1",)),
    "L2Advertisement": ("l2advertisements", ("v1beta1",)),
    "BGPAdvertisement": ("bgpadvertisements", ("v1beta1",)),
    "BGPPeer": ("bgppeers", ("v1beta2", "v1beta1")),
    "BFDProfile": ("bfdprofiles", ("v1beta1",)),
    "Community": ("communities", ("v1beta1",)),
}


def _skipped(kind: ObjectKind) -> Callable[[RawObject, Exception], None]:
    def skip(obj: RawObject, error: Exception) -> None:
        metrics.UNTRANSLATABLE.labels(kind.value).inc()
        log.warning("skipping unreadable object kind=%s error=%s", kind.value, str(error)[:300])

    return skip


@dataclass
class Observers:
    """Every reflector of one leadership term."""

    reflectors: list[Reflector]
    bus: Bus

    @property
    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    async def wait_synced(self) -> None:
        for reflector in self.reflectors:
            await reflector.synced.wait()

    async def run(self) -> None:
        """Mark begun the lists the stream holds no mark of, then run every reflector until cancelled. Each
        RESTARTs (a reflector lists again, then watches), and so do the heap freezer (it waits for the lists
        again) and the marks' watch (``marks.py``)."""
        kinds = [reflector.projection.kind for reflector in self.reflectors]
        await mark_begun(self.bus, kinds, why="none in the stream at the start of the term")
        by_kind = {reflector.projection.kind: reflector for reflector in self.reflectors}
        async with Supervisor() as group:
            for reflector in self.reflectors:
                group.start(f"reflector-{reflector.spec.name}", reflector.run, on_failure=OnFailure.RESTART)
            group.start("observe-freeze", self._freeze_when_synced, on_failure=OnFailure.RESTART)
            group.start("observe-marks", lambda: watch_marks(self.bus, kinds, lambda kind: by_kind[kind].relist()),
                        on_failure=OnFailure.RESTART)

    async def _freeze_when_synced(self) -> None:
        """Once every initial list is in, move the (long-lived) caches out of the cyclic GC's reach: a
        full collection over 10 000 Services pauses the loop for hundreds of milliseconds, which
        would land on the watch path. Reference counting still frees them. No collection first: over
        50 000 Services it would be that very pause (the pages of the lists are frozen as they come,
        ``stream.py``), and no count of the frozen objects either (``gc.get_freeze_count`` walks them all,
        ~30 ms at 50 000 Services). When observing ends (the term is over) the heap is handed back to the
        collector and collected at once, while nothing is observed: left to a threshold, that full
        collection (~170 ms at 50 000 Services) came in the middle of the next term's lists."""
        await self.wait_synced()
        gc.freeze()
        log.info("heap frozen after the initial lists")
        try:
            with survivors_frozen():  # and, from now on, what outlives each full collection (the status state)
                await asyncio.Event().wait()  # until observing is cancelled
        finally:
            gc.unfreeze()
            gc.collect()


def _telling(kind: ObjectKind, translate: Callable[[RawObject], Observation],
             seen: Callable[[ObjectKind, RawObject], None]) -> Callable[[RawObject], Observation]:
    def told(obj: RawObject) -> Observation:
        seen(kind, obj)
        return translate(obj)

    return told


def build_observers(
    *, bus: Bus, clients: KubeClients, namespace: str, settings: ReflectorSettings | None = None,
    warn: WarnOversized | None = None, seen: Callable[[ObjectKind, RawObject], None] | None = None,
) -> Observers:
    """``warn``: told about every object too large for the bus (each is logged and counted anyway).
    ``seen``: told every Service and IPAddressPool as read, listed or changed (``services/watcher/sightings.py``)."""
    settings = settings or ReflectorSettings()
    core, discovery, custom = clients.core, clients.discovery, clients.custom

    def reflector(name: str, calls: tuple[ListCall, ...], projection: Projection,
                  wait_for: asyncio.Event | None = None) -> Reflector:
        return Reflector(spec=ResourceSpec(name, calls), projection=projection, bus=bus, settings=settings,
                         wait_for=wait_for, warn=warn)

    def told(kind: ObjectKind, translate: Callable[[RawObject], Observation]) -> Callable[[RawObject], Observation]:
        return _telling(kind, translate, seen) if seen is not None and kind in TOLD_KINDS else translate

    def simple(kind: ObjectKind, translate: Callable[[RawObject], Observation]) -> ObjectProjection:
        return ObjectProjection(kind, told(kind, translate), on_error=_skipped(kind))

    # Endpoints are published for LoadBalancer Services only (nobody reads the others'): the endpoints'
    # reflector starts once the Services are listed, and refreshes a Service's fold when it becomes a
    # LoadBalancer or stops being one.
    load_balancers = LoadBalancerServices()
    services = reflector("services", (core.list_service_for_all_namespaces,), ServiceProjection(
        told(ObjectKind.SERVICE, service_observed), load_balancers=load_balancers,
        on_error=_skipped(ObjectKind.SERVICE)))
    endpoints = reflector(
        "endpointslices", (discovery.list_endpoint_slice_for_all_namespaces,),
        EndpointsProjection(on_error=_skipped(ObjectKind.ENDPOINTS), load_balancers=load_balancers),
        wait_for=services.synced,
    )
    load_balancers.listen(endpoints.poke)
    reflectors = [
        services,
        endpoints,
        reflector("nodes", (core.list_node,), simple(ObjectKind.NODE, node_observed)),
        reflector("namespaces", (core.list_namespace,), simple(ObjectKind.NAMESPACE, namespace_observed)),
        reflector(
            "kube-proxy",
            (functools.partial(core.list_namespaced_config_map, KUBE_PROXY_NAMESPACE,
                               field_selector=f"metadata.name={KUBE_PROXY_NAME}"),),
            simple(ObjectKind.KUBE_PROXY, kube_proxy_observed),
        ),
    ]
    references = SecretReferences()
    states = SecretStates()  # what each Secret gives the BGPPeers naming it, said beside them
    peers: Reflector | None = None
    for kind_name, (plural, versions) in METALLB_RESOURCES.items():
        kind = CONFIG_KINDS[kind_name]
        calls = tuple(
            functools.partial(custom.list_namespaced_custom_object, METALLB_GROUP, version, namespace, plural)
            for version in versions
        )
        if kind is ObjectKind.BGP_PEER:
            projection: Projection = PeerProjection(
                config_observed, namespace=namespace, references=references, on_error=_skipped(kind), states=states
            )
            peers = reflector(plural, calls, projection)
            # The same objects again, for their inline passwords (SECRETS), which the BGPPeers lose.
            reflectors += [reflector(f"{plural}-passwords", calls, PeerPasswordProjection()), peers]
        else:
            reflectors.append(reflector(plural, calls, simple(kind, config_observed)))
    assert peers is not None
    secrets = reflector(
        "secrets",
        (functools.partial(core.list_namespaced_secret, namespace),),
        SecretProjection(secret_observed, references=references, on_error=_skipped(ObjectKind.SECRET), states=states),
        wait_for=peers.synced,
    )
    references.listen(secrets.poke)
    states.listen(peers.poke)
    reflectors.append(secrets)
    return Observers(reflectors, bus)
