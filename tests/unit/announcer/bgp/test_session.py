"""Two session cores wired together in memory, on a fake clock: the RFC 4271 FSM as a story."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST, GracefulRestart
from services.announcer.bgp.events import (
    AdvertisementsSent,
    Closed,
    CloseReason,
    EndOfRibReceived,
    Established,
    Event,
    RoutesReceived,
    State,
    StateChanged,
)
from services.announcer.bgp.message import MessageReader, MessageType
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.notification import ErrorCode, Notification, OpenSubcode
from services.announcer.bgp.open import Open
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import DynamicAsn, ReceivedRoutes, Session, SessionConfig
from services.announcer.bgp.update import Update

NODE = ipaddress.ip_address("192.0.2.10")
ROUTER = ipaddress.ip_address("192.0.2.1")
NODE_V6 = ipaddress.IPv6Address("2001:db8::10")

A_CONFIG = SessionConfig(
    local_as=64512,
    peer_as=64513,
    router_id=ipaddress.IPv4Address("192.0.2.10"),
    hold_time=90,
    next_hop_v6=NODE_V6,
)
B_CONFIG = SessionConfig(  # the router: it decodes what it receives, to show what the announcer sent
    local_as=64513,
    peer_as=64512,
    router_id=ipaddress.IPv4Address("192.0.2.1"),
    hold_time=30,
    received_routes=ReceivedRoutes.DECODED,
)


def net(text: str) -> Prefix:
    return ipaddress.ip_network(text)


@dataclass
class Pair:
    """``a`` is the announcer, ``b`` plays the router. ``now`` is the shared fake clock."""

    a: Session
    b: Session
    now: float = 1000.0
    events_a: list[Event] = field(default_factory=list)
    events_b: list[Event] = field(default_factory=list)
    wire_a_to_b: list[bytes] = field(default_factory=list)

    @classmethod
    def connected(cls, a: SessionConfig = A_CONFIG, b: SessionConfig = B_CONFIG) -> Pair:
        pair = cls(Session(a), Session(b))
        pair.a.start(pair.now)
        pair.b.start(pair.now, passive=True)
        pair.a.connection_made(pair.now, local_address=NODE)
        pair.b.connection_made(pair.now, local_address=ROUTER)
        return pair

    @classmethod
    def established(cls, a: SessionConfig = A_CONFIG, b: SessionConfig = B_CONFIG) -> Pair:
        pair = cls.connected(a, b)
        pair.pump()
        assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
        return pair

    def reconnect(self) -> None:
        """The connection is lost, then made again (not pumped yet: nothing sent)."""
        self.a.connection_lost(self.now)
        self.b.connection_lost(self.now)
        self.wire_a_to_b.clear()
        self.a.start(self.now)
        self.b.start(self.now, passive=True)
        self.a.connection_made(self.now, local_address=NODE)
        self.b.connection_made(self.now, local_address=ROUTER)

    def pump(self) -> None:
        """Move bytes both ways until both cores have nothing more to say."""
        for _ in range(100):
            ab, ba = self.a.data_to_send(), self.b.data_to_send()
            if ab:
                self.wire_a_to_b.append(ab)
                self.b.receive(ab, self.now)
            if ba:
                self.a.receive(ba, self.now)
            self._drain()
            if not ab and not ba:
                return
        raise AssertionError("the cores never went quiet")

    def _drain(self) -> None:
        while (event := self.a.next_event()) is not None:
            self.events_a.append(event)
        while (event := self.b.next_event()) is not None:
            self.events_b.append(event)

    def advance(self, seconds: float) -> None:
        """Let time pass, firing timers as the cores ask, while the wire stays up (both sides pumped)."""
        target = self.now + seconds
        while True:
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None and t <= target]
            if not timers:
                break
            self.now = min(timers)
            for core in (self.a, self.b):
                timer = core.get_timer()
                if timer is not None and timer <= self.now:
                    core.handle_timer(self.now)
            self.pump()
        self.now = target

    def updates_to_b(self) -> list[Update]:
        reader = MessageReader()
        for chunk in self.wire_a_to_b:
            reader.feed(chunk)
        assert self.b.negotiated is not None
        return [Update.decode(body, self.b.negotiated) for kind, body in reader if kind is MessageType.UPDATE]

    def received_by_b(self) -> dict[Prefix, tuple[Any, ...]]:
        """Fold b's RoutesReceived events into the table b would hold."""
        table: dict[Prefix, tuple[Any, ...]] = {}
        for event in self.events_b:
            if isinstance(event, RoutesReceived):
                for _, prefix in event.withdrawn:
                    table.pop(prefix, None)
                for _, prefix in event.announced:
                    table[prefix] = event.attributes
        return table


