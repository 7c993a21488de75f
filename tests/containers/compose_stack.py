"""The local compose stack (``compose/compose.local.yaml``) driven by Debian's ``docker-compose`` against the
tests' engine.

    with local_stack(engine, metalbus_image=image, debian_image=base) as stack:
        stack.exec("client", "arping", "-c", "1", "172.30.0.200")

Entering builds the images the stack builds from its own Dockerfiles (the router's and the client's, on
``debian_image``), then brings the stack up with the metalbus image the session built (``METALBUS_IMAGE``)
instead of building it again. Leaving takes it all down — containers, the network, the volumes — also when
the block failed, after printing what every service wrote.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from tests.containers.engine import Engine, EngineError
from tests.containers.images import REPO

COMPOSE_FILE = REPO / "compose" / "compose.local.yaml"
#: The project every test stack runs as (the stack's addresses are fixed: one stack per engine at a time).
PROJECT = "metalbus-local-test"
#: The label compose puts on everything of a project (containers, networks, volumes).
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
#: The metalbus image's context in the stack's build sections: the repository, the Dockerfile at its root.
METALBUS_CONTEXT = ".."
UP_TIMEOUT = 300.0


def compose_skip_reason() -> str | None:
    """None when ``docker-compose`` is here; else why the stack cannot be run."""
    if shutil.which("docker-compose") is None:
        return "docker-compose is not installed (Debian: docker-compose)"
    return None


def stack_definition() -> dict[str, Any]:
    definition: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return definition


def built_here() -> list[str]:
    """The services whose images the stack builds from Dockerfiles of its own (not the metalbus image)."""
    return [name for name, service in stack_definition()["services"].items()
            if "build" in service and service["build"]["context"] != METALBUS_CONTEXT]


@dataclass
class Stack:
    """One compose project on ``engine``."""

    engine: Engine
    metalbus_image: str
    debian_image: str
    project: str = PROJECT

    @property
    def environment(self) -> dict[str, str]:
        return {**self.engine.environment, "METALBUS_IMAGE": self.metalbus_image,
                "DEBIAN_IMAGE": self.debian_image, "COMPOSE_DOCKER_CLI_BUILD": "0"}

    def compose(self, *arguments: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker-compose -p PROJECT -f compose.local.yaml ARGUMENTS``; raises :class:`EngineError` on failure
        when ``check``."""
        result = subprocess.run(["docker-compose", "--ansi", "never", "-p", self.project, "-f", str(COMPOSE_FILE),
                                 *arguments],
                                env=self.environment, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise EngineError(f"docker-compose {' '.join(arguments[:2])} exited {result.returncode}: "
                              f"{(result.stdout + result.stderr).strip()[-3000:]}")
        return result

    @cached_property
    def containers(self) -> dict[str, str]:
        """Service name → the id of its (one) container, as compose labelled them."""
        listed = self.engine.docker("ps", "--all", "--filter", f"label={PROJECT_LABEL}={self.project}",
                                    "--format", f'{{{{.Label "{SERVICE_LABEL}"}}}} {{{{.ID}}}}').stdout
        return dict(line.split() for line in listed.splitlines() if line.strip())

    def exec(self, service: str, *command: str, check: bool = False,
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``COMMAND`` run in ``service``'s container (``docker exec``: quicker than ``docker-compose exec``)."""
        return self.engine.docker("exec", self.containers[service], *command, check=check, timeout=timeout)

    def left_behind(self) -> dict[str, list[str]]:
        """What of the project the engine still holds: containers, networks, volumes (empty lists once down)."""
        label = f"label={PROJECT_LABEL}={self.project}"
        return {
            kind: self.engine.docker(*listing, "--quiet", "--filter", label).stdout.split()
            for kind, listing in (("containers", ("ps", "--all")), ("networks", ("network", "ls")),
                                  ("volumes", ("volume", "ls")))
        }

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)

    def print_logs(self) -> None:
        print(f"--- what the services of {self.project} wrote ---")
        print(self.compose("logs", "--no-color", "--tail", "60", check=False).stdout)


@contextlib.contextmanager
def local_stack(engine: Engine, *, metalbus_image: str, debian_image: str) -> Iterator[Stack]:
    """The stack up (its own images built first); taken down on leaving, whatever happened."""
    stack = Stack(engine, metalbus_image=metalbus_image, debian_image=debian_image)
    stack.down()  # a stack an interrupted run left in an engine that outlives test sessions
    try:
        stack.compose("build", *built_here(), timeout=900)
        stack.compose("up", "--detach", "--no-build", timeout=UP_TIMEOUT)
        yield stack
    except BaseException:
        stack.print_logs()
        raise
    finally:
        stack.down()
