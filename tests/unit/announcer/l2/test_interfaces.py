"""Which interfaces answer: a table that reads as the rules."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from services.announcer.l2.interfaces import (
    ExclusionPolicy,
    Ineligible,
    InterfaceFacts,
    answerable_interfaces,
    eligible_interfaces,
    ineligibility,
    ips_by_interface,
)

MAC = bytes.fromhex("020000000001")


def nic(
    name: str,
    index: int = 2,
    *,
    mac: bytes = MAC,
    up: bool = True,
    carrier: bool = True,
    kind: str | None = None,
    master: int | None = None,
) -> InterfaceFacts:
    return InterfaceFacts(name=name, index=index, mac=mac, up=up, carrier=carrier, kind=kind, master=master)


@pytest.mark.parametrize(
    ("facts", "selected", "reason"),
    [
        (nic("eth0"), (), None),  # an up physical NIC answers
        (nic("eth0", up=False), (), Ineligible.DOWN),
        (nic("eth0", carrier=False), (), Ineligible.NO_CARRIER),
        (nic("eth0", master=5), (), Ineligible.ENSLAVED),  # a bridge or bond port: its master answers
        (nic("br0", kind="bridge"), (), None),  # ... like this bridge
        (nic("lo", mac=b""), (), Ineligible.NO_MAC),
        (nic("tun0", mac=b""), (), Ineligible.NO_MAC),
        (nic("veth1234"), (), Ineligible.EXCLUDED_NAME),
        (nic("docker0"), (), Ineligible.EXCLUDED_NAME),
        (nic("cni0"), (), Ineligible.EXCLUDED_NAME),
        (nic("kube-ipvs0", kind="dummy"), (), Ineligible.EXCLUDED_NAME),
        (nic("cali12ab"), (), Ineligible.EXCLUDED_NAME),
        (nic("flannel.1", kind="vxlan"), (), Ineligible.EXCLUDED_NAME),
        (nic("cilium_host"), (), Ineligible.EXCLUDED_NAME),
        (nic("vxlan.calico"), (), Ineligible.EXCLUDED_NAME),
        (nic("mydummy", kind="dummy"), (), Ineligible.EXCLUDED_KIND),
        (nic("eth0.100", kind="vlan"), (), None),  # a VLAN interface answers
        # with an L2Advertisement interfaces list only the listed ones answer, patterns notwithstanding
        (nic("eth1"), ("eth0",), Ineligible.NOT_SELECTED),
        (nic("veth-lab"), ("veth-lab",), None),
        (nic("eth0", up=False), ("eth0",), Ineligible.DOWN),
        (nic("eth0", master=5), ("eth0",), Ineligible.ENSLAVED),
    ],
)
def test_eligibility(facts: InterfaceFacts, selected: tuple[str, ...], reason: Ineligible | None) -> None:
    assert ineligibility(facts, selected=selected) is reason


def test_exclusion_is_configurable() -> None:
    policy = ExclusionPolicy(names=("mgmt*",), kinds=frozenset())
    assert ineligibility(nic("mgmt0"), policy=policy) is Ineligible.EXCLUDED_NAME
    assert ineligibility(nic("veth0"), policy=policy) is None
    assert ineligibility(nic("d0", kind="dummy"), policy=policy) is None


def test_eligible_interfaces_sorted_by_index() -> None:
    links = [nic("eth1", 3), nic("veth9", 4), nic("eth0", 2), nic("lo", 1, mac=b"")]
    assert [f.name for f in eligible_interfaces(links)] == ["eth0", "eth1"]


def test_ips_by_interface() -> None:
    links = [nic("eth0", 2), nic("eth1", 3), nic("veth9", 4)]
    v4, v6, only1 = IPv4Address("10.0.0.100"), IPv6Address("fd00::100"), IPv4Address("10.0.1.100")
    desired = {v4: (), v6: ("eth0",), only1: ("eth1", "missing0")}
    assert ips_by_interface(desired, links) == {
        "eth0": frozenset({v4, v6}),
        "eth1": frozenset({v4, only1}),
    }
    assert ips_by_interface({}, links) == {}


def test_a_data_plane_report_lists_what_answers_and_what_answers_only_when_named() -> None:
    mac = MAC
    links = [
        InterfaceFacts("lo", 1, b"\x00" * 6, up=True),
        InterfaceFacts("eth0", 2, mac, up=True),
        InterfaceFacts("eth1", 3, mac, up=True, carrier=False),  # cable out
        InterfaceFacts("dummy0", 4, mac, up=True, kind="dummy"),  # excluded, may be named
        InterfaceFacts("cali1234", 5, mac, up=True, kind="veth"),  # a pod's: never listed
        InterfaceFacts("bond0", 6, mac, up=True, kind="bond"),
        InterfaceFacts("eth2", 7, mac, up=True, master=6),  # enslaved to bond0
    ]
    assert answerable_interfaces(links) == (("eth0", "bond0"), ("dummy0",))
