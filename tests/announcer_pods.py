"""Announcer pods in the Kubernetes API stand-in, and the tokens their projected volume holds.

    pod = schedule_announcer(kube_api, node="worker-1")         # the DaemonSet's pod on worker-1
    token = projected_token(kube_api, pod)                      # /var/run/secrets/metalbus/nats/token
"""

from __future__ import annotations

from collections.abc import Sequence

from services.authenticator.kubernetes_tokens import TOKEN_AUDIENCE, AnnouncerAccount
from tests.kubeapi import KubeApi

#: The announcers' ServiceAccount as the manifests ship it (the authenticator's default).
ANNOUNCERS = AnnouncerAccount("metallb-system", "metalbus-announcer")


def schedule_announcer(api: KubeApi, *, node: str, account: AnnouncerAccount = ANNOUNCERS) -> str:
    """A running announcer pod of ``account`` on ``node`` (and the Node); its name."""
    if api.get_object("nodes", node) is None:
        api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    name = f"{account.service_account}-{node}"
    api.put_object({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": account.namespace,
                                 "labels": {"app.kubernetes.io/name": "metalbus-announcer"}},
                    "spec": {"nodeName": node, "serviceAccountName": account.service_account,
                             "containers": [{"name": "announcer", "image": "metalbus:0.1.0"}]},
                    "status": {"phase": "Running"}})
    return name


def projected_token(api: KubeApi, pod: str, *, account: AnnouncerAccount = ANNOUNCERS,
                    audiences: Sequence[str] = (TOKEN_AUDIENCE,), pod_node_info: bool = True,
                    issued_at: float | None = None) -> str:
    """The token the kubelet projects into ``pod`` (audience ``metalbus-nats``, an hour)."""
    return api.issue_token(namespace=account.namespace, service_account=account.service_account, pod=pod,
                           audiences=audiences, pod_node_info=pod_node_info, issued_at=issued_at)
