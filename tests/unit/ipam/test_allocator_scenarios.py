"""Scenario tables for the allocator. Each table is one story on one Allocator; every expectation is
what MetalLB (internal/allocator, controller/service.go) answers in the same situation, unless a
row's comment says why metalbus differs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from schemas.events import AllocationFailureReason as R
from services.ipam.core import AllocationReason as A
from services.ipam.core import PoolSpec
from services.ipam.core import ReplaceCause as C
from tests.unit.ipam.scenario import Adopts, Gets, Refuses, Releases, Row, SetsPools, Usage, play, pool, svc

SCENARIOS: dict[str, tuple[Sequence[PoolSpec], Sequence[Row]]] = {
    "lowest free address, reuse after release, exhaustion": (
        [pool("lan", "10.0.0.0/30")],
        [
            Gets(svc("a"), ("10.0.0.0",), "lan", A.AUTO_ASSIGNED),
            Gets(svc("b"), ("10.0.0.1",), "lan"),
            Gets(svc("a"), ("10.0.0.0",), "lan", A.UNCHANGED),  # converging again changes nothing
            Gets(svc("c"), ("10.0.0.2",), "lan"),
            Gets(svc("d"), ("10.0.0.3",), "lan"),
            Usage("lan", (4, 0, 0, 0)),
            Refuses(svc("e"), R.NO_AVAILABLE_IP),
            Releases("b", freed=("10.0.0.1",)),
            Releases("b"),  # releasing twice is harmless
            Usage("lan", (3, 1, 0, 0)),
            Gets(svc("e"), ("10.0.0.1",), "lan"),  # the freed address is the lowest again
            Releases("d", freed=("10.0.0.3",)),
            Releases("a", freed=("10.0.0.0",)),
            Gets(svc("f"), ("10.0.0.0",), "lan"),
            Gets(svc("g"), ("10.0.0.3",), "lan"),
        ],
    ),
    "ranges in spec order, a-b ranges, avoidBuggyIPs": (
        [
            pool("odd", "10.0.1.254-10.0.2.1", "10.0.0.10/31", buggy=True),
            pool("plain", "10.0.3.255/32", auto=False),
        ],
        [
            Usage("odd", (0, 4, 0, 0)),  # .254, (.255 and .0 avoided), .1, then .10 and .11
            Gets(svc("a"), ("10.0.1.254",), "odd"),
            Gets(svc("b"), ("10.0.2.1",), "odd"),  # skips 10.0.1.255 and 10.0.2.0
            Gets(svc("c"), ("10.0.0.10",), "odd"),  # the second range, though numerically lower
            Gets(svc("d"), ("10.0.0.11",), "odd"),
            Refuses(svc("e"), R.NO_AVAILABLE_IP),  # "plain" is not auto-assigned
            Refuses(svc("e", want=("10.0.1.255",)), R.REQUESTED_IP_NOT_IN_POOL),  # avoided: not in the pool
            Gets(svc("e", want=("10.0.3.255",)), ("10.0.3.255",), "plain", A.REQUESTED_IPS),  # no avoidance here
            Refuses(svc("f", pool="plain"), R.POOL_EXHAUSTED),
            Releases("e", freed=("10.0.3.255",)),
            Gets(svc("f", pool="plain"), ("10.0.3.255",), "plain", A.REQUESTED_POOL),  # autoAssign off: by name
        ],
    ),
    "pool order: priority, unset priority last, pools without serviceAllocation after, ties by name": (
        [
            pool("z-free", "10.9.0.0/32"),
            pool("a-free", "10.8.0.0/32"),
            pool("unset", "10.7.0.0/32", pinned=True),
            pool("p20", "10.6.0.0/32", priority=20),
            pool("p10-b", "10.5.0.0/32", priority=10),
            pool("p10-a", "10.4.0.0/32", priority=10),
            pool("off", "10.3.0.0/32", priority=1, auto=False),
        ],
        [
            Gets(svc("s1"), ("10.4.0.0",), "p10-a"),
            Gets(svc("s2"), ("10.5.0.0",), "p10-b"),
            Gets(svc("s3"), ("10.6.0.0",), "p20"),
            # a serviceAllocation that restricts nothing admits every Service (MetalLB never
            # auto-assigns such a pool: it is in neither of its pinned lists; metalbus does)
            Gets(svc("s4"), ("10.7.0.0",), "unset"),
            Gets(svc("s5"), ("10.8.0.0",), "a-free"),
            Gets(svc("s6"), ("10.9.0.0",), "z-free"),
            Refuses(svc("s7"), R.NO_AVAILABLE_IP),
            Releases("s3", freed=("10.6.0.0",)),
            Releases("s5", freed=("10.8.0.0",)),
            Gets(svc("s7"), ("10.6.0.0",), "p20"),  # pinned pools before the others
            Gets(svc("s8", pool="off"), ("10.3.0.0",), "off"),
        ],
    ),
    "serviceAllocation: namespaces, namespace selectors, service selectors": (
        [
            pool("team-a", "10.1.0.0/31", priority=1, namespaces=("team-a",)),
            pool("prod", "10.2.0.0/32", priority=2, ns_selector={"env": "prod"}),
            pool("gold", "10.3.0.0/32", priority=3, svc_selector={"tier": "gold"}),
            pool("gold-in-b", "10.4.0.0/32", priority=4, namespaces=("team-b",), svc_selector={"tier": "gold"}),
            pool("shared", "10.0.0.0/31"),
        ],
        [
            Gets(svc("a1", ns="team-a"), ("10.1.0.0",), "team-a"),
            Gets(svc("b1", ns="team-b"), ("10.0.0.0",), "shared"),  # pinned pools do not admit it
            Gets(svc("p1", ns="team-c", ns_labels={"env": "prod"}), ("10.2.0.0",), "prod"),
            Gets(svc("g1", ns="team-b", labels={"tier": "gold"}), ("10.3.0.0",), "gold"),
            Gets(svc("g2", ns="team-b", labels={"tier": "gold"}), ("10.4.0.0",), "gold-in-b"),
            Gets(svc("g3", ns="team-c", labels={"tier": "gold"}), ("10.0.0.1",), "shared"),
            Refuses(svc("g4", ns="team-c", labels={"tier": "gold"}), R.NO_AVAILABLE_IP),
            # a pool pinned elsewhere is never given to the Service, not even when asked for
            Refuses(svc("x1", ns="team-b", pool="team-a"), R.POOL_NOT_ALLOWED),
            Refuses(svc("x1", ns="team-b", want=("10.1.0.1",)), R.POOL_NOT_ALLOWED),
            Gets(svc("a2", ns="team-a", want=("10.1.0.1",)), ("10.1.0.1",), "team-a"),
            Refuses(svc("x2", ns="team-b", pool="nowhere"), R.UNKNOWN_POOL),
        ],
    ),
    "no eligible pool at all": (
        [pool("mine", "10.0.0.0/24", namespaces=("mine",)), pool("manual", "10.1.0.0/24", auto=False)],
        [
            Refuses(svc("a", ns="other"), R.NO_ELIGIBLE_POOL),
            Gets(svc("a", ns="mine"), ("10.0.0.0",), "mine"),
        ],
    ),
    "requested IPs: spec.loadBalancerIP / loadBalancerIPs": (
        [pool("lan", "10.0.0.0/24", "fd00::/120"), pool("dmz", "192.0.2.0/24", auto=False)],
        [
            Gets(svc("a", want=("10.0.0.7",)), ("10.0.0.7",), "lan", A.REQUESTED_IPS),
            Refuses(svc("b", want=("10.0.0.7",)), R.IP_NOT_SHARED),
            Refuses(svc("b", want=("172.16.0.1",)), R.REQUESTED_IP_NOT_IN_POOL),
            Refuses(svc("b", want=("fd00::1",)), R.REQUESTED_FAMILY_MISMATCH),  # an IPv4 Service
            Refuses(svc("b", want=("10.0.0.8",), pool="dmz"), R.REQUESTED_IP_WRONG_POOL),
            Gets(svc("b", want=("192.0.2.9",), pool="dmz"), ("192.0.2.9",), "dmz"),
            Refuses(svc("c", fam="46", policy="require", want=("10.0.0.9",)), R.REQUESTED_FAMILY_MISMATCH),
            Refuses(svc("c", fam="46", policy="require", want=("10.0.0.9", "192.0.2.1")), R.TOO_MANY_REQUESTED_IPS),
            Refuses(svc("c", fam="46", policy="require", want=("10.0.0.9", "fd00::1000")), R.REQUESTED_IP_NOT_IN_POOL),
            Gets(svc("c", fam="46", policy="require", want=("fd00::9", "10.0.0.9")), ("fd00::9", "10.0.0.9"), "lan"),
            Gets(svc("d"), ("10.0.0.0",), "lan"),  # auto-assignment steps around requested addresses
            Gets(svc("e"), ("10.0.0.1",), "lan"),
        ],
    ),
    "sharing: key, ports, backend (MetalLB usage docs)": (
        [pool("lan", "10.0.0.0/29")],
        [
            Gets(svc("dns-tcp", share="k", ports=("tcp/53",)), ("10.0.0.0",), "lan"),
            Gets(svc("dns-udp", share="k", ports=("udp/53",)), ("10.0.0.0",), "lan"),  # shares: lowest shareable
            Usage("lan", (1, 7, 0, 0)),  # a shared address counts once
            Gets(svc("dns-tcp2", share="k", ports=("tcp/53",)), ("10.0.0.1",), "lan"),  # port taken: next one
            Gets(svc("web", share="other", ports=("tcp/80",)), ("10.0.0.2",), "lan"),  # other key: not shared
            Gets(svc("plain", ports=("tcp/8080",)), ("10.0.0.3",), "lan"),
            Refuses(svc("x", share="k", ports=("tcp/80",), want=("10.0.0.3",)), R.IP_NOT_SHARED),
            Refuses(svc("x", ports=("tcp/81",), want=("10.0.0.0",)), R.IP_NOT_SHARED),
            Refuses(svc("x", share="k2", ports=("tcp/81",), want=("10.0.0.0",)), R.IP_SHARING_KEY_MISMATCH),
            Refuses(svc("x", share="k", ports=("udp/53",), want=("10.0.0.0",)), R.IP_PORT_CONFLICT),
            Refuses(svc("x", share="k", ports=("tcp/81",), local=True, want=("10.0.0.0",)), R.IP_BACKEND_MISMATCH),
            Gets(svc("x", share="k", ports=("tcp/81",), want=("10.0.0.0",)), ("10.0.0.0",), "lan"),
            # externalTrafficPolicy Local: only with an identical selector
            Gets(svc("l1", share="loc", ports=("tcp/1",), local=True, selector={"app": "x"}), ("10.0.0.4",), "lan"),
            Gets(svc("l2", share="loc", ports=("tcp/2",), local=True, selector={"app": "x"}), ("10.0.0.4",), "lan"),
            Gets(svc("l3", share="loc", ports=("tcp/3",), local=True, selector={"app": "y"}), ("10.0.0.5",), "lan"),
            Gets(svc("c1", share="loc", ports=("tcp/4",)), ("10.0.0.6",), "lan"),  # Cluster never with Local
            Releases("dns-tcp", freed=("10.0.0.0",)),
            Usage("lan", (7, 1, 0, 0)),  # still held by dns-udp and x
            Releases("dns-udp", freed=("10.0.0.0",)),
            Releases("x", freed=("10.0.0.0",)),
            Usage("lan", (6, 2, 0, 0)),
            Gets(svc("y", ports=("tcp/1",)), ("10.0.0.0",), "lan"),
        ],
    ),
    "sharing: a sole user may change its key in place": (
        [pool("lan", "10.0.0.0/30")],
        [
            Gets(svc("a", share="k1"), ("10.0.0.0",), "lan"),
            Adopts(svc("a", share="k2"), ("10.0.0.0",)),
            Gets(svc("b", share="k2", ports=("tcp/81",)), ("10.0.0.0",), "lan"),
            Adopts(svc("a", share="k3"), ("10.0.0.0",), refused=R.IP_SHARING_KEY_MISMATCH),  # b is there now
            Gets(svc("a", share="k2"), ("10.0.0.0",), "lan", A.UNCHANGED),
        ],
    ),
    "dual-stack: SingleStack, RequireDualStack, PreferDualStack (MetalLB's findBestPoolForService)": (
        [
            pool("v4only", "10.4.0.0/31", priority=1, pinned=True),
            pool("v6only", "fd06::/127", priority=2, pinned=True),
            pool("dual", "10.0.0.0/31", "fd00::/127", priority=3, pinned=True),
        ],
        [
            Gets(svc("s4"), ("10.4.0.0",), "v4only"),
            Gets(svc("s6", fam="6"), ("fd06::",), "v6only"),
            Gets(svc("r46", fam="46", policy="require"), ("10.0.0.0", "fd00::"), "dual"),  # both from one pool
            Gets(svc("r64", fam="64", policy="require"), ("fd00::1", "10.0.0.1"), "dual"),  # primary first
            Refuses(svc("r3", fam="46", policy="require"), R.NO_AVAILABLE_IP),
            # PreferDualStack without a dual pool with room: the first pool with the primary family
            Gets(svc("p46", fam="46", policy="prefer"), ("10.4.0.1",), "v4only"),
            Gets(svc("p64", fam="64", policy="prefer"), ("fd06::1",), "v6only"),
            Refuses(svc("p3", fam="64", policy="prefer"), R.NO_AVAILABLE_IP),
            Releases("r46", freed=("10.0.0.0", "fd00::")),
            Releases("s4", freed=("10.4.0.0",)),
            # a dual pool with room wins over a single-family pool of higher priority
            Gets(svc("p3", fam="64", policy="prefer"), ("fd00::", "10.0.0.0"), "dual"),
            Releases("p3", freed=("fd00::", "10.0.0.0")),
            Releases("s6", freed=("fd06::",)),
            Releases("r64", freed=("fd00::1", "10.0.0.1")),
            Refuses(svc("d", fam="46", policy="require", pool="v4only"), R.POOL_EXHAUSTED),
            Gets(svc("d", fam="46", policy="prefer", pool="v4only"), ("10.4.0.0",), "v4only"),
        ],
    ),
    "dual-stack PreferDualStack: the missing family is added from the same pool when it frees up": (
        [pool("dual", "10.0.0.0/32", "fd00::/128")],
        [
            Gets(svc("six", fam="6"), ("fd00::",), "dual"),
            Gets(svc("p", fam="46", policy="prefer"), ("10.0.0.0",), "dual"),
            Gets(svc("p", fam="46", policy="prefer"), ("10.0.0.0",), "dual", A.UNCHANGED),
            Releases("six", freed=("fd00::",)),
            Gets(svc("p", fam="46", policy="prefer"), ("10.0.0.0", "fd00::"), "dual", A.ADDITIONAL_FAMILY),
            Usage("dual", (1, 0, 1, 0)),
        ],
    ),
    "dual-stack PreferDualStack across tiers: secondary family, pinned single before unpinned dual": (
        [pool("v4pinned", "10.4.0.0/32", priority=5), pool("dual", "10.0.0.0/32", "fd00::/128")],
        [
            # the pinned tier is tried first and settles for the primary family, as MetalLB does
            Gets(svc("a", fam="46", policy="prefer"), ("10.4.0.0",), "v4pinned"),
            # RequireDualStack cannot be served by the pinned tier, so it falls through
            Gets(svc("b", fam="46", policy="require"), ("10.0.0.0", "fd00::"), "dual"),
            Releases("b", freed=("10.0.0.0", "fd00::")),
            Gets(svc("c", fam="6"), ("fd00::",), "dual"),
            # no pair and no IPv6 (its primary family) anywhere: the secondary family
            Gets(svc("d", fam="64", policy="prefer"), ("10.0.0.0",), "dual"),
            Refuses(svc("e", fam="64", policy="prefer"), R.NO_AVAILABLE_IP),
        ],
    ),
    "keeping, moving and losing an allocation when the request changes (convergeBalancer)": (
        [pool("a", "10.0.0.0/29"), pool("b", "10.1.0.0/29", auto=False)],
        [
            Gets(svc("s", share="k", ports=("tcp/80",)), ("10.0.0.0",), "a"),
            Gets(svc("t", share="k", ports=("tcp/81",)), ("10.0.0.0",), "a"),
            Gets(svc("s", share="k", ports=("tcp/80", "tcp/82")), ("10.0.0.0",), "a", A.UNCHANGED),
            # t now wants port 82 too: no longer legal on the shared address, re-allocated
            Gets(svc("t", share="k", ports=("tcp/82",)), ("10.0.0.1",), "a", replaced=C.NO_LONGER_ALLOWED),
            Gets(svc("s", pool="b"), ("10.1.0.0",), "b", A.REQUESTED_POOL, replaced=C.DIFFERENT_POOL_REQUESTED),
            Gets(svc("s", pool="b"), ("10.1.0.0",), "b", A.UNCHANGED),
            Gets(svc("s", want=("10.1.0.5",)), ("10.1.0.5",), "b", A.REQUESTED_IPS, replaced=C.DIFFERENT_IP_REQUESTED),
            Gets(svc("s"), ("10.1.0.5",), "b", A.UNCHANGED),  # dropping the request keeps the address
            # the family changed (and no pool has IPv6): the old address is lost, nothing replaces it
            Refuses(svc("s", fam="6"), R.NO_AVAILABLE_IP, lost=("10.1.0.5",)),
            # a new request that is refused costs the Service its address (MetalLB clears state first)
            Gets(svc("u"), ("10.0.0.0",), "a"),  # s left it
            Refuses(svc("u", want=("10.0.0.1",)), R.IP_NOT_SHARED, lost=("10.0.0.0",)),
            Gets(svc("v"), ("10.0.0.0",), "a"),
        ],
    ),
    "migration from MetalLB: an in-pool status address is kept": (
        [pool("lan", "10.0.0.0/29")],
        [
            Gets(svc("old", status=("10.0.0.5",)), ("10.0.0.5",), "lan", A.ADOPTED_FROM_STATUS),
            Gets(svc("old", status=("10.0.0.5",)), ("10.0.0.5",), "lan", A.UNCHANGED),
            Gets(svc("gone", status=("172.16.0.1",)), ("10.0.0.0",), "lan", replaced=C.NO_LONGER_ALLOWED),
            Gets(svc("dup", status=("10.0.0.5",)), ("10.0.0.1",), "lan", replaced=C.NO_LONGER_ALLOWED),
            Refuses(svc("fam", fam="6", status=("10.0.0.6",)), R.NO_AVAILABLE_IP),  # status of the wrong family
            Gets(
                svc("asked", status=("10.0.0.6",), want=("10.0.0.7",)),
                ("10.0.0.7",),
                "lan",
                replaced=C.DIFFERENT_IP_REQUESTED,
            ),
        ],
    ),
    "re-adoption (assign) before any new allocation: nothing moves": (
        [pool("lan", "10.0.0.0/30")],
        [
            Adopts(svc("c"), ("10.0.0.2",)),
            Adopts(svc("a"), ("10.0.0.0",)),
            Gets(svc("new"), ("10.0.0.1",), "lan"),
            Gets(svc("a"), ("10.0.0.0",), "lan", A.UNCHANGED),
            Adopts(svc("x"), ("10.0.0.0",), refused=R.IP_NOT_SHARED),
            Adopts(svc("x"), ("192.168.0.1",), refused=R.REQUESTED_IP_NOT_IN_POOL),
            Adopts(svc("x"), ("10.0.0.3", "10.0.0.1"), refused=R.TOO_MANY_REQUESTED_IPS),
            Adopts(svc("c"), ("10.0.0.3",)),  # assign replaces the Service's previous holding
            Usage("lan", (3, 1, 0, 0)),
        ],
    ),
    "pool changes: stays, re-pointed, or released to be re-allocated": (
        [pool("a", "10.0.0.0/30", "fd00::/126"), pool("b", "10.1.0.0/30")],
        [
            Gets(svc("s1"), ("10.0.0.0",), "a"),
            Gets(svc("s2", fam="46", policy="require"), ("10.0.0.1", "fd00::"), "a"),
            Gets(svc("s3", want=("10.1.0.0",)), ("10.1.0.0",), "b"),
            # a is split into a (v4) and a6 (v6): s2's pair is no longer in one pool
            SetsPools(
                [pool("a", "10.0.0.0/30"), pool("a6", "fd00::/126"), pool("b", "10.1.0.0/30")],
                released=("default/s2",),
            ),
            Usage("a", (1, 3, 0, 0)),
            Usage("a6", (0, 0, 0, 4)),
            # b is renamed c: s3 keeps its address and is re-pointed
            SetsPools([pool("a", "10.0.0.0/30"), pool("c", "10.1.0.0/29")], moved={"default/s3": "c"}),
            Usage("c", (1, 7, 0, 0)),
            Gets(svc("s3", want=("10.1.0.0",)), ("10.1.0.0",), "c", A.UNCHANGED),
            # avoidBuggyIPs switched on: 10.0.0.0 leaves the pool
            SetsPools([pool("a", "10.0.0.0/30", buggy=True), pool("c", "10.1.0.0/29")], released=("default/s1",)),
            Gets(svc("s1"), ("10.0.0.1",), "a"),
            SetsPools([], released=("default/s1", "default/s3")),
            Refuses(svc("s1"), R.NO_POOLS),
        ],
    ),
    "usage counts are exact for a /64 and larger": (
        [pool("big", "fd00::/64", "2001:db8::/48"), pool("v4", "10.0.0.0/8", buggy=True)],
        [
            Usage("big", (0, 0, 0, 2**64 + 2**80)),
            Usage("v4", (0, 2**24 - 2 * 2**16, 0, 0)),
            Gets(svc("a", fam="6"), ("fd00::",), "big"),
            Gets(svc("b", fam="6"), ("fd00::1",), "big"),
            Gets(svc("c"), ("10.0.0.1",), "v4"),
            Usage("big", (0, 0, 2, 2**64 + 2**80 - 2)),
            Usage("v4", (1, 2**24 - 2 * 2**16 - 1, 0, 0)),
        ],
    ),
    # metalbus differs from MetalLB here: MetalLB hands out 0.0.0.0 and :: from a catch-all pool.
    "catch-all pools: unspecified, loopback, link-local, multicast and broadcast are never handed out": (
        [pool("all4", "0.0.0.0/0"), pool("all6", "::/0")],
        [
            Usage("all4", (0, 2**32 - 1 - 2**24 - 2**16 - 2**28 - 1, 0, 0)),
            Usage("all6", (0, 0, 0, 2**128 - 2 - 2**118 - 2**120)),
            Gets(svc("a"), ("0.0.0.1",), "all4"),  # 0.0.0.0 is skipped
            Gets(svc("b", fam="6"), ("::2",), "all6"),  # :: and ::1 are skipped
            Refuses(svc("c", want=("0.0.0.0",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", want=("127.0.0.1",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", want=("169.254.10.1",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", want=("224.0.0.251",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", want=("255.255.255.255",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", fam="6", want=("::",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", fam="6", want=("::1",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", fam="6", want=("fe80::1",)), R.REQUESTED_IP_UNUSABLE),
            Refuses(svc("c", fam="6", want=("ff02::1",)), R.REQUESTED_IP_UNUSABLE),
            Gets(svc("c", want=("126.255.255.255",)), ("126.255.255.255",), "all4", A.REQUESTED_IPS),
            # an allocation recorded before this rule (0.0.0.0) is not re-adopted: the Service gets another
            Adopts(svc("x"), ("0.0.0.0",), refused=R.REQUESTED_IP_UNUSABLE),
            Gets(svc("x"), ("0.0.0.2",), "all4"),
            Usage("all4", (3, 2**32 - 1 - 2**24 - 2**16 - 2**28 - 1 - 3, 0, 0)),
        ],
    ),
    "a range running into unusable spans steps over each in one move": (
        [
            pool("edge", "126.255.255.254-128.0.0.1"),
            pool("mc", "223.255.255.253-240.0.0.1", buggy=True, auto=False),
            pool("local", "169.254.0.0/16", "fe80::/64", auto=False),
        ],
        [
            Usage("local", (0, 0, 0, 0)),
            Refuses(svc("z", pool="local"), R.POOL_EXHAUSTED),  # a pool made only of them has nothing to give
            Usage("edge", (0, 4, 0, 0)),
            Usage("mc", (0, 3, 0, 0)),  # .255 and 240.0.0.0 avoided, 224.0.0.0/4 unusable
            Gets(svc("a"), ("126.255.255.254",), "edge"),
            Gets(svc("b"), ("126.255.255.255",), "edge"),
            Gets(svc("c"), ("128.0.0.0",), "edge"),  # the whole of 127.0.0.0/8 skipped
            Gets(svc("d"), ("128.0.0.1",), "edge"),
            Refuses(svc("e"), R.NO_AVAILABLE_IP),
            Releases("b", freed=("126.255.255.255",)),
            Gets(svc("e"), ("126.255.255.255",), "edge"),  # the freed address below the gap comes back
            Gets(svc("f", pool="mc"), ("223.255.255.253",), "mc", A.REQUESTED_POOL),
            Gets(svc("g", pool="mc"), ("223.255.255.254",), "mc"),
            Gets(svc("h", pool="mc"), ("240.0.0.1",), "mc"),
            Refuses(svc("i", pool="mc"), R.POOL_EXHAUSTED),
        ],
    ),
}


@pytest.mark.parametrize("story", list(SCENARIOS))
def test_scenario(story: str) -> None:
    pools, rows = SCENARIOS[story]
    play(pools, rows)
