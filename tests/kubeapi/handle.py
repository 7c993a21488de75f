"""``KubeApi``: start and stop the stand-in, and the test controls that bypass HTTP."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import kubernetes

from tests.kubeapi.errors import ApiError
from tests.kubeapi.limits import WriteLimit
from tests.kubeapi.rbac import Decision, Enforcer, Policy, ServiceAccount
from tests.kubeapi.resources import RESOURCES, Resource, ResourceTable
from tests.kubeapi.server import ADMIN_TOKEN, KubeHTTPServer
from tests.kubeapi.store import Change, Request, Store
from tests.kubeapi.tokens import API_AUDIENCE, TokenAuthority
from tests.kubeapi.watching import End

Obj = dict[str, Any]

PRESET_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
#: How long the service account tokens behind the clients it hands out live: a test's whole run.
CLIENT_TOKEN_SECONDS = 24 * 3600


class KubeApi:
    """A Kubernetes API server stand-in on 127.0.0.1 and a random port.

    Resources are named as ``"services"``, ``"leases"``, ``"ipaddresspools"``, or qualified by group
    (``"events.events.k8s.io"``, ``"bgppeers.metallb.io"``); ``"services/status"`` names a subresource
    where one is accepted.

    ``rbac`` turns RBAC on (``tests.kubeapi.rbac``): each request is then allowed only as far as the policy
    lets the one asking. The clients and kubeconfigs it hands out speak for ``clients_as`` (a service
    account) unless told otherwise, else for its administrator, whom RBAC lets do anything.
    """

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        history_limit: int = 100_000,
        require_namespaces: bool = False,
        preset_namespaces: tuple[str, ...] = PRESET_NAMESPACES,
        resources: tuple[Resource, ...] = RESOURCES,
        rbac: Policy | None = None,
        clients_as: ServiceAccount | None = None,
    ) -> None:
        self.table = ResourceTable(resources)
        self.store = Store(self.table, history_limit=history_limit, require_namespaces=require_namespaces)
        self.tokens = TokenAuthority(self.store)
        self.rbac = Enforcer(rbac) if rbac is not None else None
        self.clients_as = clients_as
        self._client_tokens: dict[ServiceAccount, str] = {}
        self._bookmark_interval = bookmark_interval
        self._preset = preset_namespaces
        self._server: KubeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KubeApi:
        if self._server is not None:
            raise RuntimeError("already started")
        for ns in self._preset:
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self._server = KubeHTTPServer(
            self.store, tokens=self.tokens, bookmark_interval=self._bookmark_interval, rbac=self.rbac
        )
        self._thread = threading.Thread(target=self._server.serve, name="kubeapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every watch, cut every connection and join every thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stop_accepting()
        thread.join()
        self.store.close()
        server.cut_connections()
        server.server_close()
        server.hangups.close()
        self._server = self._thread = None

    def __enter__(self) -> KubeApi:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}" if isinstance(host, str) else f"http://{host.decode()}:{port}"

    # ------------------------------------------------------------------ clients
    def bearer_token(self, *, service_account: ServiceAccount | None = None, admin: bool = False) -> str:
        """The token a client speaks with: ``service_account``'s, else ``clients_as``'s, else (or when
        ``admin``) the administrator's."""
        account = None if admin else (service_account or self.clients_as)
        if account is None:
            return ADMIN_TOKEN
        if account not in self._client_tokens:
            self._client_tokens[account] = self.tokens.issue(
                namespace=account.namespace, service_account=account.name, expiration_seconds=CLIENT_TOKEN_SECONDS
            )
        return self._client_tokens[account]

    def configuration(
        self, *, service_account: ServiceAccount | None = None, admin: bool = False
    ) -> kubernetes.client.Configuration:
        config = kubernetes.client.Configuration()
        config.host = self.url
        config.api_key = {"authorization": f"Bearer {self.bearer_token(service_account=service_account, admin=admin)}"}
        return config

    def api_client(
        self, *, service_account: ServiceAccount | None = None, admin: bool = False
    ) -> kubernetes.client.ApiClient:
        """A fresh client (whose: ``bearer_token``); close it (or use it as a context manager) when done."""
        return kubernetes.client.ApiClient(self.configuration(service_account=service_account, admin=admin))

    def kubeconfig(
        self,
        path: str | Path,
        *,
        namespace: str = "default",
        service_account: ServiceAccount | None = None,
        admin: bool = False,
    ) -> Path:
        """Write a kubeconfig for ``--kubeconfig PATH`` (JSON, which kubeconfig readers accept as YAML);
        its user's token is ``bearer_token``'s."""
        path = Path(path)
        token = self.bearer_token(service_account=service_account, admin=admin)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubeapi", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeapi", "user": {"token": token}}],
            "contexts": [
                {"name": "kubeapi", "context": {"cluster": "kubeapi", "user": "kubeapi", "namespace": namespace}}
            ],
            "current-context": "kubeapi",
        }
        path.write_text(json.dumps(doc, indent=2))
        return path

    # ------------------------------------------------------------------ controls
    def authorizations(self, service_account: ServiceAccount | None = None) -> list[Decision]:
        """RBAC's decisions so far (of one service account's requests, if named); none without RBAC."""
        if self.rbac is None:
            return []
        return self.rbac.decisions(service_account.user if service_account else None)

    @property
    def resource_version(self) -> str:
        return str(self.store.rv)

    def resource(self, name: str) -> Resource:
        return self.table.by_name(name)

    def compact(self) -> str:
        """Drop the history: lists and watches from any older resourceVersion now get 410 Expired."""
        return str(self.store.compact())

    def drop_watches(self, *, abrupt: bool = True, resource: str | None = None) -> int:
        """End every open watch stream (of one resource, if named); returns how many.

        ``abrupt=True`` cuts the connection mid-stream (the client sees a broken chunked response);
        ``abrupt=False`` ends each stream cleanly (``Watch.stream`` then re-watches from its last version).
        """
        return self._stop_watches(End.ABORTED if abrupt else End.DROPPED, resource)

    def expire_watches(self, resource: str | None = None) -> int:
        """Send every open watch stream a 410 Expired ERROR event and end it, as a server whose watch cache
        fell behind does; returns how many. (``compact()`` then ``drop_watches(abrupt=False)`` instead makes
        the client's own re-watch meet the 410.)"""
        return self._stop_watches(End.EXPIRED, resource)

    def _stop_watches(self, how: End, resource: str | None) -> int:
        storage = self.table.by_name(resource).storage if resource else None
        with self.store.cond:
            watches = [w for w in self.store.watches if storage is None or w.res.storage == storage]
            for session in watches:
                session.stop = how
            self.store.cond.notify_all()
        return len(watches)

    @property
    def open_watches(self) -> int:
        with self.store.cond:
            return len(self.store.watches)

    def wait_for_watches(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` watch streams are open (False on timeout)."""
        return self.store.wait_for(lambda: len(self.store.watches) >= count, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` holds, re-checked under the store lock after every write and watch
        change (False on timeout)."""
        return self.store.wait_for(predicate, timeout)

    def fail_next(
        self, verb: str, resource: str, status: int = 500, *, times: int = 1, message: str | None = None
    ) -> None:
        """Answer the next ``times`` requests of ``verb`` on ``resource`` with an error ``status``.

        ``verb`` is one of get, list, watch, create, update, patch, delete; ``resource`` may end in
        ``/status`` to target the subresource (``"services/status"``).
        """
        if verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}; one of {sorted(VERBS)}")
        name, _, subresource = resource.partition("/")
        res = self.table.by_name(name)
        if status == 409:
            from tests.kubeapi import errors

            error = errors.conflict(res.plural, res.group, "injected", message)
        else:
            error = ApiError(status, message or f"injected failure of {verb} {resource}")
        self.store.fail_next(verb, res, subresource or None, error, times)

    def limit_writes(self, per_second: float | None, *, burst: int = 10, retry_after: int = 1) -> WriteLimit | None:
        """Answer writes (create, update, patch, delete) past ``per_second`` (``burst`` saved) with 429 and
        ``Retry-After: retry_after``, as API Priority and Fairness does; None lifts the limit. The limit
        counts what it admitted and refused."""
        if self._server is None:
            raise RuntimeError("not started")
        limit = WriteLimit(per_second, burst=burst, retry_after=retry_after) if per_second is not None else None
        self._server.write_limit = limit
        return limit

    def requests(
        self, verb: str | None = None, resource: str | None = None, *, subresource: str | None = None
    ) -> list[Request]:
        """The requests served so far (the last 100 000), optionally of one verb, resource and subresource."""
        storage = self.table.by_name(resource).storage if resource else None
        return [
            r
            for r in self.store.requests()
            if (verb is None or r.verb == verb)
            and (storage is None or r.resource == storage)
            and (subresource is None or r.subresource == subresource)
        ]

    def issue_token(self, *, namespace: str, service_account: str, pod: str | None = None,
                    audiences: Sequence[str] = (API_AUDIENCE,), expiration_seconds: int = 3600,
                    issued_at: float | None = None, pod_node_info: bool = True) -> str:
        """A token of ``namespace/service_account``, as a TokenRequest (or a projected volume) gives it.

        ``pod`` (stored, in ``namespace``) binds it: the token dies with that pod, and names the pod's
        node unless ``pod_node_info`` is False (clusters before Kubernetes 1.30). ``issued_at`` (epoch
        seconds) dates it in the past, for an expired token. Reviews: :mod:`tests.kubeapi.tokens`.
        """
        return self.tokens.issue(namespace=namespace, service_account=service_account, pod=pod,
                                 audiences=audiences, expiration_seconds=expiration_seconds,
                                 issued_at=issued_at, pod_node_info=pod_node_info)

    # ------------------------------------------------------------------ direct object access
    def put_object(self, obj: Obj) -> Obj:
        """Create or replace ``obj`` (with its status) as is, like a write by another client."""
        res = self.table.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if res is None:
            raise KeyError(f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")
        return self.store.put(res, obj)

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> Obj | None:
        """Delete at once (finalizers ignored); the final object, or None when absent."""
        res = self.table.by_name(resource)
        return self.store.remove(res, self._namespace(res, namespace), name)

    def get_object(self, resource: str, name: str, namespace: str | None = None) -> Obj | None:
        res = self.table.by_name(resource)
        return self.store.peek(res, self._namespace(res, namespace), name)

    def history(
        self, resource: str | None = None, name: str | None = None, namespace: str | None = None
    ) -> list[Change]:
        """The kept changes (oldest first), optionally of one resource, object or namespace."""
        storage = self.table.by_name(resource).storage if resource else None
        return [
            dataclasses.replace(c, obj=copy.deepcopy(c.obj), prev=copy.deepcopy(c.prev))
            for c in self.store.history(storage, namespace, name)
        ]

    @staticmethod
    def _namespace(res: Resource, namespace: str | None) -> str | None:
        return (namespace or "default") if res.namespaced else None
