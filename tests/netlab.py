"""A small Linux network-namespace lab for network tests (needs root and `ip` from iproute2).

    with Lab("mbl2") as lab:
        br = lab.namespace("br")
        lab.bridge(br)
        node = lab.namespace("node1")
        lab.link(node, bridge_ns=br, addresses=["10.0.0.1/24", "fd00::1/64"])
        lab.veth(node, lab.namespace("router"), ifname_a="eth1", addresses_a=["10.1.0.2/30"])
        lab.run(node, "ip", "-br", "addr")
        proc = lab.popen(node, sys.executable, "-m", "some.module")

Namespaces are named `<prefix>-<random>-<role>`; IPv6 DAD is off and addresses survive link down in every
namespace; bridges have multicast snooping off. `link()` attaches a namespace to a bridge port, `veth()`
joins two namespaces directly. `close()` (also on leaving the `with`) kills every process started through
the lab or still inside its namespaces, then deletes the namespaces and with them every veth.
`skip_reason()` says why a lab cannot run here; `wait_for()` waits on a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def skip_reason(*tools: str) -> str | None:
    """None when a lab can run here (root, `ip netns` working, `tools` on PATH); else why not."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` unavailable: {probe.stderr.strip()}"
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (Debian: iputils-arping, ndisc6, tcpdump)"
    return None


def wait_for(
    condition: Callable[[], T | None], *, timeout: float, message: str = "condition", interval: float = 0.02
) -> T:
    """Evaluate `condition` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class Lab:
    def __init__(self, prefix: str = "mblab") -> None:
        self.prefix = f"{prefix}-{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def namespace(self, role: str) -> str:
        """Create a namespace with loopback up, DAD off and addresses kept on link down."""
        name = f"{self.prefix}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        return self._prepared(name)

    def adopt(self, role: str, pid: int) -> str:
        """Name the network namespace of process ``pid`` (a container's) as one of the lab's and set it up
        as :meth:`namespace` does. On close its processes are killed and the name removed."""
        name = f"{self.prefix}-{role}"
        subprocess.run(["ip", "netns", "attach", name, str(pid)], check=True, capture_output=True)
        return self._prepared(name)

    def _prepared(self, name: str) -> str:
        self.namespaces.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")
        for scope in ("all", "default"):
            self.sysctl(name, f"net.ipv6.conf.{scope}.accept_dad", "0")
            self.sysctl(name, f"net.ipv6.conf.{scope}.keep_addr_on_down", "1")
        return name

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.run(ns, "sh", "-c", f"echo {value} > /proc/sys/{key.replace('.', '/')}")

    def bridge(self, ns: str, name: str = "br0") -> None:
        """A Linux bridge, up, without multicast snooping (so NDP multicast floods to every port)."""
        self.run(ns, "ip", "link", "add", name, "type", "bridge", "mcast_snooping", "0")
        self.run(ns, "ip", "link", "set", name, "up")

    def link(
        self,
        ns: str,
        *,
        bridge_ns: str,
        bridge: str = "br0",
        ifname: str = "eth0",
        addresses: Sequence[str] = (),
        mac: str | None = None,
    ) -> str:
        """A veth from `ns` (named `ifname`, up, with `addresses`) to a port of `bridge` in `bridge_ns`.
        Returns the port's name in `bridge_ns`."""
        port = f"p{len(self.namespaces)}{secrets.token_hex(2)}"[:15]
        self.run(bridge_ns, "ip", "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
        self.run(bridge_ns, "ip", "link", "set", port, "master", bridge, "up")
        if mac is not None:
            self.run(ns, "ip", "link", "set", ifname, "address", mac)
        self._configure(ns, ifname, addresses)
        return port

    def veth(
        self,
        a: str,
        b: str,
        *,
        ifname_a: str = "eth0",
        ifname_b: str = "eth0",
        addresses_a: Sequence[str] = (),
        addresses_b: Sequence[str] = (),
    ) -> None:
        """A point-to-point veth between namespaces `a` and `b` (no bridge), both ends up."""
        self.run(a, "ip", "link", "add", ifname_a, "type", "veth", "peer", "name", ifname_b, "netns", b)
        for ns, ifname, addresses in ((a, ifname_a, addresses_a), (b, ifname_b, addresses_b)):
            self._configure(ns, ifname, addresses)

    def _configure(self, ns: str, ifname: str, addresses: Sequence[str]) -> None:
        self.sysctl(ns, f"net.ipv6.conf.{ifname}.accept_dad", "0")
        self.sysctl(ns, f"net.ipv6.conf.{ifname}.keep_addr_on_down", "1")
        for address in addresses:
            extra = ["nodad"] if ":" in address else []
            self.run(ns, "ip", "addr", "add", address, "dev", ifname, *extra)
        self.run(ns, "ip", "link", "set", ifname, "up")

    def mac(self, ns: str, ifname: str = "eth0") -> str:
        return self.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()

    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside `ns` and wait for it; raises on a non-zero exit when `check`."""
        result = subprocess.run(
            ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} in {ns} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def popen(self, ns: str, *cmd: str, stdin: int | None = subprocess.PIPE, root: Path = REPO
              ) -> subprocess.Popen[str]:
        """Start `cmd` inside `ns` with pipes (text, line-buffered), in `root` (the repository, or a release's
        source tree) and with it on PYTHONPATH. The lab kills it on close."""
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=root,
            env=env,
        )
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            _stop(proc)
        self.processes.clear()
        for ns in reversed(self.namespaces):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.namespaces.clear()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def management_network(lab: Lab) -> Iterator[tuple[str, str]]:
    """A namespace with bridge `mg0`, joined to this host by a veth carrying `<subnet>.1/24`, so processes
    on this host (NATS, ipam) and the lab's namespaces reach each other. Yields (namespace, subnet); nodes
    join with `lab.link(ns, bridge_ns=mgmt, bridge="mg0", ...)`. The host end is removed on exit."""
    subnet = f"10.254.{secrets.randbelow(250) + 1}"
    host_port = f"mb{secrets.token_hex(4)}"
    mgmt = lab.namespace("mg")
    lab.bridge(mgmt, "mg0")
    subprocess.run(["ip", "link", "add", host_port, "type", "veth", "peer", "name", "up0", "netns", mgmt], check=True)
    try:
        lab.run(mgmt, "ip", "link", "set", "up0", "master", "mg0", "up")
        subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", host_port], check=True)
        subprocess.run(["ip", "link", "set", host_port, "up"], check=True)
        yield mgmt, subnet
    finally:
        subprocess.run(["ip", "link", "del", host_port], capture_output=True, check=False)
