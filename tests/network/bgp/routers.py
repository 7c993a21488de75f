"""Real BGP daemons from Debian as the peer inside a lab namespace: BIRD 2, FRR 8 (bgpd alone), GoBGP 3.

Each is configured with one passive neighbour (the node), started in the foreground under the lab (so the lab
kills it), and read back through its own CLI into a :class:`RouteView` the tests compare across daemons.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from tests.netlab import Lab, wait_for


@dataclass(frozen=True)
class Peering:
    router_id: str
    local: str
    local_as: int
    neighbor: str
    neighbor_as: int
    password: str | None = None
    hold_time: int = 9
    graceful_restart: bool = True
    passive: bool = True  # the daemon waits for the node to dial
    bfd_interval_ms: int | None = None  # BFD on the session, with this tx/rx interval (multiplier 3)


@dataclass(frozen=True)
class RouteView:
    next_hop: str
    as_path: tuple[int, ...]
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]
    local_pref: int | None


class Router(Protocol):
    NAME: ClassVar[str]

    def established(self) -> bool: ...

    def route(self, prefix: str) -> RouteView | None: ...

    def diagnostics(self) -> str: ...


def skip_reason(*tools: str, package: str) -> str | None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed (Debian package {package})" if missing else None


def _start(lab: Lab, ns: str, ready: Any, *cmd: str) -> subprocess.Popen[str]:
    proc = lab.popen(ns, *cmd, stdin=subprocess.DEVNULL)

    def up() -> bool:
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.read().strip()}")
        return bool(ready())

    wait_for(up, timeout=10, message=f"{cmd[0]} up")
    return proc


# --- BIRD 2 -------------------------------------------------------------------------------------------


@dataclass
class Bird:
    NAME: ClassVar[str] = "bird"
    lab: Lab
    ns: str
    directory: Path
    proc: subprocess.Popen[str] | None = None

    @staticmethod
    def skip_reason() -> str | None:
        return skip_reason("bird", "birdc", package="bird2")

    @property
    def socket(self) -> str:
        return str(self.directory / "bird.ctl")

    @classmethod
    def start(cls, lab: Lab, ns: str, directory: Path, peering: Peering) -> Bird:
        return cls.run(lab, ns, directory, bird_config(peering, log_file=directory / "bird.log"))

    @classmethod
    def run(cls, lab: Lab, ns: str, directory: Path, config: str) -> Bird:
        """BIRD with a configuration of the caller's (its log file, if any, in ``directory``)."""
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "bird.conf"
        conf.write_text(config)
        bird = cls(lab, ns, directory)
        ready = lambda: bird.birdc("show status", check=False).returncode == 0  # noqa: E731
        bird.proc = _start(
            lab, ns, ready, "bird", "-f", "-c", str(conf), "-s", bird.socket, "-P", str(directory / "bird.pid")
        )
        return bird

    def crash(self) -> None:
        """SIGKILL: the router vanishes without a NOTIFICATION (its kernel still closes the TCP connection)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=5)

    def birdc(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.ns, "birdc", "-s", self.socket, *command.split(), check=check)

    def route_text(self, prefix: str) -> str | None:
        """``show route all <prefix>``: the route's text, or None when BIRD has no such route."""
        out = self.birdc(f"show route all {prefix}", check=False).stdout
        return out if prefix in out else None

    def protocol(self, name: str = "node") -> str:
        return self.birdc(f"show protocols all {name}").stdout

    def established(self) -> bool:
        return "Established" in self.protocol()

    def route(self, prefix: str) -> RouteView | None:
        text = self.route_text(prefix)
        if text is None:
            return None
        fields = dict(re.findall(r"^\s*BGP\.(\w+): ?(.*)$", text, re.MULTILINE))
        return RouteView(
            next_hop=fields["next_hop"].split()[0],
            as_path=tuple(int(a) for a in fields.get("as_path", "").split()),
            communities=tuple(f"{a}:{b}" for a, b in re.findall(r"\((\d+),(\d+)\)", fields.get("community", ""))),
            large_communities=tuple(
                f"{a}:{b}:{c}" for a, b, c in re.findall(r"\((\d+), (\d+), (\d+)\)", fields.get("large_community", ""))
            ),
            local_pref=int(fields["local_pref"]) if "local_pref" in fields else None,
        )

    def diagnostics(self) -> str:
        log = self.directory / "bird.log"
        return self.protocol() + (log.read_text() if log.exists() else "")


def bird_config(peering: Peering, *, log_file: Path) -> str:
    """One passive neighbour importing IPv4 and IPv6 unicast, next hops on the shared link."""
    p = peering
    password = f'password "{p.password}";' if p.password else ""
    graceful = "graceful restart on;" if p.graceful_restart else ""
    bfd, bfd_protocol = "", ""
    if p.bfd_interval_ms is not None:
        interval = f"{p.bfd_interval_ms} ms"
        bfd = "bfd on;"
        bfd_protocol = (
            f'protocol bfd {{ interface "*" {{ min rx interval {interval}; min tx interval {interval};'
            " multiplier 3; }; }"
        )
    return f"""
router id {p.router_id};
log "{log_file}" all;
protocol device {{ scan time 1; }}
{bfd_protocol}
protocol bgp node {{
    local {p.local} as {p.local_as};
    neighbor {p.neighbor} as {p.neighbor_as};
    passive {"on" if p.passive else "off"};
    connect delay time 1;
    connect retry time 2;
    direct;
    hold time {p.hold_time};
    error wait time 1, 2;
    {password}
    {graceful}
    {bfd}
    ipv4 {{ import all; export none; gateway direct; }};
    ipv6 {{ import all; export none; gateway direct; }};
}}
"""


