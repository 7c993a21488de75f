"""The layers stay visible: schemas ← services/common ← each service; services never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("watcher", "ipam", "announcer")
TOOLS = ("operator", "lab")  # operator commands read the bus; they may not reach into a service either


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def forbidden_imports(folder: str, prefixes: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(folder)
        for name in sorted(imports_of(path))
        if name.startswith(prefixes)
    ]


def test_schemas_depend_on_nothing_of_the_services() -> None:
    assert forbidden_imports("schemas", ("services",)) == []


def test_the_shared_runtime_depends_on_no_service() -> None:
    assert forbidden_imports("services/common", tuple(f"services.{s}" for s in (*SERVICES, *TOOLS))) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    others = tuple(f"services.{other}" for other in (*SERVICES, *TOOLS) if other != service)
    assert forbidden_imports(f"services/{service}", others) == []


def test_operator_tools_read_the_bus_not_the_services_internals() -> None:
    assert forbidden_imports("services/operator", tuple(f"services.{s}." for s in ("ipam", "announcer"))) == []
