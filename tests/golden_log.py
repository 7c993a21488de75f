"""The golden log: a cluster's ``K8S`` and ``IPAM`` streams as release v0.1.0 wrote them, kept byte for byte in
``tests/fixtures/golden/``, with the state every later build must read back from them (``state.json``).

Written once by the release it is named after (``python -m tests.golden_log``), never again: a later build that
changes what an event looks like must read this log to the same state through its upcasters
(``tests/unit/test_golden_log.py``). The story covers every kind of decision: pools over two families and two
modes, dual-stack, a shared IP, a ``Local`` Service, a request out of every pool, a deletion, an L2
placement moved by a node's death, BGP advertisements with communities and local-pref, the configuration in
force with its parts, pool usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import (
    ConfigurationEvaluated,
    EventId,
    ObjectKind,
    ServicePort,
)
from schemas.events.base import Event
from schemas.events.codec import encode, read_envelope, wrap
from schemas.refusal import Refused
from services.common.subjects import StreamName, observed_subject
from services.ipam.decider import Decider, Outgoing
from tests.bgp_world import bgp_advertisement, bgp_peer, config_object, deleted
from tests.builders import pool, service
from tests.builders_l2 import endpoints, l2, node

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RELEASE = "v0.1.0"
#: The announcers live when the log ends (heard, not logged): what a replica taking over on it hears.
LIVE_AT_END = frozenset({"node-a", "node-b"})


@dataclass(frozen=True, slots=True)
class Line:
    """One message of the log: its stream, subject and body, as written."""

    stream: StreamName
    subject: str
    body: bytes

    def dump(self) -> str:
        return json.dumps({"stream": self.stream.value, "subject": self.subject, "body": self.body.decode()})


def read_log(path: Path = GOLDEN / f"{RELEASE}.jsonl") -> list[Line]:
    lines = []
    for text in path.read_text().splitlines():
        item = json.loads(text)
        lines.append(Line(StreamName(item["stream"]), item["subject"], item["body"].encode()))
    return lines


def read_state(path: Path = GOLDEN / f"{RELEASE}.state.json") -> dict[str, Any]:
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def state_of(decider: Decider) -> dict[str, Any]:
    """What the log means, field by field: what a later build must read back (not how the events are spelled,
    which upcasters may change)."""
    ledger = decider.ledger
    return {
        "allocations": {key: {"ips": list(a.ips), "pool": a.pool, "sharing_key": a.sharing_key}
                        for key, a in sorted(ledger.allocations.items())},
        "failures": {key: f.reason.value for key, f in sorted(ledger.failures.items())},
        "placements": {ip: {"node": p.decision.node, "epoch": p.epoch} for ip, p in sorted(ledger.placements.items())},
        "bgp": {ip: {"services": sorted(f"{s.namespace}/{s.name}" for s in d.services),
                     "nodes": sorted(d.nodes) if d.nodes else None,
                     "routes": sorted([r.advertisement, r.prefix, list(r.communities), r.local_pref] for r in d.routes)}
                for ip, d in sorted(ledger.bgp.items())},
        "usage": {name: {"ipv4": u.ipv4.model_dump(mode="json"), "ipv6": u.ipv6.model_dump(mode="json")}
                  for name, u in sorted(ledger.usage.items())},
        "in_force": ledger.in_force.generation,
        "configuration_valid": ledger.configuration.valid if ledger.configuration else None,
        "last_sequence": ledger.last_sequence,
    }


def fold(lines: Iterable[Line]) -> Decider:
    """A replica's state from the log: the decisions in order, then the world (as ``Replica.load`` reads them).
    Raises on a line this build cannot read: nothing of the golden log may be skipped."""
    decider = Decider()
    sequence = 0
    for line in lines:
        envelope = read_envelope(line.body)
        if isinstance(envelope, Refused):
            raise AssertionError(f"{line.stream.value} {line.subject}: {envelope}")
        if line.stream is StreamName.IPAM:
            sequence += 1
            decider.load_decision(envelope.event, sequence)
        else:
            decider.load_observation(envelope.event)
    return decider


def _story() -> Iterator[Event | frozenset[str]]:
    """The world as it happens; a frozenset is the announcers live from then on."""
    lan = pool("lan", "198.51.100.0/28", "2001:db8:1::/124")
    dmz = pool("dmz", "203.0.113.0/29", autoAssign=False)
    zone_b = {"matchLabels": {"zone": "b"}}
    names = {"communities": [{"name": "no-advertise", "value": "65535:65282"}]}
    yield from (lan, dmz, l2("dmz-l2", ipAddressPools=["dmz"]),
                bgp_peer("tor1", "10.0.0.1", my_asn=64512, peer_asn=64513),
                bgp_peer("tor2", "10.0.0.2", my_asn=64512, peer_asn=64513, nodeSelectors=[zone_b]),
                config_object("Community", "names", names),
                bgp_advertisement("lan-bgp", ipAddressPools=["lan"], communities=["no-advertise"], localPref=120))
    yield from (node("node-a", zone="a"), node("node-b", zone="b"), node("node-c", zone="b"))
    yield frozenset({"node-a", "node-b", "node-c"})
    dual: dict[str, Any] = {"ip_families": ("IPv4", "IPv6"), "ip_family_policy": "RequireDualStack",
            "cluster_ips": ("10.96.0.11", "fd00::11")}
    shared: dict[str, Any] = {"annotations": {"metallb.io/allow-shared-ip": "front"}}
    yield from (
        service("web", **dual), endpoints("web", "node-a", "node-b"),
        service("api", **shared), service("api-udp", ports=(ServicePort(protocol="UDP", port=53),), **shared),
        endpoints("api", "node-b"), endpoints("api-udp", "node-b"),
        service("local", external_traffic_policy="Local", annotations={"metallb.io/address-pool": "dmz"}),
        endpoints("local", "node-c"),
        service("edge", annotations={"metallb.io/address-pool": "dmz"}), endpoints("edge", "node-a", "node-c"),
        service("wanted", annotations={"metallb.io/loadBalancerIPs": "192.0.2.7"}),
        service("gone"), endpoints("gone", "node-a"),
    )
    yield deleted(ObjectKind.SERVICE, "gone")
    yield LIVE_AT_END  # node-c's announcer died: its L2 IPs move
    yield service("web", version="2", **dual)


def write(directory: Path = GOLDEN) -> None:
    """Decide the story with this build and keep both streams and the state read back from them (once: the log
    of a release is never written again)."""
    if (directory / f"{RELEASE}.jsonl").exists():
        raise SystemExit(f"the golden log of {RELEASE} exists: it is never written again")
    decider = Decider()
    k8s: list[Line] = []
    ipam: list[Line] = []
    active = False

    def appended(outgoing: list[Outgoing]) -> None:
        for item in outgoing:
            assert item.sequence == len(ipam) + 1
            body = encode(wrap(item.event, producer="ipam/golden", causation_id=item.causation_id))
            ipam.append(Line(StreamName.IPAM, item.subject, body))

    for step in _story():
        if isinstance(step, frozenset):
            if not active:
                decider.adopt()
                appended(decider.start_placing(step))
                active = True
            else:
                appended(decider.set_live_nodes(step))
            continue
        k8s.append(Line(StreamName.K8S, observed_subject(step), encode(wrap(step, producer="watcher/golden"))))
        if active:
            appended(decider.observe(step, cause=EventId(f"observed-{len(k8s)}")))
        else:
            decider.load_observation(step)
    appended(decider.report_usage())
    assert isinstance(decider.ledger.configuration, ConfigurationEvaluated)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [*ipam, *k8s]
    (directory / f"{RELEASE}.jsonl").write_text("".join(line.dump() + "\n" for line in lines))
    state = state_of(fold(lines))
    assert state == state_of(decider), "the log does not read back to the state that wrote it"
    (directory / f"{RELEASE}.state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write()
