"""The seed's first installation step, checked: kube-proxy in IPVS mode needs ``strictARP: true``.

Without it every node answers ARP for every LoadBalancer IP and layer2 mode cannot work. The warning
goes out three ways, each with the exact command from MetalLB's installation guide: a Warning Event on
the ConfigurationState, a ConfigurationState condition, and a log line.
"""

from __future__ import annotations

import logging

from schemas.events import KubeProxyObserved
from services.watcher.kube import KubeClients
from services.watcher.status.configstate import (
    STRICT_ARP_FIX,
    config_state_target,
    strict_arp_message,
    strict_arp_missing,
)
from services.watcher.status.converge import Converger
from services.watcher.status.desired import EventType, KubeEvent, Reason, config_state_key
from services.watcher.status.objects import ObjectApi
from services.watcher.status.recorder import EventRecorder

log = logging.getLogger(__name__)

__all__ = ["STRICT_ARP_FIX", "log_strict_arp", "strict_arp_missing", "warn_strict_arp"]


def log_strict_arp(kube_proxy: KubeProxyObserved) -> None:
    log.warning("kube-proxy strictARP missing mode=%s strict_arp=%s fix=%r", kube_proxy.mode,
                kube_proxy.strict_arp, STRICT_ARP_FIX)


async def warn_strict_arp(clients: KubeClients, namespace: str, kube_proxy: KubeProxyObserved) -> bool:
    """Check ``kube_proxy`` and show the verdict at once: the ConfigurationState condition always,
    and when strictARP is missing in IPVS mode a Warning Event and a log line. True when it warned.

    The status writer does the same from the K8S stream; this is for callers that see the ConfigMap
    themselves. Raises a :class:`~services.common.errors.MetalbusError` when the API refuses.
    """
    api = ObjectApi(clients)
    await Converger(api, namespace=namespace).converge(config_state_target(None, kube_proxy))
    if not strict_arp_missing(kube_proxy):
        return False
    log_strict_arp(kube_proxy)
    event = KubeEvent(config_state_key(namespace), "", EventType.WARNING, Reason.STRICT_ARP_REQUIRED,
                      strict_arp_message())
    await EventRecorder(api).emit(event)
    return True
