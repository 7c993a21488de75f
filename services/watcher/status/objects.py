"""The few Kubernetes calls the status writer makes, as plain JSON-shaped dicts: on the event loop over the
writer's own connections (``transport.py``), else through the official client in worker threads (lists
always).

The Kubernetes client's errors are mapped here, once, to the project's (:mod:`services.common.errors`),
grouped by what the caller does: :class:`Conflict` (409: re-read and retry), :class:`NotFound` (404, 410:
the object or its namespace is not there, drop quietly), :class:`RetryableError` (5xx, 429, timeouts and
broken connections: back off and retry later), :class:`Invalid` (any other 4xx: the request is invalid or
forbidden; log, do not retry at once). A 429 is :class:`TooManyRequests`, a retryable error that carries the
answer's ``Retry-After``: the status writer pauses as a whole for it.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from services.common.errors import MetalbusError, RetryableError
from services.watcher.kube import KubeClients, call_in
from services.watcher.status.apierrors import failure_for_status
from services.watcher.status.transport import ApiTransport

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class Group(StrEnum):
    CORE = ""
    METALLB = "metallb.io"


@dataclass(frozen=True, slots=True)
class Resource:
    group: Group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group.value}/{self.version}" if self.group.value else self.version


SERVICES = Resource(Group.CORE, "v1", "services", "Service")
EVENTS = Resource(Group.CORE, "v1", "events", "Event")
IP_ADDRESS_POOLS = Resource(Group.METALLB, "v1beta1", "ipaddresspools", "IPAddressPool")
SERVICE_L2_STATUSES = Resource(Group.METALLB, "v1beta1", "servicel2statuses", "ServiceL2Status")
SERVICE_BGP_STATUSES = Resource(Group.METALLB, "v1beta1", "servicebgpstatuses", "ServiceBGPStatus")
CONFIGURATION_STATES = Resource(Group.METALLB, "v1beta1", "configurationstates", "ConfigurationState")


def _failure(error: Exception) -> MetalbusError:
    if isinstance(error, ApiException):
        return failure_for_status(int(error.status or 0), str(error.reason), error.headers, error.body)
    return RetryableError(repr(error))


_NETWORK_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


class ObjectApi:
    """get / list / create / patch / delete of the resources above, each call in a worker thread, or on the
    loop through the status writer's own transport."""

    def __init__(
        self, clients: KubeClients, *, request_timeout: float = 10.0, executor: Executor | None = None,
        transport: ApiTransport | None = None,
    ) -> None:
        """``executor``: the threads the calls run in (default: the loop's). ``transport``: get, create,
        patch and delete go through it, on the loop (``transport.py``); lists through the client always."""
        self._clients = clients
        self._timeout = request_timeout
        self._executor = executor
        self._transport = transport

    @staticmethod
    def path(resource: Resource, namespace: str, name: str = "", *, status: bool = False) -> str:
        """The API path of ``resource`` in ``namespace`` (its collection when ``name`` is empty)."""
        base = f"/api/{resource.version}" if resource.group is Group.CORE else f"/apis/{resource.api_version}"
        path = f"{base}/namespaces/{namespace}/{resource.plural}"
        if name:
            path += f"/{name}" + ("/status" if status else "")
        return path

    async def _run(self, function: Any, *args: Any, **kwargs: Any) -> Obj:
        """One call, its answer read as plain JSON (skipping the client's slow model objects)."""
        return await call_in(self._executor, self._blocking, function, args, kwargs)

    def _blocking(self, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Obj:
        try:
            response = function(*args, _request_timeout=self._timeout, _preload_content=False, **kwargs)
            data = response.data
        except _NETWORK_ERRORS as error:
            raise _failure(error) from error
        try:
            answer = json.loads(data) if data else {}
        except ValueError as error:
            raise RetryableError(f"unreadable answer: {error}") from error
        return answer if isinstance(answer, dict) else {}

    async def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        if self._transport is not None:
            return await self._transport.request("GET", self.path(resource, namespace, name))
        if resource is SERVICES:
            return await self._run(self._clients.core.read_namespaced_service, name, namespace)
        return await self._run(self._clients.custom.get_namespaced_custom_object, resource.group.value,
                               resource.version, namespace, resource.plural, name)

    async def list(self, resource: Resource, namespace: str | None, *, label_selector: str = "",
                   page: int = 500) -> list[Obj]:
        """Every object (all namespaces when ``namespace`` is None), read in pages."""
        core, custom = self._clients.core, self._clients.custom
        items: list[Obj] = []
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"limit": page, "label_selector": label_selector or None}
            if token:
                extra["_continue"] = token
            if resource is SERVICES and namespace is None:
                answer = await self._run(core.list_service_for_all_namespaces, **extra)
            elif resource is SERVICES:
                answer = await self._run(core.list_namespaced_service, namespace, **extra)
            elif namespace is None:
                answer = await self._run(custom.list_cluster_custom_object, resource.group.value,
                                         resource.version, resource.plural, **extra)
            else:
                answer = await self._run(custom.list_namespaced_custom_object, resource.group.value,
                                         resource.version, namespace, resource.plural, **extra)
            items.extend(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def create(self, resource: Resource, namespace: str, body: Obj, *, answer: bool = True) -> Obj:
        """``answer`` False: the caller reads nothing of the answer, which may then come back empty."""
        if self._transport is not None:
            return await self._transport.request("POST", self.path(resource, namespace), body=body, answer=answer)
        if resource is EVENTS:
            return await self._run(self._clients.core.create_namespaced_event, namespace, body)
        return await self._run(self._clients.custom.create_namespaced_custom_object, resource.group.value,
                               resource.version, namespace, resource.plural, body)

    async def patch(self, resource: Resource, namespace: str, name: str, body: Obj, *,
                    status: bool = False) -> Obj:
        """A JSON merge patch of the object, or of its status subresource."""
        if self._transport is not None:
            return await self._transport.request("PATCH", self.path(resource, namespace, name, status=status),
                                                 body=body, content_type=MERGE_PATCH)
        core, custom = self._clients.core, self._clients.custom
        if resource is SERVICES:
            function = core.patch_namespaced_service_status if status else core.patch_namespaced_service
            return await self._run(function, name, namespace, body, _content_type=MERGE_PATCH)
        if resource is EVENTS:
            return await self._run(core.patch_namespaced_event, name, namespace, body, _content_type=MERGE_PATCH)
        patch = custom.patch_namespaced_custom_object_status if status else custom.patch_namespaced_custom_object
        return await self._run(patch, resource.group.value, resource.version, namespace, resource.plural, name,
                               body, _content_type=MERGE_PATCH)

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        if self._transport is not None:
            await self._transport.request("DELETE", self.path(resource, namespace, name))
            return
        await self._run(self._clients.custom.delete_namespaced_custom_object, resource.group.value,
                        resource.version, namespace, resource.plural, name,
                        body=kubernetes.client.V1DeleteOptions())


def meta(obj: Obj) -> Obj:
    value: Obj = obj.get("metadata") or {}
    return value


def resource_version(obj: Obj) -> str:
    return str(meta(obj).get("resourceVersion") or "")
