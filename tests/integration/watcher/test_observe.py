"""The observe side against the API stand-in and a real nats-server."""

from __future__ import annotations

from schemas.events import ObjectKind, ServiceObserved
from services.common.bus import Bus
from services.common.subjects import k8s_subject
from tests.integration.watcher.helpers import observing, recording, service, stored, wait_stored
from tests.kubeapi import KubeApi


async def test_initial_list_then_a_change(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(service("web", **{"metallb.io/address-pool": "lan", "other.io/x": "y"}))
    async with recording(bus) as recorder, observing(bus, kube_api):
        services = await stored(bus, ObjectKind.SERVICE)
        web = services[k8s_subject(ObjectKind.SERVICE, "default", "web")]
        assert isinstance(web, ServiceObserved)
        assert web.annotations == {"metallb.io/address-pool": "lan"}
        obj = kube_api.get_object("services", "web", "default")
        assert obj is not None
        obj["metadata"]["annotations"]["metallb.io/address-pool"] = "wan"
        kube_api.put_object(obj)
        await wait_stored(
            bus, ObjectKind.SERVICE, "default", "web",
            lambda e: isinstance(e, ServiceObserved) and e.annotations.get("metallb.io/address-pool") == "wan",
            "the changed service",
        )
        assert len(recorder.on(k8s_subject(ObjectKind.SERVICE, "default", "web"))) == 2
