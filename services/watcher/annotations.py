"""The annotations metalbus itself writes on a Service: its output, never an input to a decision.

The status writer sets ``metallb.io/ip-allocated-from-pool`` (MetalLB's) and removes the deprecated form; the
observe side leaves both out of what it publishes, so the writer's own annotation patch, which Kubernetes
shows as a change of the Service, changes nothing on the bus.
"""

from __future__ import annotations

POOL_ANNOTATION = "metallb.io/ip-allocated-from-pool"
DEPRECATED_POOL_ANNOTATION = "metallb.universe.tf/ip-allocated-from-pool"
#: Every annotation on a Service that metalbus writes.
WRITTEN_ANNOTATIONS = frozenset({POOL_ANNOTATION, DEPRECATED_POOL_ANNOTATION})
