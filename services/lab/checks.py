"""Reachability as the client and the router see it: who answers ARP/NDP, what BIRD routes, who serves HTTP.

Each probe runs a real tool in a lab namespace and reduces its output to an answer (parsing is pure);
:func:`check_service` puts them together into one :class:`Verdict` per Service address.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from services.lab.host import run

_ARP_REPLY = re.compile(r"reply from (\S+) \[([0-9A-Fa-f:]{17})\]")
_NDP_TARGET = re.compile(r"Target link-layer address: ([0-9A-Fa-f:]{17})")
_BIRD_VIA = re.compile(r"via (\S+) on (\S+)")


class Mode(StrEnum):
    L2 = "layer2"
    BGP = "bgp"


def parse_arping(output: str) -> list[str]:
    """MACs (lower case) of the replies in ``arping`` output, in order."""
    return [match[2].lower() for match in _ARP_REPLY.finditer(output)]


def parse_ndisc6(output: str) -> str | None:
    match = _NDP_TARGET.search(output)
    return match[1].lower() if match else None


def parse_bird_route(output: str) -> list[str]:
    """Next hops of a ``birdc show route for ...`` answer (empty: no route)."""
    return [match[1] for match in _BIRD_VIA.finditer(output)]


def arp_owner(client_ns: str, ip: str) -> str | None:
    result = run("arping", "-b", "-c", "1", "-w", "2", "-I", "eth0", ip, ns=client_ns, check=False, timeout=10)
    macs = parse_arping(result.stdout)
    return macs[0] if macs else None


def ndp_owner(client_ns: str, ip: str) -> str | None:
    result = run("ndisc6", "-1", "-r", "3", "-w", "500", ip, "eth0", ns=client_ns, check=False, timeout=10)
    return parse_ndisc6(result.stdout)


def bird_routes(router_ns: str, socket: Path, ip: str) -> list[str]:
    result = run("birdc", "-s", str(socket), "show", "route", "for", ip, ns=router_ns, check=False, timeout=10)
    return parse_bird_route(result.stdout) if result.returncode == 0 else []


def http_get(client_ns: str, ip: str, port: int = 80, timeout: float = 3.0) -> str | None:
    """The body of ``GET /`` from ``ip`` as the client sees it, or None."""
    host = f"[{ip}]" if ":" in ip else ip
    script = (
        "import sys, urllib.request\n"
        f"print(urllib.request.urlopen('http://{host}:{port}/', timeout={timeout}).read().decode(), end='')\n"
    )
    result = run(sys.executable, "-c", script, ns=client_ns, check=False, timeout=timeout + 10)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


@dataclass(frozen=True, slots=True)
class Verdict:
    service: str
    ip: str
    mode: Mode
    owner: str | None
    """L2: the node whose MAC answered; BGP: the nodes the router routes through (comma separated)"""
    reply: str | None

    @property
    def reachable(self) -> bool:
        return self.owner is not None and self.reply is not None

    def describe(self) -> str:
        if self.mode is Mode.L2:
            who = f"{'NDP' if ':' in self.ip else 'ARP'} owner {self.owner}" if self.owner else \
                f"no {'NDP' if ':' in self.ip else 'ARP'} answer"
        else:
            who = f"BGP route at the router via {self.owner}" if self.owner else "BGP: not announced yet"
        reply = f"HTTP: {self.reply!r}" if self.reply else "HTTP: no reply"
        return f"{self.service} {self.ip} ({self.mode.value}): {who}; {reply}"


def check_service(
    *, service: str, ip: str, mode: Mode, client_ns: str, router_ns: str, bird_socket: Path,
    macs: dict[str, str], next_hops: dict[str, str],
) -> Verdict:
    """Probe one Service address. ``macs``: MAC → node; ``next_hops``: node address → node."""
    if mode is Mode.L2:
        mac = ndp_owner(client_ns, ip) if ":" in ip else arp_owner(client_ns, ip)
        owner = macs.get(mac, mac) if mac else None
    else:
        hops = bird_routes(router_ns, bird_socket, ip)
        owner = ", ".join(sorted(next_hops.get(hop, hop) for hop in hops)) or None
    return Verdict(service, ip, mode, owner, http_get(client_ns, ip))
