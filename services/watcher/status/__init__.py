"""Status out: the IPAM and ANNOUNCE streams shown in Kubernetes (Service status and annotation,
Events, ServiceL2Status / ServiceBGPStatus, IPAddressPool status, ConfigurationState).

- :func:`run_status_writer` — run while leader; returns soon after ``stopping`` is set.
- :func:`warn_strict_arp` — check a kube-proxy ConfigMap observation and warn at once.
- :mod:`~services.watcher.status.desired` — the pure fold from events to desired Kubernetes state.
"""

from services.watcher.status.strictarp import STRICT_ARP_FIX, strict_arp_missing, warn_strict_arp
from services.watcher.status.writer import FEEDS, StatusWriter, StatusWriterSettings, run_status_writer

__all__ = [
    "FEEDS",
    "STRICT_ARP_FIX",
    "StatusWriter",
    "StatusWriterSettings",
    "run_status_writer",
    "strict_arp_missing",
    "warn_strict_arp",
]
