"""Where a VRF or interface session runs: what the host's links say about it, and the VRF's next hops."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from schemas.metallb import BGPPeer
from schemas.metallb.rules import NodeFacts
from services.announcer.agents.bgp_plan import Configuration
from services.announcer.agents.bgp_sessions import session_spec_for
from services.announcer.bgp import session_link
from services.announcer.bgp.peer_session import BfdEndpoints, PeerSession, SessionSpec
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.session_link import HostProblem, device_problem, vrf_next_hops
from services.announcer.bgp.speaker import SpeakerConfig
from services.announcer.l2.interfaces import InterfaceFacts
from services.announcer.l2.links import AddressFacts
from tests.waiting import async_wait_until

LINKS = [
    InterfaceFacts(name="eth0", index=2, mac=b"\x02" * 6, up=True),  # the main table's
    InterfaceFacts(name="red", index=3, mac=b"", up=True, kind="vrf"),
    InterfaceFacts(name="eth1", index=4, mac=b"\x04" * 6, up=True, master=3),
    InterfaceFacts(name="eth2", index=5, mac=b"\x05" * 6, up=True, master=3),
    InterfaceFacts(name="br0", index=6, mac=b"\x06" * 6, up=True, kind="bridge"),
]


def address(index: int, text: str, *, universe: bool = True) -> AddressFacts:
    return AddressFacts(index, ipaddress.ip_address(text), 64, universe)


@pytest.mark.parametrize(
    ("vrf", "interface", "expected"),
    [
        ("red", "", None),
        ("", "eth0", None),
        ("red", "eth1", None),
        ("blue", "", (HostProblem.VRF_MISSING, "VRF 'blue' does not exist on this node")),
        ("br0", "", (HostProblem.NOT_A_VRF, "'br0' is a bridge device, not a VRF")),
        ("eth0", "", (HostProblem.NOT_A_VRF, "'eth0' is a physical device, not a VRF")),
        ("", "eth9", (HostProblem.INTERFACE_MISSING, "interface 'eth9' does not exist on this node")),
        ("red", "eth0", (HostProblem.INTERFACE_NOT_IN_VRF, "interface 'eth0' is not in VRF 'red'")),
    ],
)
def test_what_keeps_a_session_from_its_device(
    vrf: str, interface: str, expected: tuple[HostProblem, str] | None
) -> None:
    problem = device_problem(LINKS, vrf=vrf, interface=interface)
    assert (None if problem is None else (problem.problem, problem.message)) == expected


def test_next_hops_are_the_vrfs_own_global_addresses() -> None:
    addresses = [
        address(2, "10.99.0.2"),  # main table: never a VRF session's next hop
        address(2, "fd99::2"),
        address(5, "10.88.1.2"),
        address(4, "fe80::4", universe=False),
        address(4, "fd88::2"),
        address(4, "10.88.0.2"),
    ]
    assert vrf_next_hops(LINKS, addresses, vrf="red") == (
        ipaddress.IPv4Address("10.88.0.2"),  # the first enslaved interface's first
        ipaddress.IPv6Address("fd88::2"),
    )
    assert vrf_next_hops(LINKS, addresses, vrf="blue") == (None, None)


def test_an_interface_peer_is_shown_by_its_interface_until_found_on_the_link() -> None:
    peer = BGPPeer.model_validate({
        "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"myASN": 64512, "dynamicASN": "external", "interface": "eth0"},
    })  # fmt: skip
    spec = session_spec_for(peer, node=NodeFacts(name="n", addresses=("10.0.0.2",)), password=None,
                            configuration=Configuration())  # fmt: skip
    assert isinstance(spec, SessionSpec) and spec.interface == "eth0"
    assert (spec.speaker.session.next_hop_v4, spec.speaker.session.next_hop_v6) == (None, None)  # the link's own
    session = PeerSession(name="p", ref="ns/p", spec=spec, endpoints=BfdEndpoints(), on_state=lambda *_: None)
    assert session.shown_address == "eth0"
    session._config = replace(spec.speaker, peer_address=ipaddress.IPv6Address("fe80::1"))  # as the link found it
    assert session.shown_address == "fe80::1%eth0"


async def test_a_session_waiting_for_its_interface_starts_with_the_routes_of_the_moment() -> None:
    peer = BGPPeer.model_validate({
        "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"myASN": 64512, "peerASN": 64513, "interface": "nosuch0", "connectTime": "1s"},
    })  # fmt: skip
    spec = session_spec_for(peer, node=NodeFacts(name="n"), password=None, configuration=Configuration())
    assert isinstance(spec, SessionSpec)
    states: list[str] = []
    session = PeerSession(name="p", ref="ns/p", spec=spec, endpoints=BfdEndpoints(),
                          on_state=lambda _s, state, reason: states.append(f"{state.value} {reason}"))  # fmt: skip
    first, later = ipaddress.ip_network("198.51.100.7/32"), ipaddress.ip_network("198.51.100.8/32")
    session.start({first: Route()})
    assert states == ["Idle InterfaceMissing: interface 'nosuch0' does not exist on this node"]
    session.set_routes({later: Route()})  # the plan moved on while the session waited
    session._on_link_ready(replace(spec.speaker, peer_address=ipaddress.IPv6Address("::1")))  # as if found
    assert session._speaker is not None and dict(session._speaker.session.desired) == {later: Route()}
    await session.stop()


async def test_a_check_that_fails_is_logged_and_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[list[InterfaceFacts]] = []

    def refused_once() -> list[InterfaceFacts]:
        answers.append([])
        if len(answers) == 1:
            raise RuntimeError("netlink said no")
        return []  # no VRF at all

    monkeypatch.setattr(session_link, "dump_links", refused_once)
    monkeypatch.setattr(session_link, "RECHECK_EVERY", 0.01)
    waits: list[str] = []
    speaker = SpeakerConfig(session=SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address(
        "10.0.0.1")), peer_address=ipaddress.IPv4Address("10.0.0.2"), device="red")  # fmt: skip
    link = session_link.SessionLink(speaker, vrf="red", interface="", on_ready=lambda _: None,
                                 on_waiting=lambda why: waits.append(str(why)))  # fmt: skip
    link.start()
    try:
        await async_wait_until(lambda: bool(waits), timeout=5, what="the check made again")
    finally:
        link.close()
    assert waits == ["VrfMissing: VRF 'red' does not exist on this node"] and len(answers) >= 2
