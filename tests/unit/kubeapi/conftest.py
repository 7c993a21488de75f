from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.kubeapi import KubeApi
from tests.kubeapi.fixtures import kube_api

__all__ = ["api_client", "core", "custom", "kube_api"]


@pytest.fixture
def api_client(kube_api: KubeApi) -> Iterator[client.ApiClient]:
    with kube_api.api_client() as api:
        yield api


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)
