"""ANNOUNCE and IPAM reports shown as metallb.io objects; the kube-proxy strictARP warning."""

from __future__ import annotations

from schemas.events import (
    AnnouncementMode,
    AnnouncementReported,
    ConfigProblem,
    ConfigProblemReason,
    ConfigurationEvaluated,
    FamilyUsage,
    KubeProxyObserved,
    ObjectKind,
    ObjectRef,
    PoolUsageReported,
)
from services.common.bus import Bus
from services.common.subjects import IPAM_CONFIG_SUBJECT, announce_subject, ipam_pool_subject, k8s_subject
from services.watcher.kube import KubeClients
from services.watcher.status import STRICT_ARP_FIX, metrics, warn_strict_arp
from services.watcher.status.desired import status_object_name
from tests.integration.watcher.status.harness import NAMESPACE, Obj, events, objects, put_service, running_writer
from tests.kubeapi.handle import KubeApi
from tests.waiting import async_wait_until

KUBE_PROXY = k8s_subject(ObjectKind.KUBE_PROXY, "kube-system", "kube-proxy")


def statuses(api: KubeApi, resource: str) -> list[Obj]:
    return objects(api, resource, NAMESPACE)


def config_state(api: KubeApi) -> Obj:
    return (api.get_object("configurationstates", "metalbus", NAMESPACE) or {}).get("status") or {}


def condition(api: KubeApi, kind: str) -> Obj:
    return next((c for c in config_state(api).get("conditions") or [] if c["type"] == kind), {})


def kube_proxy(mode: str, strict_arp: bool) -> KubeProxyObserved:
    return KubeProxyObserved(ref=ObjectRef(namespace="kube-system", name="kube-proxy", uid="u-kp",
                                           resource_version="7"), mode=mode, strict_arp=strict_arp)


async def test_layer2_announcement_is_a_service_l2_status_until_it_stops(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    report = AnnouncementReported(node="node-b", ip="192.168.10.5", mode=AnnouncementMode.L2, announcing=True,
                                  services=(web,), interfaces=("eth0",), placement_epoch=812)
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(announce_subject("node-b", "192.168.10.5"), report)
        await async_wait_until(
            lambda: [s.get("status", {}).get("node") for s in statuses(kube_api, "servicel2statuses")] == ["node-b"],
            what="ServiceL2Status")
        [status] = statuses(kube_api, "servicel2statuses")
        assert status["status"] == {"node": "node-b", "serviceName": "web", "serviceNamespace": "default",
                                    "interfaces": [{"name": "eth0"}]}
        assert status["metadata"]["labels"]["metallb.io/node"] == "node-b"
        assert status["metadata"]["labels"]["metallb.io/service-name"] == "web"
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="nodeAssigned")), what="event")
        [event] = events(kube_api, "default", reason="nodeAssigned")
        assert event["message"] == 'announcing from node "node-b" with protocol "layer2"'
        assert event["involvedObject"]["uid"] == web.uid

        await harness.publish(announce_subject("node-b", "192.168.10.5"),
                              report.model_copy(update={"announcing": False}))
        await async_wait_until(lambda: statuses(kube_api, "servicel2statuses") == [], what="status deleted")


async def test_bgp_announcement_is_a_service_bgp_status(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    async with running_writer(bus, kube_api) as harness:
        for node in ("node-a", "node-b"):
            await harness.publish(announce_subject(node, "10.9.0.1"), AnnouncementReported(
                node=node, ip="10.9.0.1", mode=AnnouncementMode.BGP, announcing=True, services=(web,),
                peers=("metallb-system/tor-2", "metallb-system/tor-1")))
        await async_wait_until(
            lambda: len([s for s in statuses(kube_api, "servicebgpstatuses") if "status" in s]) == 2,
            what="one ServiceBGPStatus per node")
        by_node = {s["status"]["node"]: s["status"] for s in statuses(kube_api, "servicebgpstatuses")}
        assert by_node["node-a"]["peers"] == ["metallb-system/tor-1", "metallb-system/tor-2"]
        assert by_node["node-b"]["serviceName"] == "web"
        assert statuses(kube_api, "servicel2statuses") == []
        await async_wait_until(
            lambda: sorted(e["message"] for e in events(kube_api, "default", reason="nodeAssigned")) == [
                'announcing from node "node-a" with protocol "bgp"',
                'announcing from node "node-b" with protocol "bgp"'], what="one nodeAssigned per node")


async def test_pool_usage_is_the_pool_status(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                         "metadata": {"name": "lan", "namespace": NAMESPACE},
                         "spec": {"addresses": ["192.168.10.0/24", "fd00::/64"]}})
    usage = PoolUsageReported(pool="lan", ipv4=FamilyUsage(assigned=3, available=253),
                              ipv6=FamilyUsage(assigned=1, available=2**64 - 1))
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_pool_subject("lan"), usage)
        await async_wait_until(
            lambda: (kube_api.get_object("ipaddresspools", "lan", NAMESPACE) or {}).get("status") == {
                "assignedIPv4": 3, "assignedIPv6": 1, "availableIPv4": 253, "availableIPv6": 2**63 - 1},
            what="pool status (IPv6 clamped to int64)")
        pool = kube_api.get_object("ipaddresspools", "lan", NAMESPACE) or {}
        assert pool["spec"]["addresses"] == ["192.168.10.0/24", "fd00::/64"]


