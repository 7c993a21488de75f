"""The docker-compose dev stack, checked without Docker: its structure, and every metalbus service's
command and environment against the ``metalbus`` CLI; addresses agreeing across compose, FRR and the
metallb.io configuration the stack applies."""

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
from tests.unit.deploy.kustomize import load_documents
from tests.unit.deploy.manifests import NOT_OPTIONS, ROOT, options_set_by_env, parse
from tests.unit.deploy.test_crds import schema_of

COMPOSE = ROOT / "compose"
METALBUS = ("watcher", "ipam", "announcer-a", "announcer-b", "authenticator", "provision")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return document


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def lab_address(service: str) -> ipaddress.IPv4Address:
    definition = services()[service]
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


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for definition in services().values():
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


@pytest.mark.parametrize("name", METALBUS)
def test_metalbus_services_use_only_what_the_cli_knows(name: str) -> None:
    definition = services()[name]
    assert definition["image"] == "metalbus:dev"
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
        assert services()["nats"]["environment"][f"{user.upper()}_PASSWORD"] == password
    if options.command in ("authenticator", "provision", "bus"):
        return
    assert options.stream_replicas == 1
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


def test_nats_runs_the_deployments_users() -> None:
    nats = services()["nats"]
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