def attrs_dict(attributes: tuple[Any, ...]) -> dict[str, Any]:
    return dict(Update(attributes=attributes).to_dict()["attributes"])


def test_establishes_through_the_rfc_states() -> None:
    pair = Pair.established()
    states = [(e.old, e.new) for e in pair.events_a if isinstance(e, StateChanged)]
    assert states == [
        (State.IDLE, State.CONNECT),
        (State.CONNECT, State.OPEN_SENT),
        (State.OPEN_SENT, State.OPEN_CONFIRM),
        (State.OPEN_CONFIRM, State.ESTABLISHED),
    ]
    established = next(e for e in pair.events_a if isinstance(e, Established))
    assert established.negotiated.hold_time == 30  # the smaller of 90 and 30
    assert established.negotiated.keepalive_time == 10
    assert established.negotiated.four_octet_as
    assert established.negotiated.families == {IPV4_UNICAST, IPV6_UNICAST}
    assert not established.negotiated.ibgp
    # an empty initial table is still closed with End-of-RIB for each family
    assert {e.family for e in pair.events_b if isinstance(e, EndOfRibReceived)} == {IPV4_UNICAST, IPV6_UNICAST}


def test_keepalives_hold_the_session_and_silence_expires_it() -> None:
    pair = Pair.established()
    pair.advance(300)  # keepalives every 10 s keep both hold timers fed
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    # now b goes silent: a's hold timer (30 s) expires
    deadline = pair.a.get_timer()
    assert deadline is not None
    pair.now += 30
    while (timer := pair.a.get_timer()) is not None and timer <= pair.now:
        pair.a.handle_timer(pair.now)
    pair._drain()
    assert pair.a.closed
    closed = [e for e in pair.events_a if isinstance(e, Closed)]
    assert closed[-1].reason is CloseReason.HOLD_TIMER_EXPIRED
    sent = pair.a.data_to_send()
    assert sent.endswith(Notification(ErrorCode.HOLD_TIMER_EXPIRED).encode())


def test_hold_time_zero_disables_keepalives() -> None:
    pair = Pair.established(replace(A_CONFIG, hold_time=0), B_CONFIG)
    assert pair.a.get_timer() is None and pair.b.get_timer() is None
    pair.advance(100_000)
    assert pair.a.state is State.ESTABLISHED


def test_configured_keepalive_time() -> None:
    pair = Pair.established(replace(A_CONFIG, keepalive_time=4), B_CONFIG)
    assert pair.a.negotiated is not None and pair.a.negotiated.keepalive_time == 4


