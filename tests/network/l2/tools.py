"""Driving the standalone L2 responder and the client-side tools (arping, ndisc6, ip neigh) in a lab."""

from __future__ import annotations

import collections
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.netlab import Lab

Event = dict[str, Any]
_REPLY = re.compile(r"reply from (\S+) \[([0-9A-Fa-f:]{17})\]\s+([0-9.]+)ms")
_TARGET = re.compile(r"Target link-layer address: ([0-9A-Fa-f:]{17})")


class Announcer:
    """`python -m services.announcer.l2.standalone --control-stdin` in a namespace, driven by JSON lines."""

    def __init__(self, lab: Lab, ns: str, *args: str, ready_timeout: float = 10.0) -> None:
        self.ns = ns
        self.proc = lab.popen(
            ns, sys.executable, "-m", "services.announcer.l2.standalone", "--control-stdin", "--log-level", "INFO",
            *args,
        )  # fmt: skip
        self.events: list[Event] = []
        self.log: collections.deque[str] = collections.deque(maxlen=500)  # the last lines of stderr
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_log, daemon=True).start()
        self.ready = self.expect(lambda e: e["event"] == "ready", timeout=ready_timeout)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_log(self) -> None:  # an unread stderr pipe would block the announcer once full
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def expect(self, match: Callable[[Event], bool], *, timeout: float = 5.0) -> Event:
        """The next event satisfying `match` (earlier ones are kept in `events`)."""
        for event in self.events:
            if match(event):
                self.events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise TimeoutError(f"no matching event from the announcer in {self.ns}") from None
            if line is None:
                tail = "".join(list(self.log)[-20:])
                raise RuntimeError(f"announcer in {self.ns} exited {self.proc.wait()}: {tail}")
            event = json.loads(line)
            if match(event):
                return event
            self.events.append(event)

    def send(self, command: Mapping[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def set_desired(self, desired: Mapping[str, Sequence[str]]) -> Event:
        self.send({"desired": desired})
        return self.expect(lambda e: e["event"] == "announced")

    def stats(self) -> dict[str, Any]:
        self.send({"stats": True})
        stats: dict[str, Any] = self.expect(lambda e: e["event"] == "stats")["stats"]
        return stats


def arping(lab: Lab, ns: str, ip: str, *, count: int = 1, ifname: str = "eth0") -> list[str]:
    """The MACs (lower case) of the first `count` replies to broadcast ARP requests from `ns` (one request
    a second, at most `count + 1` seconds)."""
    return [mac for _ip, mac, _ms in arping_replies(lab, ns, ip, count=count, ifname=ifname)]


def arping_replies(lab: Lab, ns: str, ip: str, *, count: int = 1, ifname: str = "eth0") -> list[tuple[str, str, float]]:
    """(ip, mac, round trip in ms) of the first `count` replies seen by `arping -b -c count -w count+1`."""
    result = lab.run(
        ns, "arping", "-b", "-c", str(count), "-w", str(count + 1), "-I", ifname, ip,
        check=False, timeout=count + 10,
    )  # fmt: skip
    return [(m[1], m[2].lower(), float(m[3])) for m in _REPLY.finditer(result.stdout)]


def ndisc6(lab: Lab, ns: str, ip: str, *, ifname: str = "eth0") -> str | None:
    """The target link-layer address from one `ndisc6` solicitation (lower case), or None."""
    result = lab.run(ns, "ndisc6", "-1", "-r", "3", "-w", "500", ip, ifname, check=False)
    match = _TARGET.search(result.stdout)
    return match[1].lower() if match else None


def neighbor(lab: Lab, ns: str, ip: str, *, ifname: str = "eth0") -> str | None:
    """The link-layer address of `ip` in the kernel neighbor table of `ns`, or None."""
    out = lab.run(ns, "ip", "neigh", "show", ip, "dev", ifname).stdout
    match = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return match[1] if match else None


def send_raw(lab: Lab, ns: str, frames: Sequence[bytes], *, ifname: str = "eth0") -> subprocess.CompletedProcess[str]:
    """Send `frames` as they are from a raw AF_PACKET socket in `ns`."""
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        f"s.bind(({ifname!r}, 0))\n"
        "for line in sys.stdin.read().split():\n"
        "    s.send(bytes.fromhex(line))\n"
    )
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script],
        input="\n".join(f.hex() for f in frames),
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