async def test_invalid_configuration_shows_its_problems(bus: Bus, kube_api: KubeApi) -> None:
    problems = (
        ConfigProblem(kind="IPAddressPool", namespace=NAMESPACE, name="lan", field="spec.addresses[0]",
                      reason=ConfigProblemReason.INVALID_OBJECT, message='invalid CIDR "10.0.0.0/33"'),
        ConfigProblem(kind="L2Advertisement", namespace=NAMESPACE, name="l2", reason=ConfigProblemReason.UNKNOWN_POOL,
                      message='pool "wan" does not exist'),
    )
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(IPAM_CONFIG_SUBJECT, ConfigurationEvaluated(valid=False, problems=problems))
        await async_wait_until(lambda: config_state(kube_api).get("result") == "Invalid", what="Invalid")
        summary = config_state(kube_api)["errorSummary"]
        assert 'invalid CIDR "10.0.0.0/33"' in summary and 'pool "wan" does not exist' in summary
        assert "spec.addresses[0]" in summary
        assert condition(kube_api, "ConfigurationValid")["status"] == "False"

        await harness.publish(IPAM_CONFIG_SUBJECT, ConfigurationEvaluated(valid=True))
        await async_wait_until(lambda: config_state(kube_api).get("result") == "Valid", what="Valid again")
        assert "errorSummary" not in config_state(kube_api)
        assert condition(kube_api, "ConfigurationValid")["status"] == "True"


async def test_ipvs_without_strict_arp_warns_with_the_fix(bus: Bus, kube_api: KubeApi) -> None:
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(KUBE_PROXY, kube_proxy("ipvs", strict_arp=False))
        await async_wait_until(lambda: condition(kube_api, "KubeProxyStrictARP").get("status") == "False",
                               what="strictARP condition")
        assert STRICT_ARP_FIX in condition(kube_api, "KubeProxyStrictARP")["message"]
        await async_wait_until(lambda: bool(events(kube_api, NAMESPACE, reason="StrictARPRequired")),
                               what="strictARP warning event")
        [event] = events(kube_api, NAMESPACE, reason="StrictARPRequired")
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "ConfigurationState"
        assert STRICT_ARP_FIX in event["message"]

        await harness.publish(KUBE_PROXY, kube_proxy("ipvs", strict_arp=True))
        await async_wait_until(lambda: condition(kube_api, "KubeProxyStrictARP").get("status") == "True",
                               what="condition cleared once fixed")


async def test_no_warning_with_strict_arp_or_iptables(bus: Bus, kube_api: KubeApi) -> None:
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(KUBE_PROXY, kube_proxy("iptables", strict_arp=False))
        await async_wait_until(lambda: condition(kube_api, "KubeProxyStrictARP").get("status") == "True",
                               what="iptables is fine")
        await harness.publish(KUBE_PROXY, kube_proxy("ipvs", strict_arp=True))
        await async_wait_until(lambda: condition(kube_api, "KubeProxyStrictARP").get("reason") == "StrictARPEnabled",
                               what="ipvs with strictARP is fine")
    assert events(kube_api, NAMESPACE, reason="StrictARPRequired") == []