def test_set_advertisements_converges_the_peer() -> None:
    pair = Pair.established()
    base = Route(communities=(0xFDE80064,), large_communities=((64512, 1, 2),))
    pair.a.set_advertisements(
        {
            net("198.51.100.5/32"): base,
            net("198.51.100.6/32"): base,
            net("203.0.113.0/24"): Route(),
            net("2001:db8:1::5/128"): base,
        },
        pair.now,
    )
    pair.pump()
    table = pair.received_by_b()
    assert set(table) == {
        net("198.51.100.5/32"),
        net("198.51.100.6/32"),
        net("203.0.113.0/24"),
        net("2001:db8:1::5/128"),
    }
    assert attrs_dict(table[net("198.51.100.5/32")]) == {
        "ORIGIN": "IGP",
        "AS_PATH": [{"type": "AS_SEQUENCE", "asns": [64512]}],
        "NEXT_HOP": "192.0.2.10",  # the connection's own address
        "COMMUNITIES": ["65000:100"],
        "LARGE_COMMUNITIES": ["64512:1:2"],
    }
    v6 = attrs_dict(table[net("2001:db8:1::5/128")])
    assert v6["MP_REACH_NLRI"]["next_hops"] == ["2001:db8::10"]
    assert "LOCAL_PREF" not in v6  # eBGP: no local-pref

    # the two /32 with equal attributes travelled in one UPDATE
    updates = pair.updates_to_b()
    assert [u.nlri for u in updates if u.nlri] == [
        (net("203.0.113.0/24"),),
        (net("198.51.100.5/32"), net("198.51.100.6/32")),
    ]

    # the same set again sends nothing
    before = len(pair.wire_a_to_b)
    pair.a.set_advertisements(
        {
            net("198.51.100.5/32"): base,
            net("198.51.100.6/32"): base,
            net("203.0.113.0/24"): Route(),
            net("2001:db8:1::5/128"): base,
        },
        pair.now,
    )
    pair.pump()
    assert len(pair.wire_a_to_b) == before

    # drop one, change one: one withdraw, one re-announce
    pair.a.set_advertisements(
        {net("198.51.100.5/32"): base, net("203.0.113.0/24"): Route(communities=(1,)), net("2001:db8:1::5/128"): base},
        pair.now,
    )
    pair.pump()
    table = pair.received_by_b()
    assert net("198.51.100.6/32") not in table
    assert attrs_dict(table[net("203.0.113.0/24")])["COMMUNITIES"] == ["0:1"]
    sent = [e for e in pair.events_a if isinstance(e, AdvertisementsSent)]
    assert (sent[-1].announced, sent[-1].withdrawn) == (1, 1)

    # the empty set withdraws everything, IPv6 through MP_UNREACH_NLRI
    pair.a.set_advertisements({}, pair.now)
    pair.pump()
    assert pair.received_by_b() == {}


def test_ibgp_sends_local_pref_and_an_empty_as_path() -> None:
    a = replace(A_CONFIG, peer_as=64512)
    b = replace(B_CONFIG, local_as=64512, peer_as=64512)
    pair = Pair.established(a, b)
    pair.a.set_advertisements({net("198.51.100.5/32"): Route(local_pref=300), net("198.51.100.9/32"): Route()})
    pair.pump()
    table = pair.received_by_b()
    assert attrs_dict(table[net("198.51.100.5/32")])["LOCAL_PREF"] == 300
    assert attrs_dict(table[net("198.51.100.9/32")])["LOCAL_PREF"] == 100
    assert attrs_dict(table[net("198.51.100.9/32")])["AS_PATH"] == []


def test_routes_set_before_establishment_go_out_before_end_of_rib() -> None:
    pair = Pair.connected()
    pair.a.set_advertisements({net("198.51.100.5/32"): Route()})
    pair.pump()
    updates = pair.updates_to_b()
    assert updates[0].nlri == (net("198.51.100.5/32"),)
    assert {u.end_of_rib() for u in updates[1:]} == {IPV4_UNICAST, IPV6_UNICAST}


