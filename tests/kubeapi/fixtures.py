"""Pytest fixture: a fresh API stand-in per test, every thread joined afterwards.

Import it into a conftest: ``from tests.kubeapi.fixtures import kube_api  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kubeapi.handle import KubeApi

BOOKMARK_INTERVAL = 0.2


@pytest.fixture
def kube_api() -> Iterator[KubeApi]:
    with KubeApi(bookmark_interval=BOOKMARK_INTERVAL) as api:
        yield api
