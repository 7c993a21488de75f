"""A private Docker engine for tests that run the image: Debian's ``dockerd``, started by the test session.

    with running_engine() as engine:
        engine.docker("image", "ls")
        with engine.container("--network", "none", image, "--help") as name:
            pid = engine.pid_of(name)

It runs as root with its own data root, exec root, socket and pid file, and touches nothing of the host's
networking: no iptables rules, no masquerading, no ``docker0`` bridge, no ``ip_forward`` change. Containers
get ``--network host`` or ``--network none`` (then a test wires the container's namespace itself, by moving a
veth into it). Builds use the classic builder (``DOCKER_BUILDKIT=0``): BuildKit would fetch the Dockerfile
frontend that ``# syntax=`` names from a registry, and none is reachable.

Leaving the block removes every container the tests started, stops a private engine and deletes its
directories (images and whatever else it holds go with them), also when a test failed. :func:`skip_reason`
says why no engine can run here (not root, no ``dockerd``). ``METALBUS_TEST_DOCKER_HOST`` names an engine
already running to use instead of a private one (its images are kept; only the containers the tests started
are removed).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.common.nats_server import detach_but_die_with_parent

#: An engine already running to use instead of starting one (``unix:///run/docker.sock``, ``tcp://...``).
EXISTING_ENGINE_VARIABLE = "METALBUS_TEST_DOCKER_HOST"
#: The label every container started through :meth:`Engine.container` carries, so cleaning up finds them.
TEST_LABEL = "org.metalbus.test"

#: ``dockerd`` as these tests run it: nothing of the host's network is changed.
DOCKERD_FLAGS = ("--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
                 "--storage-driver=overlay2", "--log-level=warn")
STARTUP_TIMEOUT = 60.0


def docker_client() -> str | None:
    """The ``docker`` command line: Debian's, beside its ``dockerd`` (same API version), else the one on PATH."""
    packaged = Path("/usr/bin/docker")
    return str(packaged) if packaged.is_file() else shutil.which("docker")


def skip_reason() -> str | None:
    """None when an engine can run here; else why not (the reason a test is skipped with)."""
    if docker_client() is None:
        return "no docker command line (Debian: docker.io)"
    if os.environ.get(EXISTING_ENGINE_VARIABLE):
        return None
    if os.geteuid() != 0:
        return "a private container engine needs root"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (Debian: docker.io)"
    return None


class EngineError(RuntimeError):
    """A docker command failed: the command and its output say why."""


class EngineUnavailable(EngineError):
    """The engine did not start or does not answer: the reason a test is skipped with."""


