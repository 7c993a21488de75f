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
    chance, asking = random.Random(7), random.Random(8)
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
            asked, besides = frozenset(asking.sample(PORTS, asking.randrange(0, 3))), asking.choice(SERVICES)
            assert use.holding_any(asked, besides=besides) == sorted(
                {rule.ports[p] for p in asked if p in rule.ports and rule.ports[p] != besides})
            if chance.random() < 0.3:
                assert use.ports == rule.ports
            assert use.users == rule.users and len(use) == len(rule.users)
        assert use.ports == rule.ports


def test_a_service_alone_on_its_address_is_checked_without_a_table_of_its_ports() -> None:
    """Every Service holding an address alone checks it again at each decision: asking which other Service
    holds a port answers from its ports, and makes no dictionary that the address would keep."""
    use = IPUse(ShareKey(None, ""))
    use.add(SERVICES[0], frozenset(PORTS[:2]))
    assert use.holding_any(PORTS[:1], besides=SERVICES[0]) == []
    assert use.holding_any(PORTS[:1], besides=SERVICES[1]) == [SERVICES[0]]
    assert use.holding_any(PORTS[2:], besides=SERVICES[1]) == []
    assert use._ports is None
