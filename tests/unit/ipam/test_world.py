"""What folding an observation into ipam's world says it touches."""

from __future__ import annotations

from schemas.events import ObjectRef
from services.ipam.core import service_key
from services.ipam.world import World
from tests.builders import service

WEB = service_key("default", "web")


def test_a_service_that_only_shows_its_addresses_is_decided_again_but_not_placed_again() -> None:
    world = World()
    assert world.apply(service("web")).placed_services == {WEB}
    shown = world.apply(service("web", version="2", ingress_ips=("10.0.0.1",)))  # the status writer's write
    assert shown.services == {WEB} and shown.placed_services == frozenset()
    assert world.services[WEB].ingress_ips == ("10.0.0.1",)
    local = world.apply(service("web", version="3", ingress_ips=("10.0.0.1",), external_traffic_policy="Local"))
    assert local.placed_services == {WEB}  # a placement input changed
    annotated = world.apply(service("web", version="4", ingress_ips=("10.0.0.1",), external_traffic_policy="Local",
                                    annotations={"metallb.io/address-pool": "lan"}))
    assert annotated.placed_services == {WEB}
    made_again = service("web", version="5", ingress_ips=("10.0.0.1",), external_traffic_policy="Local",
                         annotations={"metallb.io/address-pool": "lan"})
    made_again = made_again.model_copy(update={"ref": ObjectRef(namespace="default", name="web", uid="another",
                                                                resource_version="5")})
    assert world.apply(made_again).placed_services == {WEB}  # deleted and made again under its name
