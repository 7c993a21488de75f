"""The RBAC that ships, rendered from the production overlay, and the service accounts it binds.

    with running_as(WATCHER) as api:    # RBAC enforced; every client it hands out is the watcher's
        ...                             # on leaving: an AssertionError naming any request RBAC refused it
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from tests.kubeapi.handle import KubeApi
from tests.kubeapi.rbac import Policy, ServiceAccount
from tests.unit.deploy.manifests import rendered

NAMESPACE = "metallb-system"
WATCHER = ServiceAccount(NAMESPACE, "metalbus-watcher")
#: The NATS pods' account, which the authenticator beside each server speaks for.
AUTHENTICATOR = ServiceAccount(NAMESPACE, "metalbus-nats")
ANNOUNCER = ServiceAccount(NAMESPACE, "metalbus-announcer")


@cache
def shipped_policy() -> Policy:
    """Every Role, ClusterRole and binding of ``k8s/`` as the prod overlay renders it."""
    return Policy.from_objects(rendered("prod"))


def shipped_api(account: ServiceAccount, **options: Any) -> KubeApi:
    """A stand-in enforcing the shipped RBAC, whose clients are ``account``'s (``options``: ``KubeApi``'s)."""
    return KubeApi(rbac=shipped_policy(), clients_as=account, **options)


@contextmanager
def running_as(account: ServiceAccount, **options: Any) -> Iterator[KubeApi]:
    """``shipped_api`` started; afterwards, any request of ``account``'s that RBAC refused fails the test (a
    component may survive a 403 it logs and retries, so passing checks alone would not show a rule missing)."""
    with shipped_api(account, **options) as api:
        yield api
        refused = [d.request for d in api.authorizations(account) if not d.allowed]
        assert not refused, f"the shipped RBAC refused {account.name}: {refused}"
