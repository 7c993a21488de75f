"""An in-process Kubernetes API server stand-in for tests, driven through the official client."""

from tests.kubeapi.errors import ApiError
from tests.kubeapi.handle import KubeApi
from tests.kubeapi.resources import RESOURCES, Resource, ResourceTable
from tests.kubeapi.store import Change, EventType, Request

__all__ = ["RESOURCES", "ApiError", "Change", "EventType", "KubeApi", "Request", "Resource", "ResourceTable"]
