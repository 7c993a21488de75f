"""The fold from events to desired Kubernetes state, as a story: each step builds on the state before."""

from __future__ import annotations

from schemas.events import (
    AllocationFailed,
    AllocationFailureReason,
    AnnouncementMode,
    AnnouncementReported,
    ConfigProblem,
    ConfigProblemReason,
    ConfigurationEvaluated,
    FamilyUsage,
    IPAllocated,
    IPReleased,
    KubeProxyObserved,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    PoolUsageReported,
    ReleaseReason,
    ServiceId,
)
from services.watcher.status.configstate import STRICT_ARP_FIX, ConfigResult, ConfigStateTarget
from services.watcher.status.desired import (
    INT64_MAX,
    Absent,
    AnnouncementStatusTarget,
    Claim,
    EventType,
    ObjectKey,
    PoolTarget,
    Reason,
    ServiceTarget,
    StatusState,
    TargetKind,
    apply,
    config_state_key,
    go_quoted_list,
    service_key,
    status_object_name,
    target,
)

NS = "metallb-system"
WEB = ServiceId(namespace="default", name="web", uid="u-web")
API = ServiceId(namespace="default", name="api", uid="u-api")
SUBJECT = "ipam.allocation.default.web"


def allocated(*ips: str, pool: str = "lan", **extra: object) -> IPAllocated:
    return IPAllocated(service=WEB, ips=ips, pool=pool, reason="r", **extra)


def test_allocation_story() -> None:
    state = StatusState(NS)
    key = service_key("default", "web")

    change = apply(state, allocated("10.0.0.5"), subject=SUBJECT, sequence=1)
    assert change.keys == {key}
    [event] = change.events
    assert (event.type, event.reason, event.message, event.uid) == (
        EventType.NORMAL, Reason.IP_ALLOCATED, 'Assigned IP ["10.0.0.5"]', "u-web")
    assert target(state, key) == ServiceTarget("default", "web", "u-web", ("10.0.0.5",), "lan")

    # re-adopted after an ipam restart: same IPs, so the object is checked but nobody is told again
    change = apply(state, allocated("10.0.0.5"), subject=SUBJECT, sequence=2)
    assert change.keys == {key} and change.events == ()

    # a redelivered or older message changes nothing at all
    assert apply(state, allocated("10.0.0.99"), subject=SUBJECT, sequence=2).keys == frozenset()
    assert target(state, key) == ServiceTarget("default", "web", "u-web", ("10.0.0.5",), "lan")

    # dual stack added
    change = apply(state, allocated("10.0.0.5", "fd00::5"), subject=SUBJECT, sequence=3)
    assert change.events[0].message == 'Assigned IP ["10.0.0.5" "fd00::5"]'

    # released: the Service shows no address at all and loses the pool (it is still served)
    change = apply(state, IPReleased(service=WEB, ips=("10.0.0.5", "fd00::5"), reason=ReleaseReason.REPLACED,
                                     message="pool annotation changed"), subject=SUBJECT, sequence=4)
    [event] = change.events
    assert event.reason is Reason.CLEAR_ASSIGNMENT and "pool annotation changed" in event.message
    assert target(state, key) == ServiceTarget("default", "web", "u-web")

    # a failure leaves no IP (as in MetalLB) and is a Warning naming the Service
    apply(state, allocated("10.0.0.6"), subject=SUBJECT, sequence=5)
    failed = AllocationFailed(service=WEB, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="pool lan is full")
    change = apply(state, failed, subject=SUBJECT, sequence=6)
    [event] = change.events
    assert (event.type, event.reason) == (EventType.WARNING, Reason.ALLOCATION_FAILED)
    assert event.message == 'Failed to allocate IP for "default/web": pool lan is full'
    assert target(state, key) == ServiceTarget("default", "web", "u-web")

    # the Service is gone: nothing to write, nobody to tell
    change = apply(state, IPReleased(service=WEB, ips=(), reason=ReleaseReason.SERVICE_DELETED),
                   subject=SUBJECT, sequence=7)
    assert change.keys == frozenset() and change.events == ()
    assert target(state, key) is None


def test_an_allocation_that_stops_being_valid_leaves_no_address_whatever_came_between() -> None:
    """Released, then refused, before anything was written: the Service shows nothing (the release's
    addresses are not forgotten by the failure that follows it)."""
    state = StatusState(NS)
    key = service_key("default", "web")
    apply(state, allocated("10.0.0.5"), subject=SUBJECT, sequence=1)
    apply(state, IPReleased(service=WEB, ips=("10.0.0.5",), reason=ReleaseReason.NOT_COVERED_BY_POOL),
          subject=SUBJECT, sequence=2)
    apply(state, AllocationFailed(service=WEB, reason=AllocationFailureReason.NO_POOLS, message="no pool"),
          subject=SUBJECT, sequence=3)
    cleared = target(state, key)
    assert cleared == ServiceTarget("default", "web", "u-web", claim=Claim.SERVED)
    assert isinstance(cleared, ServiceTarget) and not cleared.forgotten_once_shown  # still ours to keep clear


