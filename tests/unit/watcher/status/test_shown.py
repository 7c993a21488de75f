"""The status writer's compact views of the Services it has seen."""

from __future__ import annotations

from typing import Any

from services.watcher.annotations import DEPRECATED_POOL_ANNOTATION, POOL_ANNOTATION
from services.watcher.status.converge import service_changes
from services.watcher.status.desired import ServiceTarget
from services.watcher.status.shown import ShownServices


def service(rv: str, ingress: list[dict[str, Any]], *, kind: str = "LoadBalancer",
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web", "uid": "u", "resourceVersion": rv,
                         "annotations": {"team": "blue", **(annotations or {})}},
            "spec": {"type": kind, "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": ingress}}}


def test_a_view_answers_as_the_object_would() -> None:
    shown = ShownServices()
    obj = service("7", [{"ip": "10.0.0.5", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]}],
                  annotations={POOL_ANNOTATION: "lan", DEPRECATED_POOL_ANNOTATION: "old"})
    shown.record(obj)
    view = shown.get("default", "web")
    assert view is not None and view.resource_version == "7" and view.uid == "u"
    target = ServiceTarget("default", "web", "u", ("10.0.0.5",), "lan")
    as_object = view.as_object("default", "web")
    assert service_changes(target, as_object) == service_changes(target, obj)
    assert "team" not in as_object["metadata"]["annotations"]  # nothing kept that the writer does not read


def test_an_older_version_does_not_replace_a_newer_one() -> None:
    shown = ShownServices()
    shown.record(service("12", [{"ip": "10.0.0.5"}]))
    shown.record(service("9", []))
    view = shown.get("default", "web")
    assert view is not None and view.resource_version == "12"
    shown.record(service("13", []))
    view = shown.get("default", "web")
    assert view is not None and view.ingress == ()


def test_only_services_with_something_to_write_are_remembered() -> None:
    shown = ShownServices()
    shown.record(service("3", [], kind="ClusterIP"))
    assert shown.get("default", "web") is None
    shown.record(service("4", [{"ip": "10.0.0.5"}], kind="ClusterIP"))  # its address is still to be cleared
    assert shown.get("default", "web") is not None
    shown.record(service("5", [], kind="ClusterIP"))
    assert len(shown) == 0
    shown.record(service("6", []))
    shown.forget("default", "web")
    assert shown.get("default", "web") is None
