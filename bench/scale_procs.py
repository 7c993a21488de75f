"""Processes of ``bench/scale.py``: children with their logs, what /proc says of them, their /metrics, and
the network namespaces the real announcers run in (so they answer ARP on no real network).

Imports nothing of the code tree under test: the runner imports this before it puts that tree on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mb(pid: int, key: str = "VmRSS") -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no {key} for pid {pid}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return str(answer.read().decode())


def metric_values(text: str, name: str) -> list[float]:
    """Every sample of metric ``name`` (any labels) in a Prometheus text page."""
    values = []
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in {" ", "{"}:
            with contextlib.suppress(ValueError, IndexError):
                values.append(float(line.rsplit(None, 1)[1]))
    return values


class Child:
    """A service process, its output in a log file; stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, command: list[str], *, cwd: Path, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.started = time.monotonic()
        with self.log_path.open("wb") as sink:
            self.popen = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, number)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop it (SIGTERM, SIGKILL after ``timeout``); whether it stopped on SIGTERM (or had already)."""
        if self.popen.poll() is not None:
            return True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM for {timeout} s: SIGKILL")
            self.popen.kill()
            self.popen.wait()
            return False
        return True


@dataclass
class NodeNamespaces:
    """One network namespace per real announcer, joined to this host by a point-to-point veth (the host end
    ``10.253.T.4i+1/30``, the namespace's ``mgmt0`` ``4i+2``), with a veth pair of its own (``eth0``, ``wire0``)
    for the L2 agent to answer on. The NATS server listens on the first host end, which every namespace
    reaches through its own link (a local address of this host)."""

    count: int
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = field(default_factory=lambda: f"10.253.{secrets.randbelow(250) + 1}")
    names: list[str] = field(default_factory=list)

    @property
    def server_host(self) -> str:
        return f"{self.subnet}.1"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{4 * index + 2}"

    def _host_end(self, index: int) -> str:
        return f"mbs{self.tag}h{index}"

    def create(self) -> None:
        for index in range(self.count):
            name = f"mbscale-{self.tag}-{index}"
            _ip("netns", "add", name)
            self.names.append(name)
            host_end, gateway = self._host_end(index), f"{self.subnet}.{4 * index + 1}"
            _ip("link", "add", host_end, "type", "veth", "peer", "name", "mgmt0", "netns", name)
            _ip("addr", "add", f"{gateway}/30", "dev", host_end)
            _ip("link", "set", host_end, "up")
            inside = ["ip", "netns", "exec", name, "sh", "-c",
                      "ip link set lo up && ip link set mgmt0 up"
                      f" && ip addr add {self.address(index)}/30 dev mgmt0"
                      f" && ip route add default via {gateway}"
                      " && ip link add eth0 type veth peer name wire0 && ip link set wire0 up"
                      f" && ip addr add 10.127.{index}.2/24 dev eth0 && ip link set eth0 up"]
            subprocess.run(inside, check=True, capture_output=True)

    def command(self, index: int, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[index], *command]

    def remove(self) -> None:
        for index, name in enumerate(self.names):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "link", "del", self._host_end(index)], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.names.clear()


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True)
