"""The Kubernetes clients the watcher uses (the official ``kubernetes`` client, synchronous).

Every call goes through :func:`call` so the blocking client never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import kubernetes.client
import kubernetes.config

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KubeClients:
    api_client: kubernetes.client.ApiClient
    core: kubernetes.client.CoreV1Api
    discovery: kubernetes.client.DiscoveryV1Api
    coordination: kubernetes.client.CoordinationV1Api
    custom: kubernetes.client.CustomObjectsApi
    events: kubernetes.client.EventsV1Api

    @classmethod
    def from_api_client(cls, api_client: kubernetes.client.ApiClient) -> KubeClients:
        return cls(
            api_client=api_client,
            core=kubernetes.client.CoreV1Api(api_client),
            discovery=kubernetes.client.DiscoveryV1Api(api_client),
            coordination=kubernetes.client.CoordinationV1Api(api_client),
            custom=kubernetes.client.CustomObjectsApi(api_client),
            events=kubernetes.client.EventsV1Api(api_client),
        )

    def with_pool(self, size: int) -> KubeClients:
        """Clients of the same configuration on a connection pool of their own of ``size`` connections."""
        configuration = copy.copy(self.api_client.configuration)
        configuration.connection_pool_maxsize = size
        return KubeClients.from_api_client(kubernetes.client.ApiClient(configuration))

    def close(self) -> None:
        self.api_client.close()


def load_clients(kubeconfig: str | None) -> KubeClients:
    """Clients for ``kubeconfig``, or the in-cluster service account when it is None."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    return KubeClients.from_api_client(kubernetes.client.ApiClient(configuration))


async def call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one blocking client call in a worker thread."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def call_in(executor: Executor | None, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one blocking client call in a thread of ``executor`` (a pool of its own: as many calls at once as it
    has threads, whatever else waits on the loop's default pool); None: as :func:`call`."""
    if executor is None:
        return await asyncio.to_thread(function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(function, *args, **kwargs))


def sanitized(api_client: kubernetes.client.ApiClient, obj: Any) -> Any:
    """A client model object as the plain JSON-shaped dict the API sent (camelCase keys)."""
    return api_client.sanitize_for_serialization(obj)