def test_many_prefixes_are_packed_into_4096_octet_updates() -> None:
    pair = Pair.established()
    routes = {ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24"): Route() for i in range(3000)}
    routes |= {ipaddress.ip_network(f"2001:db8:{i:x}::/48"): Route() for i in range(1000)}
    pair.a.set_advertisements(routes)
    pair.pump()
    assert len(pair.received_by_b()) == 4000
    sizes = [len(chunk) for chunk in pair.wire_a_to_b]
    assert max(sizes) > 4096  # many messages were written in one go
    updates = pair.updates_to_b()
    # 3000 prefixes of 4 octets of IPv4 NLRI need 3 UPDATEs, 1000 of 7 octets of IPv6 NLRI need 2
    assert len([u for u in updates if u.announced()]) == 5


def test_unroutable_prefixes_are_reported_not_sent() -> None:
    pair = Pair.established(replace(A_CONFIG, next_hop_v6=None), B_CONFIG)
    pair.a.set_advertisements({net("2001:db8::/64"): Route(), net("198.51.100.5/32"): Route()})
    pair.pump()
    assert pair.a.unroutable == [net("2001:db8::/64")]
    assert set(pair.received_by_b()) == {net("198.51.100.5/32")}


def test_wrong_peer_as_is_refused_with_bad_peer_as() -> None:
    pair = Pair.connected(replace(A_CONFIG, peer_as=65000), B_CONFIG)
    pair.pump()
    closed = next(e for e in pair.events_a if isinstance(e, Closed))
    assert closed.reason is CloseReason.PROTOCOL_ERROR
    assert closed.notification is not None
    assert (closed.notification.code, closed.notification.subcode) == (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)
    got = next(e for e in pair.events_b if isinstance(e, Closed))
    assert got.reason is CloseReason.NOTIFICATION_RECEIVED


def test_dynamic_asn() -> None:
    assert Pair.established(replace(A_CONFIG, peer_as=None, dynamic_asn=DynamicAsn.EXTERNAL)).a.negotiated
    pair = Pair.connected(replace(A_CONFIG, peer_as=None, dynamic_asn=DynamicAsn.INTERNAL))
    pair.pump()
    assert pair.a.state is State.IDLE


def test_four_octet_as_against_a_two_octet_speaker() -> None:
    """A 4-octet AS puts AS_TRANS in the OPEN's 2-octet field and its real AS in the capability."""
    a = replace(A_CONFIG, local_as=4_200_000_001)
    pair = Pair.connected(a, replace(B_CONFIG, peer_as=4_200_000_001))
    pair.pump()
    assert pair.b.peer_open is not None and pair.b.peer_open.my_as == 23456
    assert pair.b.peer_open.asn == 4_200_000_001
    assert isinstance(pair.b.peer_open, Open)


def test_same_identifier_refused_on_ibgp_only() -> None:
    same = ipaddress.IPv4Address("192.0.2.10")
    pair = Pair.connected(replace(A_CONFIG, peer_as=64512), replace(B_CONFIG, local_as=64512, router_id=same))
    pair.pump()
    assert pair.a.state is State.IDLE
    closed = next(e for e in pair.events_a if isinstance(e, Closed))
    assert closed.notification is not None and closed.notification.subcode == OpenSubcode.BAD_BGP_IDENTIFIER
    assert Pair.established(A_CONFIG, replace(B_CONFIG, router_id=same)).a.state is State.ESTABLISHED


def test_graceful_restart_capability_is_offered_and_seen() -> None:
    a = replace(A_CONFIG, graceful_restart=True, restart_time=90, restarting=True)
    pair = Pair.established(a, replace(B_CONFIG, graceful_restart=True))
    assert pair.b.negotiated is not None
    assert pair.b.negotiated.peer_graceful_restart == GracefulRestart(
        90, True, False, ((IPV4_UNICAST, True), (IPV6_UNICAST, True))
    )


def test_stop_sends_cease_unless_keeping_routes_for_graceful_restart() -> None:
    pair = Pair.established()
    pair.a.stop(pair.now, message="maintenance")
    pair.pump()
    closed = next(e for e in pair.events_b if isinstance(e, Closed))
    assert closed.notification is not None and closed.notification.shutdown_message() == "maintenance"

    pair = Pair.established()
    pair.a.stop(pair.now, notify=False)
    assert pair.a.data_to_send() == b""
    assert pair.a.state is State.IDLE


def test_reconnect_resends_the_whole_table() -> None:
    pair = Pair.established()
    pair.a.set_advertisements({net("198.51.100.5/32"): Route()})
    pair.pump()
    pair.reconnect()
    pair.pump()
    assert net("198.51.100.5/32") in {p for u in pair.updates_to_b() for _, p in u.announced()}


def test_route_refresh_replays_the_family() -> None:
    pair = Pair.established()
    pair.a.set_advertisements({net("198.51.100.5/32"): Route(), net("2001:db8::/64"): Route()})
    pair.pump()
    pair.wire_a_to_b.clear()
    pair.b.request_route_refresh(IPV6_UNICAST)
    pair.pump()
    assert [p for u in pair.updates_to_b() for _, p in u.announced()] == [net("2001:db8::/64")]


def test_unexpected_message_is_an_fsm_error() -> None:
    pair = Pair.established()
    second_open = Open.build(asn=64513, hold_time=30, bgp_identifier=ipaddress.IPv4Address("192.0.2.1"))
    pair.a.receive(second_open.encode(), pair.now)
    pair._drain()
    closed = next(e for e in pair.events_a if isinstance(e, Closed))
    assert closed.notification is not None and closed.notification.code == ErrorCode.FSM


def test_as_path_on_a_two_octet_session_carries_as4_path() -> None:
    from services.announcer.bgp.aspath import As4Path, AsPath
    from services.announcer.bgp.capabilities import Negotiated
    from services.announcer.bgp.rib import path_attributes

    negotiated = Negotiated(four_octet_as=False, local_as=4_200_000_001)
    attributes = path_attributes(Route(), negotiated)
    path = next(a for a in attributes if isinstance(a, AsPath))
    assert path.encode_value(negotiated) == bytes.fromhex("0201 5ba0")  # AS_TRANS
    assert As4Path(path.segments) in attributes


def test_counters_for_metrics() -> None:
    pair = Pair.established()
    sent_before = pair.a.updates_sent  # the End-of-RIB markers
    pair.a.set_advertisements({net("198.51.100.5/32"): Route(), net("2001:db8::/64"): Route()}, pair.now)
    pair.pump()
    assert pair.a.advertised == 2
    assert pair.a.updates_sent == sent_before + 2


def test_the_restart_bit_is_only_sent_until_the_first_establishment() -> None:
    a = replace(A_CONFIG, graceful_restart=True, restarting=True)
    pair = Pair.established(a, replace(B_CONFIG, graceful_restart=True))
    assert pair.b.negotiated is not None and pair.b.negotiated.peer_graceful_restart is not None
    assert pair.b.negotiated.peer_graceful_restart.restarting
    pair.a.connection_lost(pair.now)
    pair.b.connection_lost(pair.now)
    pair.a.start(pair.now)
    pair.b.start(pair.now, passive=True)
    pair.a.connection_made(pair.now, local_address=NODE)
    pair.b.connection_made(pair.now, local_address=ROUTER)
    pair.pump()
    assert pair.b.negotiated is not None and pair.b.negotiated.peer_graceful_restart is not None
    assert not pair.b.negotiated.peer_graceful_restart.restarting


def test_a_route_whose_attributes_cannot_fit_an_update_is_unroutable() -> None:
    pair = Pair.established()
    crowded = Route(communities=tuple(range(1000)))
    pair.a.set_advertisements({net("198.51.100.5/32"): crowded, net("198.51.100.6/32"): Route()}, pair.now)
    pair.pump()
    assert pair.a.unroutable == [net("198.51.100.5/32")]
    assert set(pair.received_by_b()) == {net("198.51.100.6/32")}


def test_routes_refuse_values_the_wire_cannot_carry() -> None:
    import pytest

    with pytest.raises(ValueError):
        Route(local_pref=1 << 32)
    with pytest.raises(ValueError):
        Route(large_communities=((1, 2, -3),))
