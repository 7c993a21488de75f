from tests.kubeapi.fixtures import kube_api
from tests.secured_nats import admin_bus, secured_server

__all__ = ["admin_bus", "kube_api", "secured_server"]