# --- FRR 8 (bgpd without zebra) -----------------------------------------------------------------------


@dataclass
class Frr:
    NAME: ClassVar[str] = "frr"
    lab: Lab
    ns: str
    directory: Path
    peering: Peering

    @staticmethod
    def skip_reason() -> str | None:
        if not Path("/usr/lib/frr/bgpd").exists():
            return "/usr/lib/frr/bgpd not installed (Debian package frr)"
        return skip_reason("vtysh", package="frr")

    @classmethod
    def start(cls, lab: Lab, ns: str, directory: Path, peering: Peering) -> Frr:
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "bgpd.conf"
        conf.write_text(frr_config(peering, log_file=directory / "bgpd.log"))
        frr = cls(lab, ns, directory, peering)
        ready = lambda: frr.vtysh("show bgp summary", check=False).returncode == 0  # noqa: E731
        _start(
            lab, ns, ready, "/usr/lib/frr/bgpd", "-Z", "-S", "-n", "-f", str(conf), "-i", str(directory / "bgpd.pid"),
            "-z", str(directory / "zserv.api"), "--vty_socket", str(directory), "-P", "0", "-u", "root", "-g", "root",
        )  # fmt: skip
        return frr

    def vtysh(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.ns, "vtysh", "--vty_socket", str(self.directory), "-c", command, check=check)

    def neighbor(self) -> dict[str, Any]:
        data = json.loads(self.vtysh(f"show bgp neighbors {self.peering.neighbor} json").stdout or "{}")
        return dict(data.get(self.peering.neighbor, {}))

    def established(self) -> bool:
        return self.neighbor().get("bgpState") == "Established"

    def route(self, prefix: str) -> RouteView | None:
        family = "ipv6" if ":" in prefix else "ipv4"
        data = json.loads(self.vtysh(f"show bgp {family} unicast {prefix} json").stdout or "{}")
        paths = data.get("paths") or []
        if not paths:
            return None
        path = paths[0]
        return RouteView(
            next_hop=path["nexthops"][0]["ip"],
            as_path=tuple(a for s in path.get("aspath", {}).get("segments", []) for a in s["list"]),
            communities=tuple(path.get("community", {}).get("list", [])),
            large_communities=tuple(path.get("largeCommunity", {}).get("list", [])),
            local_pref=path.get("locPrf"),
        )

    def diagnostics(self) -> str:
        log = self.directory / "bgpd.log"
        return json.dumps(self.neighbor(), indent=1)[:3000] + (log.read_text()[-5000:] if log.exists() else "")


def frr_config(peering: Peering, *, log_file: Path) -> str:
    p, n = peering, peering.neighbor
    lines = [
        "frr defaults traditional",
        "hostname router",
        f"log file {log_file} informational",
        f"router bgp {p.local_as}",
        f" bgp router-id {p.router_id}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        *([" bgp graceful-restart"] if p.graceful_restart else []),
        f" neighbor {n} remote-as {p.neighbor_as}",
        f" neighbor {n} update-source {p.local}",
        *([f" neighbor {n} passive"] if p.passive else [f" neighbor {n} timers connect 2"]),
        f" neighbor {n} timers {max(1, p.hold_time // 3)} {p.hold_time}",
        *([f" neighbor {n} password {p.password}"] if p.password else []),
        " address-family ipv4 unicast",
        f"  neighbor {n} activate",
        " exit-address-family",
        " address-family ipv6 unicast",
        f"  neighbor {n} activate",
        " exit-address-family",
    ]
    return "\n".join(lines) + "\n"


# --- GoBGP 3 ------------------------------------------------------------------------------------------

GOBGP_API = "127.0.0.1:50051"  # the router namespace's own loopback


