"""Objects too large for the bus: named, logged, counted, and a Warning Event about each.

Kubernetes accepts objects of more than a megabyte (a Service with thousands of labels); NATS refuses a
message above its ``max_payload``. Such an object is skipped — the stream keeps what it held before —
and every other object is published as usual; the skip must be visible where the user looks.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.events import ConfigObjectObserved, EndpointsObserved, ObjectKind
from services.common.errors import MetalbusError
from services.common.subjects import parse_k8s_subject
from services.watcher.observe import metrics
from services.watcher.observe.translate import Observation
from services.watcher.status.objects import EVENTS, ObjectApi

log = logging.getLogger(__name__)

REASON = "ObjectTooLarge"

#: (Kubernetes kind, apiVersion) of the objects each observed kind comes from.
_INVOLVED: dict[ObjectKind, tuple[str, str]] = {
    ObjectKind.SERVICE: ("Service", "v1"),
    ObjectKind.ENDPOINTS: ("Service", "v1"),  # slices are folded per Service: the Service is named
    ObjectKind.NODE: ("Node", "v1"),
    ObjectKind.NAMESPACE: ("Namespace", "v1"),
    ObjectKind.SECRET: ("Secret", "v1"),
    ObjectKind.KUBE_PROXY: ("ConfigMap", "v1"),
}


@dataclass(frozen=True, slots=True)
class OversizedObject:
    """One object version the bus cannot carry."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str
    version: str
    size: int
    limit: int

    @property
    def message(self) -> str:
        return (f"{self.kind} {self.namespace}/{self.name} is {self.size} bytes as an event, more than the "
                f"{self.limit} the message bus takes: it is skipped (the last version that fit stays in force)")


def oversized(observation: Observation, size: int, limit: int) -> OversizedObject:
    """Name the object behind ``observation`` (an observed event too large to publish)."""
    kind, namespace, name = parse_k8s_subject(observation.subject)
    event = observation.event
    involved = _INVOLVED.get(kind, (kind.value, "metallb.io/v1beta1"))
    if isinstance(event, ConfigObjectObserved):
        involved = (event.kind, event.api_version)
    ref = getattr(event, "ref", None)
    uid = ref.uid if ref is not None and not isinstance(event, EndpointsObserved) else ""
    return OversizedObject(kind=involved[0], api_version=involved[1], namespace=namespace, name=name, uid=uid,
                           version=observation.identity.version, size=size, limit=limit)


def report(found: OversizedObject) -> None:
    """Log and count a skipped object (every source does)."""
    metrics.OVERSIZED.labels(found.kind).inc()
    log.warning("skipping object too large for the bus kind=%s namespace=%s name=%s version=%s size=%d limit=%d",
                found.kind, found.namespace, found.name, found.version, found.size, found.limit)


WarnOversized = Callable[[OversizedObject], Awaitable[None]]


class OversizedWarnings:
    """Writes one Warning Event per skipped object version (relists and restarts of the watch find the same
    object again: it is warned about once per version this process has seen)."""

    def __init__(self, api: ObjectApi, *, component: str = "metalbus", remember: int = 4096,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._api = api
        self._component = component
        self._warned: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._remember = remember
        self._clock = clock

    async def __call__(self, found: OversizedObject) -> None:
        key = (found.kind, found.namespace, found.name, found.version)
        if key in self._warned:
            return
        stamp = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = found.namespace or "default"  # Events about cluster-scoped objects live in "default"
        body = {
            "metadata": {"generateName": f"{found.name[:200]}.", "namespace": namespace},
            "involvedObject": {"kind": found.kind, "apiVersion": found.api_version, "name": found.name,
                               **({"namespace": found.namespace} if found.namespace else {}),
                               **({"uid": found.uid} if found.uid else {})},
            "reason": REASON, "message": found.message, "type": "Warning", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": self._component}, "reportingComponent": self._component,
        }  # fmt: skip
        try:
            await self._api.create(EVENTS, namespace, body)
        except MetalbusError as error:
            log.warning("event not recorded reason=%s object=%s/%s error=%s", REASON, found.namespace, found.name,
                        error)
            return
        self._warned[key] = None
        while len(self._warned) > self._remember:
            self._warned.popitem(last=False)
