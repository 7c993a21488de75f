"""The Kubernetes API stand-in fixture for the status writer tests."""

from tests.kubeapi.fixtures import kube_api

__all__ = ["kube_api"]
