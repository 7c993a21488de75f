"""A nats-server of each test's own, with the least-privilege accounts."""

from tests.secured_nats import admin_bus, secured_server

__all__ = ["admin_bus", "secured_server"]
