"""Namespaces, links and processes of the lab on this host (needs root and iproute2).

Every process the lab starts carries ``METALBUS_LAB=<prefix>`` in its environment, so teardown can
find it by that mark even when the state file lost its pid; processes inside the lab's namespaces
are also found with ``ip netns pids``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from services.lab.state import LabState

LAB_MARK = "METALBUS_LAB"


class LabError(RuntimeError):
    """A step of building the lab failed; the message says which."""


def run(
    *cmd: str, ns: str | None = None, check: bool = True, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        where = f" in {ns}" if ns else ""
        raise LabError(f"`{' '.join(cmd)}`{where} exited {result.returncode}: {result.stderr.strip()}")
    return result


class Host:
    """Builds the lab's pieces, recording each in ``state`` (saved to ``state_file``) before using it."""

    def __init__(self, state: LabState, state_file: Path) -> None:
        self.state = state
        self.state_file = state_file

    def _save(self) -> None:
        self.state.save(self.state_file)

    def namespace(self, name: str) -> str:
        self.state.namespaces.append(name)
        self._save()
        run("ip", "netns", "add", name)
        run("ip", "link", "set", "lo", "up", ns=name)
        for scope in ("all", "default"):
            self.sysctl(name, f"net.ipv6.conf.{scope}.accept_dad", "0")
            self.sysctl(name, f"net.ipv6.conf.{scope}.keep_addr_on_down", "1")
        return name

    @staticmethod
    def sysctl(ns: str, key: str, value: str) -> None:
        run("sh", "-c", f"echo {value} > /proc/sys/{key.replace('.', '/')}", ns=ns)

    @staticmethod
    def bridge(ns: str, name: str) -> None:
        run("ip", "link", "add", name, "type", "bridge", "mcast_snooping", "0", ns=ns)
        run("ip", "link", "set", name, "up", ns=ns)

    def attach(self, ns: str, *, bridge_ns: str, bridge: str, ifname: str, addresses: Sequence[str]) -> None:
        """A veth from ``ns`` (``ifname``) to a port of ``bridge``."""
        port = f"{ifname[:4]}-{ns[-8:]}"[:15]
        run("ip", "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns, ns=bridge_ns)
        run("ip", "link", "set", port, "master", bridge, "up", ns=bridge_ns)
        self.configure(ns, ifname, addresses)

    def uplink(self, name: str, *, bridge_ns: str, bridge: str, address: str) -> None:
        """A veth from this host's namespace (``name``) to ``bridge``: how host processes reach the lab."""
        self.state.links.append(name)
        self._save()
        run("ip", "link", "add", name, "type", "veth", "peer", "name", "up0", "netns", bridge_ns)
        run("ip", "link", "set", "up0", "master", bridge, "up", ns=bridge_ns)
        run("ip", "addr", "add", address, "dev", name)
        run("ip", "link", "set", name, "up")

    def configure(self, ns: str, ifname: str, addresses: Sequence[str]) -> None:
        self.sysctl(ns, f"net.ipv6.conf.{ifname}.accept_dad", "0")
        self.sysctl(ns, f"net.ipv6.conf.{ifname}.keep_addr_on_down", "1")
        for address in addresses:
            run("ip", "addr", "add", address, "dev", ifname, *(["nodad"] if ":" in address else []), ns=ns)
        run("ip", "link", "set", ifname, "up", ns=ns)

    def start(self, role: str, cmd: Sequence[str], *, log_dir: Path, ns: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``cmd`` detached (its own session, output to ``log_dir/role.log``) and record its pid."""
        log_dir.mkdir(parents=True, exist_ok=True)
        full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
        environment = {**os.environ, **(env or {}), LAB_MARK: self.state.prefix, "PYTHONUNBUFFERED": "1"}
        with open(log_dir / f"{role}.log", "ab") as log:
            process = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=environment, start_new_session=True)
        self.state.pids[role] = process.pid
        self._save()
        return process


# --- teardown ---------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return True


def marked_pids(prefix: str) -> list[int]:
    """Processes whose environment carries this lab's mark."""
    mark = f"{LAB_MARK}={prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def lab_namespaces(prefix: str) -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [name for name in names if name.startswith(f"{prefix}-")]


def namespace_pids(ns: str) -> list[int]:
    out = run("ip", "netns", "pids", ns, check=False).stdout
    return [int(pid) for pid in out.split() if pid.isdigit()]


def stop_pids(pids: Sequence[int], *, grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    pids = [pid for pid in dict.fromkeys(pids) if pid != os.getpid() and _alive(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def teardown(prefix: str, state: LabState | None) -> list[str]:
    """Stop every process of the lab, delete its namespaces and links; what was removed, in words."""
    removed: list[str] = []
    recorded = list(state.pids.values()) if state else []
    pids = [p for p in recorded if _alive(p)] + marked_pids(prefix)
    namespaces = sorted(set(lab_namespaces(prefix)) | set(state.namespaces if state else ()))
    for ns in namespaces:
        pids += namespace_pids(ns)
    alive = [pid for pid in dict.fromkeys(pids) if _alive(pid)]
    stop_pids(alive)
    if alive:
        removed.append(f"{len(alive)} processes")
    for ns in namespaces:
        stop_pids(namespace_pids(ns), grace=1.0)
        if run("ip", "netns", "del", ns, check=False).returncode == 0:
            removed.append(f"namespace {ns}")
    for link in dict.fromkeys([*(state.links if state else ()), f"{prefix}-up"]):
        if run("ip", "link", "del", link, check=False).returncode == 0:
            removed.append(f"link {link}")
    return removed