def test_a_service_handed_to_another_controller_loses_only_our_addresses() -> None:
    state = StatusState(NS)
    key = service_key("default", "web")
    apply(state, allocated("10.0.0.5"), subject=SUBJECT, sequence=1)
    apply(state, IPReleased(service=WEB, ips=("10.0.0.5",), reason=ReleaseReason.CLASS_CHANGED),
          subject=SUBJECT, sequence=2)
    handed = target(state, key)
    assert handed == ServiceTarget("default", "web", "u-web", claim=Claim.HANDED_OVER, strip=("10.0.0.5",))
    assert isinstance(handed, ServiceTarget) and handed.forgotten_once_shown

    # one that held nothing (it had failed) is handed over silently
    change = apply(state, IPReleased(service=API, ips=(), reason=ReleaseReason.CLASS_CHANGED),
                   subject="ipam.allocation.default.api", sequence=3)
    assert change.events == ()
    assert target(state, service_key("default", "api")) == ServiceTarget(
        "default", "api", "u-api", claim=Claim.HANDED_OVER)


def test_deprecated_annotations_are_warned_once_per_annotation() -> None:
    state = StatusState(NS)
    change = apply(state, allocated("10.0.0.5", deprecated_annotations=(
        "metallb.universe.tf/loadBalancerIPs", "metallb.universe.tf/address-pool")), subject=SUBJECT, sequence=1)
    warnings = [e.message for e in change.events if e.reason is Reason.DEPRECATED_ANNOTATION]
    assert warnings == ["Service uses deprecated annotation metallb.universe.tf/address-pool",
                        "Service uses deprecated annotation metallb.universe.tf/loadBalancerIPs"]
    assert all(e.type is EventType.WARNING for e in change.events if e.reason is Reason.DEPRECATED_ANNOTATION)


def report(node: str, ip: str, *, announcing: bool = True, mode: AnnouncementMode = AnnouncementMode.L2,
           services: tuple[ServiceId, ...] = (WEB,), interfaces: tuple[str, ...] = ("eth0",),
           peers: tuple[str, ...] = ()) -> AnnouncementReported:
    return AnnouncementReported(node=node, ip=ip, mode=mode, announcing=announcing, services=services,
                                interfaces=interfaces, peers=peers)


def l2_key(node: str, service: ServiceId) -> ObjectKey:
    return ObjectKey(TargetKind.L2_STATUS, NS,
                     status_object_name(AnnouncementMode.L2, node, service.namespace, service.name))


def test_layer2_announcement_story() -> None:
    state = StatusState(NS)
    key = l2_key("node-b", WEB)

    change = apply(state, report("node-b", "10.0.0.5"), subject="announce.node-b.ip.a", sequence=1)
    assert change.keys == {key}
    [event] = change.events
    assert event.message == 'announcing from node "node-b" with protocol "layer2"'
    assert target(state, key) == AnnouncementStatusTarget(key, "node-b", "default", "web", interfaces=("eth0",))

    # the announcer reports the same again (a resync): nothing new to tell
    change = apply(state, report("node-b", "10.0.0.5"), subject="announce.node-b.ip.a", sequence=2)
    assert change.keys == {key} and change.events == ()

    # the Service's second (IPv6) IP announced from the same node: one object, interfaces merged, no new event
    change = apply(state, report("node-b", "fd00::5", interfaces=("eth1",)), subject="announce.node-b.ip.b",
                   sequence=3)
    assert change.keys == {key} and change.events == ()
    assert target(state, key) == AnnouncementStatusTarget(key, "node-b", "default", "web",
                                                          interfaces=("eth0", "eth1"))

    # a shared IP: both Services get their own object on that node
    change = apply(state, report("node-b", "10.0.0.5", services=(WEB, API)), subject="announce.node-b.ip.a",
                   sequence=4)
    assert l2_key("node-b", API) in change.keys
    assert [e.regarding.name for e in change.events] == ["api"]

    # stops announcing one IP: the object stays for the other one
    apply(state, report("node-b", "10.0.0.5", announcing=False, services=(WEB, API)),
          subject="announce.node-b.ip.a", sequence=5)
    assert target(state, l2_key("node-b", API)) == Absent(l2_key("node-b", API))
    assert target(state, key) == AnnouncementStatusTarget(key, "node-b", "default", "web", interfaces=("eth1",))

    # and the last one: the object goes
    apply(state, report("node-b", "fd00::5", announcing=False), subject="announce.node-b.ip.b", sequence=6)
    assert target(state, key) == Absent(key)


def test_bgp_status_lists_the_peers() -> None:
    state = StatusState(NS)
    change = apply(state, report("node-a", "10.0.0.5", mode=AnnouncementMode.BGP, interfaces=(),
                                 peers=("ns/tor-2", "ns/tor-1")), subject="announce.node-a.ip.a", sequence=1)
    [key] = change.keys
    assert key.kind is TargetKind.BGP_STATUS and key.name.startswith("bgp-default-web-node-a-")
    assert target(state, key) == AnnouncementStatusTarget(key, "node-a", "default", "web",
                                                          peers=("ns/tor-1", "ns/tor-2"))
    assert change.events[0].message == 'announcing from node "node-a" with protocol "bgp"'