@dataclass
class GoBgp:
    NAME: ClassVar[str] = "gobgp"
    lab: Lab
    ns: str
    directory: Path
    peering: Peering

    @staticmethod
    def skip_reason() -> str | None:
        return skip_reason("gobgpd", "gobgp", package="gobgpd")

    @classmethod
    def start(cls, lab: Lab, ns: str, directory: Path, peering: Peering) -> GoBgp:
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "gobgpd.toml"
        conf.write_text(gobgp_config(peering))
        gobgp = cls(lab, ns, directory, peering)
        ready = lambda: gobgp.cli("neighbor", check=False).returncode == 0  # noqa: E731
        _start(lab, ns, ready, "gobgpd", "-f", str(conf), "-p", "--api-hosts", GOBGP_API, "--pprof-disable")
        return gobgp

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        host, port = GOBGP_API.split(":")
        return self.lab.run(self.ns, "gobgp", "-u", host, "-p", port, *args, check=check)

    def neighbor(self) -> dict[str, Any]:
        out = self.cli("neighbor", self.peering.neighbor, "-j", check=False).stdout
        return dict(json.loads(out)) if out.strip().startswith("{") else {}

    def established(self) -> bool:
        return bool(self.neighbor().get("state", {}).get("session_state") == 6)  # ESTABLISHED

    def route(self, prefix: str) -> RouteView | None:
        family = "ipv6" if ":" in prefix else "ipv4"
        data = json.loads(self.cli("global", "rib", "-a", family, prefix, "-j").stdout or "{}")
        paths = data.get(prefix) or []
        if not paths:
            return None
        attrs = {a["type"]: a for a in paths[0]["attrs"]}
        next_hop = attrs[3]["nexthop"] if 3 in attrs else attrs[14]["nexthop"]
        return RouteView(
            next_hop=next_hop,
            as_path=tuple(a for s in attrs.get(2, {}).get("as_paths", []) for a in s.get("asns", [])),
            communities=tuple(f"{c >> 16}:{c & 0xFFFF}" for c in attrs.get(8, {}).get("communities", [])),
            large_communities=tuple(
                f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}" for c in attrs.get(32, {}).get("value", [])
            ),
            local_pref=attrs[5]["value"] if 5 in attrs else None,
        )

    def diagnostics(self) -> str:
        return json.dumps(self.neighbor(), indent=1)[:3000]


def gobgp_config(peering: Peering) -> str:
    p = peering
    password = f'    auth-password = "{p.password}"\n' if p.password else ""
    graceful = "true" if p.graceful_restart else "false"
    families = "".join(
        f"""  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{name}"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = {graceful}
"""
        for name in ("ipv4-unicast", "ipv6-unicast")
    )
    return f"""[global.config]
  as = {p.local_as}
  router-id = "{p.router_id}"
  port = 179
  local-address-list = ["{p.local}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{p.neighbor}"
    peer-as = {p.neighbor_as}
{password}  [neighbors.transport.config]
    passive-mode = {"true" if p.passive else "false"}
  [neighbors.timers.config]
    hold-time = {p.hold_time}
    keepalive-interval = {max(1, p.hold_time // 3)}
    connect-retry = 2
  [neighbors.graceful-restart.config]
    enabled = {graceful}
{families}"""


ROUTERS: tuple[type[Bird] | type[Frr] | type[GoBgp], ...] = (Bird, Frr, GoBgp)


# --- FRR with zebra: routes in the router's kernel table ------------------------------------------------


def start_frr_with_zebra(
    lab: Lab, ns: str, directory: Path, bgpd_config: str, *, neighbor: str = "", bfdd_config: str | None = None
) -> Frr:
    """zebra (and bfdd when given a configuration) and bgpd as user frr (zebra insists on it), so BGP routes
    reach the kernel, ECMP included."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.chown(directory, "frr", "frr")
    (directory / "zebra.conf").write_text("hostname router\n")
    (directory / "bgpd.conf").write_text(bgpd_config)
    common = ["-z", str(directory / "zserv.api"), "--vty_socket", str(directory), "-P", "0", "-u", "frr", "-g", "frr"]
    frr = Frr(lab, ns, directory, Peering(router_id="", local="", local_as=0, neighbor=neighbor, neighbor_as=0))
    zebra_up = lambda: (directory / "zserv.api").exists()  # noqa: E731
    _start(lab, ns, zebra_up, "/usr/lib/frr/zebra", "-f", str(directory / "zebra.conf"),
           "-i", str(directory / "zebra.pid"), *common)  # fmt: skip
    if bfdd_config is not None:
        (directory / "bfdd.conf").write_text(bfdd_config)
        bfdd_up = lambda: frr.vtysh("show bfd peers", check=False).returncode == 0  # noqa: E731
        _start(lab, ns, bfdd_up, "/usr/lib/frr/bfdd", "-f", str(directory / "bfdd.conf"),
               "-i", str(directory / "bfdd.pid"), "--bfdctl", str(directory / "bfdd.sock"), *common)  # fmt: skip
    bgpd_up = lambda: frr.vtysh("show bgp summary", check=False).returncode == 0  # noqa: E731
    _start(lab, ns, bgpd_up, "/usr/lib/frr/bgpd", "-f", str(directory / "bgpd.conf"),
           "-i", str(directory / "bgpd.pid"), *common)  # fmt: skip
    return frr


def kernel_next_hops(lab: Lab, ns: str, prefix: str) -> set[str]:
    """The gateways of ``prefix`` in the kernel's main table of ``ns`` (one per ECMP leg)."""
    family = "-6" if ":" in prefix else "-4"
    out = lab.run(ns, "ip", "-j", family, "route", "show", prefix, check=False).stdout
    routes = json.loads(out) if out.strip() else []
    hops: set[str] = set()
    for entry in routes:
        if "gateway" in entry:
            hops.add(entry["gateway"])
        hops.update(nh["gateway"] for nh in entry.get("nexthops", []) if "gateway" in nh)
    return hops
