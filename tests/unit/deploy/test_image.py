"""The container image, checked without building it: the Dockerfile's structure, the lock file of
pinned runtime dependencies, and the build context."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploy import lock
from services.cli import DEFAULT_HTTP_PORTS
from tests.unit.deploy.manifests import ROOT
from tests.unit.test_layers import imports_of, modules

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
NOT_FROM_THE_LOCK = "the venv was not installed from the lock: make clean venv (or refresh the lock: make lock)"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for word, argument in self.instructions if word == keyword]


def stages() -> list[Stage]:
    """The Dockerfile's stages: continuation lines joined, comments dropped, ``ARG``s before the first
    ``FROM`` substituted into ``FROM`` lines."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    arguments: dict[str, str] = {}
    found: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not found:
            name, _, default = argument.partition("=")
            arguments[name] = default
        elif keyword == "FROM":
            argument = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], argument)
            parts = argument.split()
            found.append(Stage(base=parts[0], name=parts[2] if len(parts) == 3 else None))
        else:
            found[-1].instructions.append((keyword, argument))
    return found


def test_every_base_image_is_pinned() -> None:
    for stage in stages():
        image, _, tag = stage.base.partition(":")
        assert image == "python"
        assert "@sha256:" in stage.base or re.fullmatch(r"3\.11\.\d+-slim-[a-z]+", tag), stage.base


def test_the_final_stage_runs_metalbus_as_a_non_root_user() -> None:
    final = stages()[-1]
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid not in ("0", "root") and (not uid.isdigit() or int(uid) >= 1000)
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["metalbus"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"metalbus": "services.cli:main"}
    exposed = {int(port) for argument in final.all("EXPOSE") for port in argument.split()}
    assert exposed == set(DEFAULT_HTTP_PORTS.values())


def test_no_build_tools_in_the_final_stage() -> None:
    build, final = stages()[0], stages()[-1]
    assert build.name == "build"
    copies = final.all("COPY")
    assert copies == ["--from=build /opt/metalbus /opt/metalbus"], "only the built environment is copied"
    runs = " ".join(final.all("RUN"))
    assert "pip uninstall --yes pip setuptools wheel" in runs
    assert not re.search(r"\b(apt-get|apk) (install|add)\b", " ".join(r for s in stages() for r in s.all("RUN")))
    assert "pip uninstall --yes setuptools pip" in " ".join(build.all("RUN"))


def test_dependencies_install_from_the_lock_only() -> None:
    runs = " ".join(stages()[0].all("RUN"))
    assert "--no-deps -r requirements.lock" in runs
    assert "--only-binary=:all:" in runs
    assert "--no-deps --no-build-isolation ." in runs


def _read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert re.fullmatch(r"[a-z0-9-]+", name) and re.fullmatch(r"[0-9][0-9a-z.+]*", version), line
            pins[name] = version
    return pins


def test_the_lock_pins_exactly_the_installed_runtime_dependencies() -> None:
    pins = _read_lock(LOCK)
    assert pins == lock.resolve(), NOT_FROM_THE_LOCK
    assert not {"pytest", "ruff", "mypy", "hypothesis", "kubernetes-validate"} & set(pins)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = re.split(r"[=<>~!\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, name


def test_the_dev_lock_pins_exactly_the_installed_dev_tools_and_nothing_of_the_runtime() -> None:
    pins = _read_lock(DEV_LOCK)
    assert pins == lock.resolve_dev(), NOT_FROM_THE_LOCK
    assert {"pytest", "ruff", "mypy", "hypothesis"} <= set(pins)
    assert not set(pins) & set(_read_lock(LOCK))


def test_installs_are_constrained_by_both_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCKS   = requirements.lock requirements-dev.lock" in makefile
    assert "$(addprefix -c ,$(LOCKS)) -e '.[dev]'" in makefile


def test_the_build_context_holds_only_what_the_build_copies() -> None:
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    assert ignored[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    copied = set()
    for stage in stages():
        for argument in stage.all("COPY"):
            if not argument.startswith("--from"):
                copied |= {source.rstrip("/") for source in argument.split()[:-1]}
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)


def _third_party_imports_of_the_shipped_code() -> set[str]:
    """Top-level names of every module ``services/`` and ``schemas/`` import that is neither the standard
    library nor the repository's own."""
    found = {name.split(".")[0] for folder in ("services", "schemas") for path in modules(folder)
             for name in imports_of(path)}
    return found - set(sys.stdlib_module_names) - {"services", "schemas", "__future__", ""}


def test_the_image_installs_what_the_shipped_code_imports_and_no_test_tool() -> None:
    """The image holds the runtime lock and nothing else: every module the code it runs imports must come
    from a pinned runtime distribution, and what only the tests use (scapy builds their frames) stays out."""
    pins = _read_lock(LOCK)
    providers = metadata.packages_distributions()
    missing = {name: providers.get(name) for name in _third_party_imports_of_the_shipped_code()
               if not {lock._key(d) for d in providers.get(name, [])} & set(pins)}
    assert not missing, f"imported by services/ or schemas/ but not installed in the image: {missing}"
    assert "scapy" not in pins
    assert "scapy" in _read_lock(DEV_LOCK)


def test_nothing_the_image_runs_imports_the_kubernetes_asyncio_client_it_removes() -> None:
    """The Dockerfile deletes ``kubernetes/aio`` (the client's asyncio twin, a third of the image's size)."""
    assert "shutil.rmtree(pathlib.Path(kubernetes.__file__).parent / 'aio')" in " ".join(stages()[0].all("RUN"))
    importing = [str(path) for folder in ("services", "schemas") for path in modules(folder)
                 if any(name == "kubernetes.aio" or name.startswith("kubernetes.aio.") for name in imports_of(path))]
    assert not importing, f"these import kubernetes.aio, which the image does not hold: {importing}"
