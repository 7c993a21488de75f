from tests.integration.watcher.conftest import kube_api

__all__ = ["kube_api"]
