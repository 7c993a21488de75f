"""The layers stay visible: schemas ← services/common ← each service; services never import each other;
the pure modules named in docs/architecture.md import no I/O, clock or randomness, not even indirectly."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SERVICES = ("watcher", "ipam", "announcer", "authenticator")
TOOLS = ("operator", "lab")  # operator commands read the bus; they may not reach into a service either
#: What a component may import besides services.common and itself: the lab shows what the operator tools do.
USES = {"lab": ("services.operator",)}
#: What a pure module may not import, directly or through a module of this repository.
IMPURE = ("nats", "kubernetes", "scapy", "opentelemetry", "socket", "time", "random")
PROJECT = ("schemas", "services")


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports (relative imports resolved), at any depth of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return frozenset(found)


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def forbidden_imports(folder: str, prefixes: tuple[str, ...], *, allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(folder)
        for name in sorted(imports_of(path))
        if within(name, prefixes) and not within(name, allowed)
    ]


def source_of(module: str) -> Path | None:
    """The file of one of this repository's modules (None: not one, or a name inside a module)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def impure_imports(path: Path) -> list[str]:
    """Chains from ``path`` to an impure module, through this repository's modules."""
    chains: list[str] = []
    seen: set[Path] = {path}
    todo: list[tuple[Path, str]] = [(path, str(path.relative_to(ROOT)))]
    while todo:
        current, chain = todo.pop()
        for name in sorted(imports_of(current)):
            if within(name, IMPURE):
                chains.append(f"{chain} → {name}")
            elif (within(name, PROJECT) and (source := source_of(name)) is not None and source not in seen
                  and not (source.name == "__init__.py" and current.is_relative_to(source.parent))):
                # (a module's own package is where it lives, not something it uses)
                seen.add(source)
                todo.append((source, f"{chain} → {name}"))
    return chains


def pure_modules() -> list[Path]:
    """The files of the modules docs/architecture.md lists as pure (folders: every module in them)."""
    text = ARCHITECTURE.read_text()
    listed = re.search(r"<!-- pure modules: begin -->(.*?)<!-- pure modules: end -->", text, re.S)
    assert listed is not None, "docs/architecture.md lists no pure modules"
    paths: list[Path] = []
    for name in re.findall(r"`((?:schemas|services)/[\w/]*(?:/|\.py))`", listed.group(1)):
        path = ROOT / name
        assert path.exists(), f"docs/architecture.md names a pure module that is not there: {name}"
        paths.extend(modules(name) if path.is_dir() else [path])
    return paths


def test_schemas_depend_on_nothing_of_the_services() -> None:
    assert forbidden_imports("schemas", ("services",)) == []


def test_the_shared_runtime_depends_on_no_service() -> None:
    assert forbidden_imports("services/common", ("services",), allowed=("services.common",)) == []


@pytest.mark.parametrize("component", SERVICES + TOOLS)
def test_a_service_or_tool_imports_no_other_nor_the_command_line(component: str) -> None:
    allowed = ("services.common", f"services.{component}", *USES.get(component, ()))
    assert forbidden_imports(f"services/{component}", ("services",), allowed=allowed) == []


def test_the_pure_modules_are_listed() -> None:
    listed = {path.relative_to(ROOT).as_posix() for path in pure_modules()}
    assert {"services/ipam/decider.py", "services/announcer/l2/arp.py", "services/announcer/bgp/session.py"} <= listed


@pytest.mark.parametrize("path", pure_modules(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_a_pure_module_imports_no_io_clock_or_randomness(path: Path) -> None:
    assert impure_imports(path) == []
