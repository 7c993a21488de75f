"""An in-process Kubernetes API server stand-in for tests, driven through the official client unchanged.

    with KubeApi(bookmark_interval=0.2) as api, api.api_client() as client_:
        v1 = kubernetes.client.CoreV1Api(client_)          # or: api.kubeconfig(path) for --kubeconfig PATH
        v1.create_namespaced_service("default", {...})
        api.drop_watches()                                 # cut every open watch stream mid-flight
        api.compact()                                      # older resourceVersions now give 410 Expired
        api.fail_next("patch", "services/status", 409)     # the next status patch of a Service conflicts
        api.issue_token(namespace="ns", service_account="sa", pod="p", audiences=["x"])  # for a TokenReview

    with KubeApi(rbac=Policy.from_objects(objs), clients_as=ServiceAccount("ns", "sa")) as api:  # RBAC on
        api.api_client(); api.kubeconfig(path)             # the account's token (admin=True: the admin's)
        api.authorizations(ServiceAccount("ns", "sa"))     # what RBAC decided for it

What the server keeps: one global resourceVersion; uid, creationTimestamp, generation (spec changes only),
generateName; 409 AlreadyExists and 409 Conflict (stale metadata.resourceVersion on PUT or in a patch body);
the ``/status`` subresource; merge, strategic-merge (as merge) and JSON patches; finalizers; label and field
selectors on list and watch; list paging (limit/continue) and resourceVersionMatch=Exact; watches replaying
from a resourceVersion out of a bounded history, with bookmarks and timeoutSeconds; TokenReviews of the
ServiceAccount tokens it issued (``tests.kubeapi.tokens``); RBAC when asked (``tests.kubeapi.rbac``: bearer
tokens mapped to service accounts, 401 for a token it never issued, the API server's 403 otherwise; the shipped
policy and accounts in ``tests.kubeapi.shipped``).

How a too-old resourceVersion surfaces: the watch answers 200 and one ``ERROR`` event holding a Status
(code 410, reason Expired); ``kubernetes.watch.Watch().stream`` raises ``ApiException(status=410)`` (at once
with ``timeout_seconds``, after one silent retry without). A list with ``resourceVersionMatch=Exact`` or an
old ``continue`` token answers HTTP 410. An abrupt ``drop_watches()`` surfaces as
``urllib3.exceptions.ProtocolError`` out of ``Watch.stream``; ``drop_watches(abrupt=False)`` ends the stream
cleanly and ``Watch.stream`` re-watches from its last resourceVersion by itself.
"""

from tests.kubeapi.errors import ApiError
from tests.kubeapi.handle import KubeApi
from tests.kubeapi.resources import RESOURCES, Resource, ResourceTable
from tests.kubeapi.store import Change, EventType, Request

__all__ = ["RESOURCES", "ApiError", "Change", "EventType", "KubeApi", "Request", "Resource", "ResourceTable"]
