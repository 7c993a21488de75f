"""``metalbus lab up``: build the network, start the system on it, apply the examples, prove reachability.

Order: namespaces and links (each recorded in the state file before it exists) → nats-server on the
management network → watcher (directory source), ipam → an announcer and a web server per node →
BIRD on the router → the YAML into the objects directory. Any failure tears down what was built.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from services.common.credentials import BusCredentials
from services.common.nats_server import (
    authenticator_command,
    nats_server_binary,
    provision_command,
    write_server_config,
)
from services.common.permissions import BusUser
from services.lab.host import Host, LabError, run, teardown
from services.lab.plan import (
    CLIENT4,
    CLIENT6,
    CLIENT_ROUTE,
    HTTP_PORT,
    LOCAL_ROUTES,
    NODES,
    ROUTER4,
    ROUTER6,
    LabPlan,
    bird_config,
    manifests,
)
from services.lab.state import LabState

#: Tools the lab runs, and the Debian packages that bring them.
TOOLS = {"ip": "iproute2", "bird": "bird2", "birdc": "bird2", "arping": "iputils-arping", "ndisc6": "ndisc6"}


def missing_requirements() -> list[str]:
    """What keeps the lab from running here, in words (empty: nothing)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root: the lab creates network namespaces, veth links and a bridge, and its announcers"
                        " answer ARP/NDP on raw sockets (run it as root, e.g. `sudo .venv/bin/metalbus lab up`)")
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        problems.append(f"Debian packages: {' '.join(missing)} (apt-get install {' '.join(missing)})")
    return problems


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def build(plan: LabPlan, *, say: Callable[[str], None]) -> LabState:
    """Build the lab and start everything; on failure everything built so far is removed again."""
    previous = LabState.load(plan.state_file)
    if previous is not None or run("ip", "netns", "list", check=False).stdout.count(f"{plan.prefix}-"):
        say("a lab is already up (or left over): removing it first")
        teardown(plan.prefix, previous)
    taken = run("ip", "-4", "route", "show", "root", f"{plan.mgmt_subnet}.0/24", check=False).stdout.strip()
    if taken:
        raise LabError(f"this host already routes {plan.mgmt_subnet}.0/24 ({taken.splitlines()[0]}); choose"
                       " another management network with --mgmt-subnet")
    for stale in ("nats", "logs", "bird"):
        shutil.rmtree(plan.state_dir / stale, ignore_errors=True)
    state = LabState(prefix=plan.prefix, nats_url=plan.nats_url, objects=str(plan.objects))
    host = Host(state, plan.state_file)
    state.save(plan.state_file)
    try:
        _network(plan, host)
        say(f"network: bridge, {len(NODES)} nodes, router, client (namespaces {plan.prefix}-*)")
        _processes(plan, host)
        say(f"running: nats-server at {plan.nats_url}, watcher, ipam, {len(NODES)} announcers, BIRD")
        written = _objects(plan)
        say(f"applied: {', '.join(written)} in {plan.objects}" if written else
            f"applied: the YAML already in {plan.objects}")
    except BaseException:
        teardown(plan.prefix, state)
        raise
    return state


def _network(plan: LabPlan, host: Host) -> None:
    bridge, mgmt = host.namespace(plan.ns("br")), host.namespace(plan.ns("mgmt"))
    host.bridge(bridge, "br0")
    host.bridge(mgmt, "mg0")
    host.uplink(plan.uplink, bridge_ns=mgmt, bridge="mg0", address=f"{plan.host_ip}/24")
    router = host.namespace(plan.ns("router"))
    host.attach(router, bridge_ns=bridge, bridge="br0", ifname="eth0", addresses=[f"{ROUTER4}/24", f"{ROUTER6}/64"])
    host.sysctl(router, "net.ipv4.ip_forward", "1")
    client = host.namespace(plan.ns("client"))
    host.attach(client, bridge_ns=bridge, bridge="br0", ifname="eth0", addresses=[f"{CLIENT4}/24", f"{CLIENT6}/64"])
    run("ip", "route", "add", CLIENT_ROUTE[0], "via", CLIENT_ROUTE[1], ns=client)
    for index, (name, (v4, v6)) in enumerate(NODES.items(), start=1):
        node = host.namespace(plan.ns(name))
        host.attach(node, bridge_ns=bridge, bridge="br0", ifname="eth0", addresses=[f"{v4}/24", f"{v6}/64"])
        host.attach(node, bridge_ns=mgmt, bridge="mg0", ifname="mgmt0",
                    addresses=[f"{plan.node_mgmt_ip(index)}/24"])
        # The web server answers on every pool address; the kernel answers ARP only for eth0's own.
        for route in LOCAL_ROUTES:
            run("ip", *(["-6"] if ":" in route else []), "route", "add", "local", route, "dev", "lo", ns=node)
        for scope in ("all", "eth0"):
            host.sysctl(node, f"net.ipv4.conf.{scope}.arp_ignore", "1")
            host.sysctl(node, f"net.ipv4.conf.{scope}.arp_announce", "2")
        for scope in ("all", "default", "eth0", "lo"):
            host.sysctl(node, f"net.ipv4.conf.{scope}.rp_filter", "0")