async def test_strict_arp_warning_at_start_from_the_stream(bus: Bus, kube_api: KubeApi) -> None:
    await bus.publish(KUBE_PROXY, kube_proxy("ipvs", strict_arp=False))
    async with running_writer(bus, kube_api):
        await async_wait_until(lambda: bool(events(kube_api, NAMESPACE, reason="StrictARPRequired")),
                               what="warned at start")
        await async_wait_until(lambda: condition(kube_api, "KubeProxyStrictARP").get("status") == "False",
                               what="condition at start")


async def test_warn_strict_arp_directly(kube_api: KubeApi) -> None:
    clients = KubeClients.from_api_client(kube_api.api_client())
    try:
        assert await warn_strict_arp(clients, NAMESPACE, kube_proxy("ipvs", strict_arp=False)) is True
        assert condition(kube_api, "KubeProxyStrictARP")["status"] == "False"
        [event] = events(kube_api, NAMESPACE, reason="StrictARPRequired")
        assert STRICT_ARP_FIX in event["message"]
        assert await warn_strict_arp(clients, NAMESPACE, kube_proxy("iptables", strict_arp=False)) is False
        assert condition(kube_api, "KubeProxyStrictARP")["status"] == "True"
        assert len(events(kube_api, NAMESPACE, reason="StrictARPRequired")) == 1
    finally:
        clients.close()


async def test_stray_status_objects_are_swept_at_start(bus: Bus, kube_api: KubeApi) -> None:
    labels = {"app.kubernetes.io/managed-by": "metalbus", "metallb.io/node": "gone-node",
              "metallb.io/service-name": "old", "metallb.io/service-namespace": "default"}
    kube_api.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
                         "metadata": {"name": "l2-stray", "namespace": NAMESPACE, "labels": labels}})
    kube_api.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
                         "metadata": {"name": "l2-someone-elses", "namespace": NAMESPACE}})
    async with running_writer(bus, kube_api):
        await async_wait_until(lambda: kube_api.get_object("servicel2statuses", "l2-stray", NAMESPACE) is None,
                               what="stray status deleted")
    assert kube_api.get_object("servicel2statuses", "l2-someone-elses", NAMESPACE) is not None


async def test_an_unchanged_report_costs_no_request(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    report = AnnouncementReported(node="node-c", ip="10.1.0.1", mode=AnnouncementMode.L2, announcing=True,
                                  services=(web,), interfaces=("eth0",))
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(announce_subject("node-c", "10.1.0.1"), report)
        await async_wait_until(lambda: any("status" in s for s in statuses(kube_api, "servicel2statuses")),
                               what="ServiceL2Status written")
        skipped = metrics.SKIPPED.labels("ServiceL2Status")._value.get()
        patches = metrics.WRITES.labels("ServiceL2Status", "patch_status")._value.get()
        await harness.publish(announce_subject("node-c", "10.1.0.1"), report)
        await async_wait_until(lambda: metrics.SKIPPED.labels("ServiceL2Status")._value.get() > skipped,
                               what="the repeat skipped")
        assert metrics.WRITES.labels("ServiceL2Status", "patch_status")._value.get() == patches


async def test_a_new_announcement_status_is_made_without_a_read_and_one_already_there_is_read(
        bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    made_by_hand = status_object_name(AnnouncementMode.BGP, "node-b", "default", "web")
    kube_api.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceBGPStatus",
                         "metadata": {"name": made_by_hand, "namespace": NAMESPACE}})
    async with running_writer(bus, kube_api) as harness:
        for node in ("node-a", "node-b"):
            await harness.publish(announce_subject(node, "10.9.0.1"), AnnouncementReported(
                node=node, ip="10.9.0.1", mode=AnnouncementMode.BGP, announcing=True, services=(web,),
                peers=("metallb-system/tor-1",)))
        await async_wait_until(
            lambda: len([s for s in statuses(kube_api, "servicebgpstatuses") if "status" in s]) == 2,
            what="one ServiceBGPStatus per node")
    made = status_object_name(AnnouncementMode.BGP, "node-a", "default", "web")
    asked = kube_api.requests(resource="servicebgpstatuses")
    assert sorted(r.code for r in asked if r.verb == "create") == [201, 409]  # one made, one there already
    assert [(r.name, r.code) for r in asked if r.verb == "get"] == [(made_by_hand, 200)]  # read after the 409 only
    assert sorted((r.name == made, r.subresource or "") for r in asked if r.verb == "patch") == [
        (False, ""), (False, "status"), (True, "status")]  # labels and status of the one found, status of the new
