"""A small kustomize renderer for the subset ``k8s/`` uses, so tests need neither kubectl nor a network.

Supported: ``resources`` (files, and directories holding a kustomization), ``patches`` given as a
``path`` to a JSON 6902 operation list with a ``target`` (kind, name, and optionally group, version,
namespace), and ``images`` (``newName``, ``newTag``, ``digest``). Anything else in a kustomization is
refused, so the manifests cannot drift into features these tests would silently ignore.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KNOWN_FIELDS = frozenset({"apiVersion", "kind", "resources", "patches", "images"})


class KubeLoader(yaml.SafeLoader):
    """YAML as the Kubernetes API reads it: ``1234:1`` stays a string (no YAML 1.1 base-60 integers)."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if not (tag == "tag:yaml.org,2002:int" and ":" in regexp.pattern)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Integers without the sexagesimal branch.
KubeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def load_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=KubeLoader) if doc]


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize directory`` would print (in resource order)."""
    kustomization = yaml.load((directory / "kustomization.yaml").read_text(), Loader=KubeLoader)
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise ValueError(f"{directory}: kustomization fields this renderer does not support: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources") or []:
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches") or []:
        operations = yaml.load((directory / patch["path"]).read_text(), Loader=KubeLoader)
        targets = [obj for obj in objects if _matches(obj, patch["target"])]
        if not targets:
            raise ValueError(f"{directory}: patch {patch['path']} matches no object: {patch['target']}")
        for target in targets:
            apply_json6902(target, operations)
    for image in kustomization.get("images") or []:
        for obj in objects:
            _set_image(obj, image)
    return objects


def _matches(obj: Obj, target: Mapping[str, str]) -> bool:
    group, _, version = obj.get("apiVersion", "").rpartition("/")
    metadata = obj.get("metadata") or {}
    wanted = {
        "kind": obj.get("kind"), "name": metadata.get("name"), "namespace": metadata.get("namespace"),
        "group": group, "version": version,
    }
    return all(wanted.get(key) == value for key, value in target.items())


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"not a JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(document: Any, parts: list[str]) -> Any:
    for part in parts:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def apply_json6902(document: Obj, operations: list[Obj]) -> None:
    """RFC 6902 add / replace / remove / test, in place."""
    for operation in operations:
        parts = _pointer(operation["path"])
        parent = _walk(document, parts[:-1])
        last = parts[-1]
        op = operation["op"]
        value = copy.deepcopy(operation.get("value"))
        if op == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent[last]
            if current != value:
                raise ValueError(f"test failed at {operation['path']}: {current!r} != {value!r}")
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op == "replace":
            if isinstance(parent, list):
                parent[int(last)] = value
            else:
                if last not in parent:
                    raise ValueError(f"replace of a missing member {operation['path']}")
                parent[last] = value
        elif op == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), value)
            else:
                parent[last] = value
        else:
            raise ValueError(f"unsupported JSON patch op {op!r}")


def pod_spec(obj: Obj) -> Obj | None:
    if obj.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def _set_image(obj: Obj, image: Mapping[str, str]) -> None:
    spec = pod_spec(obj)
    if spec is None:
        return
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        name, tag = _split_image(container["image"])
        if name != image["name"]:
            continue
        new_name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{new_name}@{image['digest']}"
        else:
            container["image"] = f"{new_name}:{image.get('newTag', tag)}"


def _split_image(reference: str) -> tuple[str, str]:
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return reference, "latest"
    return name, tag
