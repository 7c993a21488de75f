"""The metallb.io CRDs: generated, structural, matching the models in schemas/metallb; and the examples
valid against both the CRD schemas and the models (one configuration per examples/ directory)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from pydantic import BaseModel

from deploy import crds
from schemas.metallb import (
    MODELS,
    BFDProfileSpec,
    BGPAdvertisementSpec,
    BGPPeerSpec,
    BGPPeerSpecV1Beta1,
    CommunitySpec,
    IPAddressPool,
    IPAddressPoolSpec,
    L2AdvertisementSpec,
    parse_config_object,
    validate_configuration,
)
from tests.unit.deploy.kustomize import Obj, load_documents
from tests.unit.deploy.manifests import EXAMPLES, K8S

SPEC_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("IPAddressPool", "v1beta1"): IPAddressPoolSpec,
    ("L2Advertisement", "v1beta1"): L2AdvertisementSpec,
    ("BGPAdvertisement", "v1beta1"): BGPAdvertisementSpec,
    ("BGPPeer", "v1beta2"): BGPPeerSpec,
    ("BGPPeer", "v1beta1"): BGPPeerSpecV1Beta1,
    ("BFDProfile", "v1beta1"): BFDProfileSpec,
    ("Community", "v1beta1"): CommunitySpec,
}
STATUS_KINDS = ("ServiceL2Status", "ServiceBGPStatus", "ConfigurationState")


def definitions() -> dict[str, Obj]:
    return {crd["spec"]["names"]["kind"]: crd for crd in load_documents(K8S / "base" / "crds.yaml")}


def schema_of(kind: str, version: str) -> Obj:
    crd = definitions()[kind]
    entry = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: Obj = entry["schema"]["openAPIV3Schema"]
    return schema


def test_the_committed_crds_are_the_generated_ones() -> None:
    assert (K8S / "base" / "crds.yaml").read_text() == crds.render(), \
        "run: .venv/bin/python deploy/crds.py > k8s/base/crds.yaml"


def test_every_kind_metalbus_reads_or_writes_has_a_crd() -> None:
    assert set(definitions()) == {*MODELS, *STATUS_KINDS}


@pytest.mark.parametrize("kind", sorted({*MODELS, *STATUS_KINDS}))
def test_crd_is_valid_kubernetes_and_has_one_storage_version(kind: str) -> None:
    crd = definitions()[kind]
    kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.metallb.io"
    versions = crd["spec"]["versions"]
    assert [v["name"] for v in versions if v["storage"]] == (["v1beta2"] if kind == "BGPPeer" else ["v1beta1"])
    assert all(v["served"] for v in versions)
    for version in versions:
        has_status = "status" in version["schema"]["openAPIV3Schema"]["properties"]
        assert ("subresources" in version) == has_status
        assert has_status, kind


def _nodes(schema: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", sorted({*MODELS, *STATUS_KINDS}))
def test_schemas_are_structural(kind: str) -> None:
    """Kubernetes' structural rules: a type everywhere, no properties beside additionalProperties,
    defaults that fit their own schema, CEL field paths that exist."""
    for version in definitions()[kind]["spec"]["versions"]:
        for path, node in _nodes(version["schema"]["openAPIV3Schema"]):
            assert "type" in node, f"{kind} {version['name']}{path}: no type"
            assert not ("properties" in node and "additionalProperties" in node), path
            if "default" in node:
                jsonschema.validate(node["default"], {k: v for k, v in node.items() if k != "default"})
            for rule in node.get("x-kubernetes-validations") or []:
                if "fieldPath" in rule:
                    assert rule["fieldPath"][1:] in node["properties"], (path, rule)


def _wire_fields(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize(("kind", "version"), sorted(SPEC_MODELS))
def test_crd_spec_has_exactly_the_model_fields(kind: str, version: str) -> None:
    model = SPEC_MODELS[(kind, version)]
    spec = schema_of(kind, version)["properties"]["spec"]
    assert set(spec["properties"]) == _wire_fields(model)


@pytest.mark.parametrize(("kind", "version"), sorted(SPEC_MODELS))
def test_crd_defaults_agree_with_the_model(kind: str, version: str) -> None:
    model = SPEC_MODELS[(kind, version)]
    spec = schema_of(kind, version)["properties"]["spec"]
    for name, field in model.model_fields.items():
        schema = spec["properties"][field.alias or name]
        if "default" in schema:
            assert schema["default"] == field.default, f"{kind}.{field.alias}"


def test_pool_status_has_the_fields_the_watcher_writes() -> None:
    status = schema_of("IPAddressPool", "v1beta1")["properties"]["status"]["properties"]
    assert set(status) == {"assignedIPv4", "assignedIPv6", "availableIPv4", "availableIPv6"}


# --- the examples -------------------------------------------------------------------------------


def example_sets() -> list[Path]:
    return sorted(path for path in EXAMPLES.iterdir() if path.is_dir() and path.name != "services")


def _examples(directory: Path) -> list[Obj]:
    return [obj for path in sorted(directory.glob("*.yaml")) for obj in load_documents(path)]


@pytest.mark.parametrize("directory", example_sets(), ids=lambda p: p.name)
def test_example_objects_fit_their_crd_and_the_models(directory: Path) -> None:
    objects = _examples(directory)
    assert objects
    parsed = []
    for obj in objects:
        group, _, version = obj["apiVersion"].partition("/")
        assert group == "metallb.io"
        assert obj["metadata"]["namespace"] == "metallb-system"
        jsonschema.validate(obj, schema_of(obj["kind"], version))
        parsed.append(parse_config_object(obj))
    report = validate_configuration(parsed)
    assert report.ok, [str(problem) for problem in report.problems]


def test_schema_constraints_refuse_what_the_models_refuse() -> None:
    """A few of MetalLB's webhook checks that are plain schema constraints here."""
    refused: list[tuple[str, str, dict[str, Any]]] = [
        ("IPAddressPool", "v1beta1", {"addresses": []}),
        ("IPAddressPool", "v1beta1", {"addresses": ["not an address"]}),
        ("BGPAdvertisement", "v1beta1", {"aggregationLength": 33}),
        ("BGPPeer", "v1beta2", {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", "holdTime": "3"}),
        ("BGPPeer", "v1beta2", {"myASN": 64500, "peerAddress": "10.0.0.1", "dynamicASN": "sideways"}),
        ("BGPPeer", "v1beta2", {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1", "routerID": "::1"}),
        ("BFDProfile", "v1beta1", {"detectMultiplier": 1}),
        ("Community", "v1beta1", {"communities": [{"name": "x", "value": "65536"}]}),
    ]
    for kind, version, spec in refused:
        obj = {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(obj, schema_of(kind, version))
        with pytest.raises(ValueError):
            parse_config_object(obj)


def test_example_services_and_backend_are_valid_kubernetes() -> None:
    objects = _examples(EXAMPLES / "services")
    kinds = {obj["kind"] for obj in objects}
    assert kinds == {"Namespace", "Deployment", "Service"}
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    services = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Service"}
    assert all(service["spec"]["type"] == "LoadBalancer" for service in services.values())
    shared = [s for s in services.values() if "metallb.io/allow-shared-ip" in s["metadata"].get("annotations", {})]
    assert len(shared) == 2
    assert len({s["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] for s in shared}) == 1
    assert any(s["spec"].get("externalTrafficPolicy") == "Local" for s in services.values())
    assert any(s["spec"].get("ipFamilyPolicy") == "RequireDualStack" for s in services.values())
    pool = parse_config_object(load_documents(EXAMPLES / "l2" / "ipaddresspool.yaml")[0])
    assert isinstance(pool, IPAddressPool)
    for service in services.values():
        requested = service["metadata"].get("annotations", {}).get("metallb.io/loadBalancerIPs")
        if requested:
            address = ipaddress.ip_address(requested)
            assert any(address in address_range for address_range in pool.ranges()), requested


# --- CEL rules (evaluated with cel-python when it is installed; it is not a dev dependency) ----------

_PEER = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1"}
CEL_CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("BGPPeer", "v1beta2", _PEER, True),
    ("BGPPeer", "v1beta2", {"myASN": 64500, "peerAddress": "10.0.0.1"}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "dynamicASN": "external"}, False),
    ("BGPPeer", "v1beta2", {"myASN": 64500, "dynamicASN": "internal", "peerAddress": "10.0.0.1"}, True),
    ("BGPPeer", "v1beta2", {**_PEER, "interface": "eth0"}, False),
    ("BGPPeer", "v1beta2", {"myASN": 64500, "peerASN": 64501}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "password": "x", "passwordSecret": {"name": "s"}}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "peerASN": 64500, "ebgpMultiHop": True}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "ebgpMultiHop": True}, True),
    ("BGPPeer", "v1beta2", {"myASN": 1, "dynamicASN": "internal", "peerAddress": "10.0.0.1", "ebgpMultiHop": True},
     False),
    ("BGPPeer", "v1beta2", {**_PEER, "holdTime": "2s"}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "holdTime": "0s"}, True),
    ("BGPPeer", "v1beta2", {**_PEER, "holdTime": "90s", "keepaliveTime": "91s"}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "holdTime": "1m30s", "keepaliveTime": "30s"}, True),
    ("BGPPeer", "v1beta2", {**_PEER, "keepaliveTime": "500ms"}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "keepaliveTime": "1s"}, True),
    ("BGPPeer", "v1beta2", {**_PEER, "connectTime": "500ms"}, False),
    ("BGPPeer", "v1beta2", {**_PEER, "connectTime": "10s"}, True),
    ("BGPPeer", "v1beta1", {**_PEER, "peerASN": 64500, "ebgpMultiHop": True}, False),
    ("BGPAdvertisement", "v1beta1", {"serviceSelectors": [{"matchLabels": {"a": "b"}}]}, True),
    ("BGPAdvertisement", "v1beta1", {"aggregationLength": 24, "serviceSelectors": [{"matchLabels": {"a": "b"}}]},
     False),
    ("BGPAdvertisement", "v1beta1", {"aggregationLength": 24}, True),
]


@pytest.mark.parametrize(("kind", "version", "spec", "accepted"), CEL_CASES)
def test_cel_rules_accept_and_refuse_as_the_models_do(kind: str, version: str, spec: dict[str, Any],
                                                      accepted: bool) -> None:
    celpy = pytest.importorskip("celpy")
    from celpy import celtypes

    def value(data: Any) -> Any:
        if isinstance(data, bool):
            return celtypes.BoolType(data)
        if isinstance(data, int):
            return celtypes.IntType(data)
        if isinstance(data, str):
            return celtypes.StringType(data)
        if isinstance(data, dict):
            return celtypes.MapType({celtypes.StringType(k): value(v) for k, v in data.items()})
        return celtypes.ListType([value(item) for item in data])

    environment = celpy.Environment()
    rules = schema_of(kind, version)["properties"]["spec"]["x-kubernetes-validations"]
    verdicts = [bool(environment.program(environment.compile(rule["rule"])).evaluate({"self": value(spec)}))
                for rule in rules]
    assert all(verdicts) == accepted
    obj = {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    if accepted:
        parse_config_object(obj)
    else:
        with pytest.raises(ValueError):
            parse_config_object(obj)