def test_status_object_names_are_stable_valid_and_distinct() -> None:
    a = status_object_name(AnnouncementMode.L2, "node-1", "a-b", "c")
    b = status_object_name(AnnouncementMode.L2, "node-1", "a", "b-c")
    assert a != b
    assert a == status_object_name(AnnouncementMode.L2, "node-1", "a-b", "c")
    long = status_object_name(AnnouncementMode.BGP, "n" * 253, "ns", "x" * 63)
    assert len(long) <= 253


def test_pool_usage_is_clamped_to_int64() -> None:
    state = StatusState(NS)
    change = apply(state, PoolUsageReported(pool="v6", ipv4=FamilyUsage(assigned=0, available=0),
                                            ipv6=FamilyUsage(assigned=2, available=2**64)),
                   subject="ipam.pool.v6", sequence=1)
    [key] = change.keys
    assert target(state, key) == PoolTarget("v6", 0, 2, 0, INT64_MAX)


def kube_proxy(mode: str, strict_arp: bool) -> KubeProxyObserved:
    return KubeProxyObserved(ref=ObjectRef(namespace="kube-system", name="kube-proxy", uid="u",
                                           resource_version="1"), mode=mode, strict_arp=strict_arp)


def test_configuration_state_story() -> None:
    state = StatusState(NS)
    key = config_state_key(NS)
    problem = ConfigProblem(kind="IPAddressPool", namespace=NS, name="lan", field="spec.addresses[0]",
                            reason=ConfigProblemReason.INVALID_OBJECT, message="bad CIDR")
    apply(state, ConfigurationEvaluated(valid=False, problems=(problem,)), subject="ipam.config", sequence=1)
    desired = target(state, key)
    assert isinstance(desired, ConfigStateTarget)
    assert desired.result is ConfigResult.INVALID
    assert desired.error_summary == "IPAddressPool metallb-system/lan spec.addresses[0]: bad CIDR"

    # kube-proxy in IPVS mode without strictARP: a Warning with the fix, once
    change = apply(state, kube_proxy("ipvs", False), subject="k8s.kubeproxy", sequence=1)
    [event] = change.events
    assert event.reason is Reason.STRICT_ARP_REQUIRED and STRICT_ARP_FIX in event.message
    assert event.regarding == key
    assert apply(state, kube_proxy("ipvs", False), subject="k8s.kubeproxy", sequence=2).events == ()
    desired = target(state, key)
    assert isinstance(desired, ConfigStateTarget)
    assert [(c.type, c.status.value) for c in desired.conditions] == [
        ("ConfigurationValid", "False"), ("KubeProxyStrictARP", "False")]

    # fixed, and the configuration too
    assert apply(state, kube_proxy("ipvs", True), subject="k8s.kubeproxy", sequence=3).events == ()
    apply(state, ConfigurationEvaluated(valid=True), subject="ipam.config", sequence=2)
    desired = target(state, key)
    assert isinstance(desired, ConfigStateTarget)
    assert desired.result is ConfigResult.VALID and desired.error_summary == ""
    assert all(c.status.value == "True" for c in desired.conditions)


def test_no_strict_arp_warning_outside_ipvs() -> None:
    for mode in ("iptables", "nftables", ""):
        assert apply(StatusState(NS), kube_proxy(mode, False), subject="k", sequence=1).events == ()


def test_go_quoted_list() -> None:
    assert go_quoted_list(("a",)) == '["a"]'
    assert go_quoted_list(("a", "b")) == '["a" "b"]'


def test_object_keys_cover_everything_known() -> None:
    state = StatusState(NS)
    apply(state, allocated("10.0.0.5"), subject=SUBJECT, sequence=1)
    apply(state, report("node-b", "10.0.0.5"), subject="announce.node-b.ip.a", sequence=1)
    apply(state, ConfigurationEvaluated(valid=True), subject="ipam.config", sequence=1)
    kinds = sorted(key.kind.value for key in state.object_keys())
    assert kinds == ["ConfigurationState", "Service", "ServiceL2Status"]


def test_a_deleted_kube_proxy_configmap_clears_the_warning() -> None:
    state = StatusState(NS)
    apply(state, kube_proxy("ipvs", False), subject="k8s.kubeproxy", sequence=1)
    change = apply(state, ObjectDeleted(kind=ObjectKind.KUBE_PROXY, namespace="kube-system", name="kube-proxy"),
                   subject="k8s.kubeproxy", sequence=2)
    assert change.keys == {config_state_key(NS)} and change.events == ()
    desired = target(state, config_state_key(NS))
    assert isinstance(desired, ConfigStateTarget)
    assert [(c.type, c.status.value) for c in desired.conditions] == [("KubeProxyStrictARP", "True")]
