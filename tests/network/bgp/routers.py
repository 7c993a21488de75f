"""BIRD 2 as a BGP peer inside a lab namespace: configure, start, query with birdc."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.netlab import Lab, wait_for


def bird_skip_reason() -> str | None:
    missing = [tool for tool in ("bird", "birdc") if shutil.which(tool) is None]
    return f"BIRD 2 is not installed ({', '.join(missing)} missing; Debian package bird2)" if missing else None


@dataclass
class Bird:
    lab: Lab
    ns: str
    directory: Path

    @property
    def socket(self) -> str:
        return str(self.directory / "bird.ctl")

    @classmethod
    def start(cls, lab: Lab, ns: str, directory: Path, config: str) -> Bird:
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "bird.conf"
        conf.write_text(config)
        bird = cls(lab, ns, directory)
        proc = lab.popen(
            ns,
            "bird",
            "-f",
            "-c",
            str(conf),
            "-s",
            bird.socket,
            "-P",
            str(directory / "bird.pid"),
            stdin=subprocess.DEVNULL,
        )

        def up() -> bool:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"bird exited {proc.returncode}: {proc.stderr.read().strip()}")
            return bird.birdc("show status", check=False).returncode == 0

        wait_for(up, timeout=10, message="BIRD up")
        return bird

    def birdc(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.ns, "birdc", "-s", self.socket, *command.split(), check=check)

    def route(self, prefix: str) -> str | None:
        """``show route all <prefix>``: the route's text, or None when BIRD has no such route."""
        out = self.birdc(f"show route all {prefix}", check=False).stdout
        return out if prefix in out else None

    def protocol(self, name: str) -> str:
        return self.birdc(f"show protocols all {name}").stdout

    def established(self, name: str) -> bool:
        return "Established" in self.protocol(name)

    def log(self) -> str:
        path = self.directory / "bird.log"
        return path.read_text() if path.exists() else ""


def bgp_config(
    *,
    router_id: str,
    local: str,
    local_as: int,
    neighbor: str,
    neighbor_as: int,
    log_file: Path,
    password: str | None = None,
    hold_time: int = 9,
    graceful_restart: bool = True,
) -> str:
    """One BGP neighbour, passive, importing IPv4 and IPv6 unicast with next hops on the shared link."""
    password_line = f'password "{password}";' if password else ""
    gr_line = "graceful restart on;" if graceful_restart else ""
    return f"""
router id {router_id};
log "{log_file}" all;
protocol device {{ scan time 1; }}
protocol bgp node {{
    local {local} as {local_as};
    neighbor {neighbor} as {neighbor_as};
    passive on;
    direct;
    hold time {hold_time};
    connect retry time 1;
    error wait time 1, 2;
    {password_line}
    {gr_line}
    ipv4 {{ import all; export none; gateway direct; }};
    ipv6 {{ import all; export none; gateway direct; }};
}}
"""
