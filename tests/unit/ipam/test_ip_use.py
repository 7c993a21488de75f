"""An address's users and which of them holds each port, however the users come and go."""

from __future__ import annotations

import random

from services.ipam.core import ServiceKey
from services.ipam.core.service import Port, ShareKey
from services.ipam.core.sharing import IPUse

SERVICES = [ServiceKey(f"shop/{name}") for name in ("web", "api", "db")]
PORTS = [Port("TCP", 80), Port("TCP", 443), Port("UDP", 53)]


class EveryPortAtOnce:
    """The rule spelled plainly: each add says who holds its ports, each removal drops the ports still its own."""

    def __init__(self) -> None:
        self.users: dict[ServiceKey, frozenset[Port]] = {}
        self.ports: dict[Port, ServiceKey] = {}

    def add(self, service: ServiceKey, ports: frozenset[Port]) -> None:
        self.users[service] = ports
        self.ports.update(dict.fromkeys(ports, service))

    def remove(self, service: ServiceKey) -> None:
        for port in self.users.pop(service, frozenset()):
            if self.ports.get(port) == service:
                del self.ports[port]


def test_an_address_with_one_user_holds_its_ports_for_it() -> None:
    use = IPUse(ShareKey("key", "backend"))
    use.add(SERVICES[0], frozenset(PORTS[:2]))
    assert use.ports == {PORTS[0]: SERVICES[0], PORTS[1]: SERVICES[0]}
    use.add(SERVICES[1], frozenset(PORTS[2:]))
    assert use.ports == {PORTS[0]: SERVICES[0], PORTS[1]: SERVICES[0], PORTS[2]: SERVICES[1]}
    use.remove(SERVICES[0])
    assert use.ports == {PORTS[2]: SERVICES[1]} and use.others(SERVICES[2]) == [SERVICES[1]]


def test_users_coming_and_going_in_any_order_leave_the_ports_the_rule_says() -> None:
    """Whether or not the ports were read in between (they are made only when needed)."""
    chance = random.Random(7)
    for _ in range(300):
        use, rule = IPUse(ShareKey("key", "backend")), EveryPortAtOnce()
        for _ in range(chance.randrange(1, 8)):
            service = chance.choice(SERVICES)
            if chance.random() < 0.6:
                ports = frozenset(chance.sample(PORTS, chance.randrange(0, 3)))
                use.add(service, ports)
                rule.add(service, ports)
            else:
                use.remove(service)
                rule.remove(service)
            if chance.random() < 0.3:
                assert use.ports == rule.ports
            assert use.users == rule.users and len(use) == len(rule.users)
        assert use.ports == rule.ports