def _processes(plan: LabPlan, host: Host) -> None:
    logs = plan.state_dir / "logs"
    store = plan.state_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    plan.objects.mkdir(parents=True, exist_ok=True)
    credentials = BusCredentials.create(plan.credentials_dir)
    config = write_server_config(plan.state_dir / "nats-config")
    host.start("nats", [nats_server_binary(), "-c", str(config), "-a", plan.host_ip, "-p", str(plan.nats_port),
                        "-js", "-sd", str(store)], log_dir=logs, env=credentials.server_environment())
    _wait_port(plan.host_ip, plan.nats_port, what=f"nats-server (log: {logs / 'nats.log'})", timeout=10)
    host.start("authenticator", authenticator_command(credentials, nats_url=plan.nats_url, http_address="127.0.0.1",
                                                      http_port=0), log_dir=logs)
    provisioned = subprocess.run(provision_command(credentials.url(plan.nats_url, BusUser.ADMIN)),
                                 capture_output=True, text=True, timeout=60, check=False)
    if provisioned.returncode != 0:
        raise LabError(f"provisioning the streams failed: {provisioned.stderr[-1000:]}")
    common = ["--http-port", "0", "--http-host", "127.0.0.1"]
    host.start("watcher", _python("services.cli", "watcher", "--nats", credentials.url(plan.nats_url, BusUser.WATCHER),
                                  *common, "--source-dir", str(plan.objects)), log_dir=logs)
    host.start("ipam", _python("services.cli", "ipam", "--nats", credentials.url(plan.nats_url, BusUser.IPAM),
                               *common), log_dir=logs)
    for index, name in enumerate(NODES, start=1):
        ns = plan.ns(name)
        host.start(f"announcer-{name}", _python(
            "services.cli", "announcer", "--node", name, "--nats", plan.nats_url,
            "--nats-password-file", str(credentials.node_password_file(name)), "--http-port", "7472",
            "--http-host", plan.node_mgmt_ip(index), "--exclude-interfaces", "mgmt*"), log_dir=logs, ns=ns)
        host.start(f"web-{name}", _python("services.lab.backend", "--node", name, "--port", str(HTTP_PORT)),
                   log_dir=logs, ns=ns)
    bird_dir = plan.state_dir / "bird"
    bird_dir.mkdir(parents=True, exist_ok=True)
    (bird_dir / "bird.conf").write_text(bird_config(log_file=bird_dir / "bird.log"))
    host.start("bird", ["bird", "-f", "-c", str(bird_dir / "bird.conf"), "-s", str(bird_socket(plan)),
                        "-P", str(bird_dir / "bird.pid")], log_dir=logs, ns=plan.ns("router"))


def bird_socket(plan: LabPlan) -> Path:
    return plan.state_dir / "bird" / "bird.ctl"


def _objects(plan: LabPlan) -> list[str]:
    """Write the example objects into an empty objects directory (a directory with YAML is used as it is)."""
    if any(plan.objects.glob("*.y*ml")):
        return []
    for name, text in manifests().items():
        (plan.objects / name).write_text(text)
    return sorted(manifests())


def _wait_port(host: str, port: int, *, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise LabError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s: {error}") from error
            time.sleep(0.05)  # polling a port that a starting process will open
