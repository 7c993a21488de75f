from collections.abc import Iterator

import pytest

from tests.kubeapi import KubeApi
from tests.kubeapi.fixtures import BOOKMARK_INTERVAL
from tests.kubeapi.shipped import WATCHER, running_as
from tests.secured_nats import admin_bus, secured_server

__all__ = ["admin_bus", "kube_api", "secured_server"]


@pytest.fixture
def kube_api() -> Iterator[KubeApi]:
    """The stand-in enforcing the shipped RBAC: the watcher runs as its own ServiceAccount."""
    with running_as(WATCHER, bookmark_interval=BOOKMARK_INTERVAL) as api:
        yield api
