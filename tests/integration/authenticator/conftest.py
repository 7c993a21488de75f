from collections.abc import Iterator

import pytest

from tests.kubeapi import KubeApi
from tests.kubeapi.fixtures import BOOKMARK_INTERVAL
from tests.kubeapi.shipped import AUTHENTICATOR, running_as

__all__ = ["kube_api"]


@pytest.fixture
def kube_api() -> Iterator[KubeApi]:
    """The stand-in enforcing the shipped RBAC: the authenticator reviews as the NATS pods' ServiceAccount."""
    with running_as(AUTHENTICATOR, bookmark_interval=BOOKMARK_INTERVAL) as api:
        yield api
