"""HTTP routing: the Kubernetes REST paths the official client calls, served from a ``Store``.

``/api/v1/...`` and ``/apis/{group}/{version}/...``; namespaced and cluster-scoped paths, cross-namespace
lists, the ``/status`` subresource, watches streamed as chunked JSON lines, and token reviews. With a
policy (an ``Enforcer``), every request but discovery is authenticated by its bearer token (``ADMIN_TOKEN``,
or a service account token the stand-in issued; any other is 401) and authorized by RBAC (403 when not
allowed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kubeapi.errors import ApiError
from tests.kubeapi.hangups import HangupMonitor
from tests.kubeapi.limits import WriteLimit
from tests.kubeapi.patching import PatchError, PatchType
from tests.kubeapi.rbac import ADMIN, ANONYMOUS, Attributes, Enforcer, User
from tests.kubeapi.resources import Resource, ResourceTable
from tests.kubeapi.selectors import Filter, SelectorError, parse_field_selector, parse_label_selector
from tests.kubeapi.store import Request, Store
from tests.kubeapi.tokens import REVIEW_GROUP, REVIEW_PATH, REVIEW_STORAGE, TokenAuthority
from tests.kubeapi.watching import End, WatchSession

log = logging.getLogger(__name__)

#: The bearer token of the stand-in's administrator (allowed everything, RBAC or not).
ADMIN_TOKEN = "kubeapi-test"


@dataclass(frozen=True)
class Route:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


class KubeHTTPServer(ThreadingHTTPServer):
    """Threads are joined on close; every open connection is tracked so stop() can cut idle keep-alives."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 256  # many clients connecting at once must not meet SYN retries

    def __init__(
        self, store: Store, *, tokens: TokenAuthority, bookmark_interval: float, rbac: Enforcer | None = None
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = store
        self.tokens = tokens
        self.rbac = rbac
        self.bookmark_interval = bookmark_interval
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopping = False
        self.hangups = HangupMonitor(store)
        #: writes past this rate are answered 429 with Retry-After (``KubeApi.limit_writes``); None: no limit
        self.write_limit: WriteLimit | None = None

    def serve(self) -> None:
        """Accept until ``stop_accepting``; a blocking accept, no poll interval."""
        while True:
            try:
                request, client_address = self.get_request()
            except OSError:
                return
            if self._stopping:
                request.close()
                return
            self.process_request(request, client_address)

    def stop_accepting(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets its connection is no error of the server's: log, don't print."""
        log.debug("kubeapi: connection from %s ended with an error", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _verb(method: str, route: Route, watch: bool) -> str:
    if method == "GET":
        if route.name is None:
            return "watch" if watch else "list"
        return "get"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def _exact_name(selector: str) -> str | None:
    """The name a field selector requires (``metadata.name=x`` or ``==x`` among its terms), as RBAC sees it."""
    for term in selector.split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if key.strip() == "metadata.name" and op:
            return value.strip()
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    _recorded = False  # this request is already in the store's request log
    disable_nagle_algorithm = True
    server: KubeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ plumbing
    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            content_type = self.headers.get("Content-Type", "")
            if "yaml" in content_type:
                import yaml

                return yaml.safe_load(raw)
            raise ApiError(400, "the request body is not valid JSON") from None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route: Route | None = None
        verb, code = method.lower(), 200
        reply: tuple[int, Any] | None = None
        headers: dict[str, str] = {}
        self._recorded = False
        try:
            body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
            user = self._user()
            if self._discovery(method, url.path) or self._token_review(method, url.path, body, user):
                return
            route = self._route(url.path)
            watch = query.get("watch") in ("true", "1")
            verb = _verb(method, route, watch)
            self._authorize(user, verb, route, query)
            limit = self.server.write_limit
            if limit is not None and not limit.admit(verb):
                raise ApiError(429, "too many requests, please try again later",
                               headers={"Retry-After": str(limit.retry_after)})
            fault = self.server.store.take_fault(verb, route.resource, route.subresource)
            if fault is not None and not (verb == "watch" and fault.code == 410):
                raise fault
            if method == "GET" and route.name is None and watch:
                self._watch(route, query, fail_with=fault)
            else:
                code, result = self._handle(method, route, query, body)
                reply = (code, result)
        except ApiError as exc:
            code = exc.code
            reply = (exc.code, exc.status())
            headers = exc.headers
        except SelectorError as exc:
            code = 400
            reply = (400, ApiError(400, str(exc)).status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the stand-in: answer 500 rather than hang the client
            log.exception("kubeapi: %s %s failed", method, self.path)
            code = 500
            reply = (500, ApiError(500, f"kubeapi internal error: {exc!r}").status())
        finally:
            # Recorded before the answer leaves, so a client that got its answer finds it in the log.
            if route is not None and not self._recorded:
                self._record(verb, route, code)
        if reply is not None:
            try:
                self._send_json(*reply, headers)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _user(self) -> User | None:
        """Who is asking, when RBAC is enforced (None when it is not): 401 for a token nobody issued."""
        if self.server.rbac is None:
            return None
        header = self.headers.get("Authorization")
        if header is None:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token == ADMIN_TOKEN:
            return ADMIN
        known = self.server.tokens.user(token) if scheme.lower() == "bearer" else None
        if known is None:
            raise ApiError(401, "Unauthorized")
        return User(known["username"], tuple(known["groups"]))

    def _authorize(self, user: User | None, verb: str, route: Route, query: dict[str, str]) -> None:
        if user is None or self.server.rbac is None:
            return
        name = route.name
        if name is None and verb in ("list", "watch"):  # the API server reads a name out of the field selector
            name = _exact_name(query.get("fieldSelector") or "")
        res = route.resource
        self.server.rbac.authorize(user, Attributes(verb, res.group, res.plural, route.namespace, name,
                                                    route.subresource))

    def _record(self, verb: str, route: Route, code: int) -> None:
        self.server.store.record(
            Request(verb, route.resource.storage, route.namespace, route.name, route.subresource, code)
        )

    def _route(self, path: str) -> Route:
        table: ResourceTable = self.server.store.table
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, f"the server could not find the requested resource ({path})")
        if len(rest) >= 3 and rest[0] == "namespaces":
            res = table.by_path(group, version, rest[2])
            if res is not None and res.namespaced:
                return self._route_tail(res, rest[1], rest[3:], path)
        if rest:
            res = table.by_path(group, version, rest[0])
            if res is not None:
                if res.namespaced and len(rest) > 1:
                    raise ApiError(404, f"the server could not find the requested resource ({path})")
                return self._route_tail(res, None, rest[1:], path)
        raise ApiError(404, f"the server could not find the requested resource ({path})")

    @staticmethod
    def _route_tail(res: Resource, namespace: str | None, tail: list[str], path: str) -> Route:
        if len(tail) > 2 or (len(tail) == 2 and (tail[1] != "status" or not res.status)):
            raise ApiError(404, f"the server could not find the requested resource ({path})")
        return Route(res, namespace, tail[0] if tail else None, tail[1] if len(tail) == 2 else None)

    def _filter(self, route: Route, query: dict[str, str]) -> Filter:
        return Filter(
            namespace=route.namespace,
            labels=parse_label_selector(query.get("labelSelector")),
            fields=parse_field_selector(query.get("fieldSelector"), route.resource.field_keys()),
        )

    # ------------------------------------------------------------------ verbs
    def _handle(self, method: str, route: Route, query: dict[str, str], body: Any) -> tuple[int, Any]:
        store, res = self.server.store, route.resource
        if route.name is None:
            if method == "GET":
                return 200, self._list(route, query)
            if method == "POST" and (route.namespace is not None or not res.namespaced):
                self._require_object(body)
                return 201, store.create(res, route.namespace, body)
            raise ApiError(405, f"{method} is not supported on the collection {res.plural}")
        if method == "GET":
            return 200, store.get(res, route.namespace, route.name)
        if method == "PUT":
            self._require_object(body)
            return 200, store.update(res, route.namespace, route.name, body, route.subresource)
        if method == "PATCH":
            try:
                patch_type = PatchType.from_content_type(self.headers.get("Content-Type", ""))
            except PatchError as exc:
                raise ApiError(415, str(exc)) from None
            return 200, store.patch(res, route.namespace, route.name, patch_type, body, route.subresource)
        if method == "DELETE" and route.subresource is None:
            pre = (body or {}).get("preconditions") or {}
            obj, gone = store.delete(
                res,
                route.namespace,
                route.name,
                precondition_rv=pre.get("resourceVersion"),
                precondition_uid=pre.get("uid"),
            )
            if not gone or res.plural == "services" or res.custom:
                return (202 if not gone else 200), obj
            meta = obj["metadata"]
            details = {"name": meta["name"], "group": res.group, "kind": res.plural, "uid": meta.get("uid")}
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        raise ApiError(405, f"{method} is not supported here")

    @staticmethod
    def _require_object(body: Any) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be an object")

    def _list(self, route: Route, query: dict[str, str]) -> Any:
        res = route.resource
        limit = query.get("limit")
        items, at, token = self.server.store.list(
            res,
            self._filter(route, query),
            resource_version=query.get("resourceVersion"),
            match=query.get("resourceVersionMatch"),
            limit=int(limit) if limit and limit.isdigit() else None,
            continue_token=query.get("continue") or None,
        )
        metadata: dict[str, Any] = {"resourceVersion": str(at)}
        if token:
            metadata["continue"] = token
        return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata, "items": items}

    # ------------------------------------------------------------------ watch
    def _watch(self, route: Route, query: dict[str, str], *, fail_with: ApiError | None = None) -> None:
        """Stream events; an injected 410 arrives as the ERROR event a real server sends."""
        timeout = query.get("timeoutSeconds")
        session = WatchSession(
            self.server.store,
            route.resource,
            self._filter(route, query),
            resource_version=query.get("resourceVersion"),
            bookmarks=query.get("allowWatchBookmarks") in ("true", "1"),
            bookmark_interval=self.server.bookmark_interval,
            timeout=float(timeout) if timeout else None,
            fail_with=fail_with,
        )
        # Answered 200 before the stream starts: logged now, so a client that has seen the stream (even
        # just its ERROR event) finds the request in the log.
        self._record("watch", route, 200)
        self._recorded = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.server.hangups.add(self.connection, session)
        try:
            for event in session.stream():
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
        except OSError:
            session.end = End.CLIENT_GONE
        finally:
            self.server.hangups.remove(self.connection)
        if session.end is End.ABORTED:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if session.end is not End.CLIENT_GONE:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                session.end = End.CLIENT_GONE
        self.close_connection = session.end in (End.CLOSED, End.CLIENT_GONE)

    # ------------------------------------------------------------------ token reviews
    def _token_review(self, method: str, path: str, body: Any, user: User | None) -> bool:
        """``POST .../tokenreviews``: answered by the token authority, stored nowhere, logged as a create."""
        if path.rstrip("/") != REVIEW_PATH:
            return False
        try:
            if method != "POST":
                raise ApiError(405, f"{method} is not supported on tokenreviews")
            if user is not None and self.server.rbac is not None:
                self.server.rbac.authorize(user, Attributes("create", REVIEW_GROUP, "tokenreviews"))
            code, answer = 201, self.server.tokens.review(body)
        except ApiError as exc:
            code, answer = exc.code, exc.status()
        self.server.store.record(Request("create", REVIEW_STORAGE, None, None, None, code))
        self._send_json(code, answer)
        return True

    # ------------------------------------------------------------------ discovery
    def _discovery(self, method: str, path: str) -> bool:
        if method != "GET":
            return False
        table: ResourceTable = self.server.store.table
        path = path.rstrip("/")
        groups = table.groups()
        if path == "/version":
            self._send_json(
                200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0-kubeapi", "platform": "linux/amd64"}
            )
        elif path == "/api":
            self._send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        elif path == "/apis":
            items = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in groups.items()
                if g
            ]
            self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": items})
        else:
            parts = [p for p in path.split("/") if p]
            if parts == ["api", "v1"]:
                group, version = "", "v1"
            elif len(parts) == 3 and parts[0] == "apis":
                group, version = parts[1], parts[2]
            else:
                return False
            rows = [r for r in table.rows if r.group == group and r.version == version]
            if not rows:
                return False
            resources = []
            for r in rows:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                resources.append({"name": r.plural, "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})
                if r.status:
                    resources.append(
                        {
                            "name": f"{r.plural}/status",
                            "namespaced": r.namespaced,
                            "kind": r.kind,
                            "verbs": ["get", "patch", "update"],
                        }
                    )
            gv = f"{group}/{version}" if group else version
            self._send_json(
                200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
            )
        return True