@dataclass
class Engine:
    """A Docker engine the tests talk to through ``DOCKER_HOST``."""

    host: str
    containers: list[str] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """The environment a ``docker`` (or ``docker-compose``) command needs to reach this engine."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def docker(self, *arguments: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGUMENTS`` against this engine; raises :class:`EngineError` on failure when ``check``."""
        client = docker_client()
        if client is None:
            raise EngineError("no docker command line")
        result = subprocess.run([client, *arguments], env=self.environment, capture_output=True, text=True,
                                errors="replace", timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise EngineError(f"docker {' '.join(arguments[:3])} ... exited {result.returncode}: "
                              f"{(result.stdout + result.stderr).strip()[-3000:]}")
        return result

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def pid_of(self, container: str) -> int:
        """The host pid of a running container's first process (its namespaces are ``/proc/PID/ns/*``)."""
        return int(self.docker("inspect", "--format", "{{.State.Pid}}", container).stdout.strip())

    def logs(self, container: str) -> str:
        """What the container wrote, stdout and stderr together."""
        result = self.docker("logs", container, check=False)
        return result.stdout + result.stderr

    def start(self, *arguments: str, name: str | None = None) -> str:
        """``docker run --detach ARGUMENTS`` (options, image, command); returns the container's name. The
        container is labelled as a test's and removed by :meth:`remove_all` at the latest."""
        name = name or f"metalbus-test-{secrets.token_hex(4)}"
        self.containers.append(name)
        self.docker("run", "--detach", "--name", name, "--label", TEST_LABEL, *arguments)
        return name

    @contextlib.contextmanager
    def container(self, *arguments: str, name: str | None = None) -> Iterator[str]:
        """A container started as :meth:`start` does, removed (killed first) when the block is left. When the
        block fails, the container's output is printed, to appear with the failure."""
        started = self.start(*arguments, name=name)
        try:
            yield started
        except BaseException:
            print(f"--- output of container {started} ---\n{self.logs(started)}")
            raise
        finally:
            self.remove(started)

    def remove(self, container: str) -> None:
        self.docker("rm", "--force", "--volumes", container, check=False)
        with contextlib.suppress(ValueError):
            self.containers.remove(container)

    def remove_all(self) -> None:
        """Every container a test started, still running or not."""
        listed = self.docker("ps", "--all", "--quiet", "--filter", f"label={TEST_LABEL}", check=False)
        for container in [*listed.stdout.split(), *self.containers]:
            self.docker("rm", "--force", "--volumes", container, check=False)
        self.containers.clear()


@contextlib.contextmanager
def running_engine(directory: Path | None = None) -> Iterator[Engine]:
    """A running engine (``Engine.host`` is its ``DOCKER_HOST``): the one ``METALBUS_TEST_DOCKER_HOST``
    names, else a private ``dockerd`` whose data lives under ``directory`` (a temporary one by default) and
    is deleted on leaving. Raises :class:`EngineUnavailable` when the engine does not answer."""
    existing = os.environ.get(EXISTING_ENGINE_VARIABLE)
    if existing:
        engine = Engine(host=existing)
        answer = engine.docker("version", check=False, timeout=STARTUP_TIMEOUT)
        if answer.returncode != 0:
            raise EngineUnavailable(f"the engine at {existing} does not answer: {answer.stderr.strip()}")
        try:
            yield engine
        finally:
            engine.remove_all()
        return
    # A short path: the engine's unix sockets (its own and containerd's) must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="mbdk-", dir=directory))
    daemon = _start_dockerd(root)
    engine = Engine(host=f"unix://{root / 'docker.sock'}")
    try:
        _wait_until_ready(engine, daemon, root / "dockerd.log")
        yield engine
    finally:
        with contextlib.suppress(Exception):
            engine.remove_all()
        _stop_dockerd(daemon)
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def _start_dockerd(root: Path) -> subprocess.Popen[bytes]:
    with (root / "dockerd.log").open("ab") as log:
        return subprocess.Popen(
            ["dockerd", *DOCKERD_FLAGS, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--host", f"unix://{root / 'docker.sock'}", "--pidfile", str(root / "dockerd.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=detach_but_die_with_parent,
        )


def _wait_until_ready(engine: Engine, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while engine.docker("version", check=False, timeout=10).returncode != 0:
        if daemon.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise EngineUnavailable("dockerd did not start: " + "\n".join(tail))
        time.sleep(0.2)  # polling the engine's socket until it answers, with a deadline


def _stop_dockerd(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM (dockerd stops its containerd and containers), SIGKILL after 30 s; the engine's own process
    group goes with it."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(daemon.pid, signal.SIGKILL)


def _unmount_below(root: Path) -> None:
    """Unmount whatever the engine left mounted under ``root`` (deepest first), so it can be deleted."""
    mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((m for m in mounted if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)



def run_once(engine: Engine, image: str, *command: str, options: Sequence[str] = (),
             timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``docker run --rm [OPTIONS] IMAGE COMMAND`` (the test's label on it), waited for; its status unchecked."""
    return engine.docker("run", "--rm", "--label", TEST_LABEL, *options, image, *command,
                         check=False, timeout=timeout)
