"""What folding an observation into ipam's world says it touches."""

from __future__ import annotations

from schemas.events import ObjectRef
from services.ipam.core import service_key
from services.ipam.world import World
from tests.builders import service

WEB = service_key("default", "web")


def test_a_service_that_only_shows_its_addresses_shows_more_and_is_not_placed_again() -> None:
    world = World()
    first = world.apply(service("web", labels={"app": "web"}))
    assert first.placed_services == {WEB} and first.shows_more == frozenset()
    before = world.services[WEB]
    shown = world.apply(service("web", version="2", ingress_ips=("10.0.0.1",), labels={"app": "web"}))  # the
    # status writer's write
    assert shown.services == {WEB} and shown.placed_services == frozenset() and shown.shows_more == {WEB}
    assert world.services[WEB].ingress_ips == ("10.0.0.1",)
    assert world.services[WEB].labels is before.labels  # what did not change is shared with the value before
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
