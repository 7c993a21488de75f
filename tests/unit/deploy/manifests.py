"""Shared helpers of the deployment tests: paths, rendered overlays, the CLI's view of a container."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from services.cli import build_parser
from tests.unit.deploy.kustomize import Obj, pod_spec, render

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
EXAMPLES = ROOT / "examples"
COMMANDS = ("watcher", "ipam", "announcer")

#: Variables a container may set that no ``metalbus`` option reads: the instance name (runtime), a
#: password only interpolated into NATS_URL, and OpenTelemetry's own configuration.
NOT_OPTIONS = re.compile(r"^(POD_NAME|NATS_PASSWORD|OTEL_[A-Z_]+)$")


@cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(render(K8S / "overlays" / overlay))


def find(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def metalbus_containers(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, container) for every container running the metalbus image."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec["containers"]:
            if container["image"].rsplit("/", 1)[-1].startswith("metalbus:"):
                yield obj, container


def env_values(container: Obj) -> dict[str, str]:
    """Literal env values, with ``$(VAR)`` references expanded as the kubelet does (others: a marker)."""
    values: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            values[entry["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                           lambda m: values.get(m.group(1), m.group(0)), entry["value"])
        else:
            values[entry["name"]] = f"<{entry['name']} from the downward API or a Secret>"
    return values


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for name in list(os.environ):
        if name in values or name.startswith(("METALBUS_", "NATS_")) or name in ("KUBECONFIG", "NODE_NAME"):
            del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse(argv: list[str], env: Mapping[str, str]) -> argparse.Namespace:
    """What ``metalbus argv`` would run with, in this environment (SystemExit on unknown flags)."""
    with environment(env):
        return build_parser().parse_args(argv)


def options_set_by_env(argv: list[str], names: Iterable[str]) -> dict[str, set[str]]:
    """For each variable, the options of ``metalbus argv`` it sets (probed with a value no default has)."""
    baseline = vars(parse(argv, {}))
    changed: dict[str, set[str]] = {}
    for name in names:
        for probe in ("54321", "probe-value"):
            try:
                with_it = vars(parse(argv, {name: probe}))
            except (SystemExit, ValueError):
                continue  # a number read with int(): the other probe tells
            changed[name] = {key for key in with_it if with_it[key] != baseline.get(key)}
            if changed[name]:
                break
    return changed


def as_dict(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict)
    return value
