"""`metalbus lab up` / `down` as a user runs them: the whole system in namespaces, reachability from the
client, a live edit of a Service file, and a teardown that leaves nothing behind — also after a crash.

Each lab here has its own prefix, state directory, management subnet and NATS port, so it never touches a
lab someone runs with the defaults.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.lab.checks import arp_owner, bird_routes, http_get, ndp_owner
from services.lab.host import lab_namespaces, marked_pids, run
from services.lab.plan import NODES, STATE_DIR_VARIABLE, LabPlan
from services.lab.state import LabState
from services.lab.up import bird_socket, missing_requirements
from tests.netlab import REPO, wait_for

_PROBLEMS = missing_requirements()
_SKIP = "; ".join(_PROBLEMS) if _PROBLEMS else None
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=f"the lab needs {_SKIP}")]


def metalbus(plan: LabPlan, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A `metalbus` command pointed at this test's lab the way a user points it: METALBUS_LAB_STATE_DIR
    (and no NATS_URL)."""
    environment = {name: value for name, value in os.environ.items() if name != "NATS_URL"}
    environment |= {STATE_DIR_VARIABLE: str(plan.state_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False, env=environment)


def lab_command(plan: LabPlan, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    options = ["--prefix", plan.prefix, "--mgmt-subnet", plan.mgmt_subnet, "--nats-port", str(plan.nats_port)]
    return metalbus(plan, "lab", *args, *options, timeout=timeout)


def assert_gone(plan: LabPlan) -> None:
    assert lab_namespaces(plan.prefix) == []
    assert marked_pids(plan.prefix) == []
    assert run("ip", "link", "show", plan.uplink, check=False).returncode != 0
    assert not plan.state_file.exists()


def node_of_mac(plan: LabPlan, mac: str | None) -> str | None:
    for name in NODES:
        if run("cat", "/sys/class/net/eth0/address", ns=plan.ns(name)).stdout.strip().lower() == mac:
            return name
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabPlan, str]]:
    plan = LabPlan(prefix="mbuslabt", state_dir=tmp_path_factory.mktemp("lab"), mgmt_subnet="10.254.79",
                   nats_port=4324)
    try:
        up = lab_command(plan, "up", "--no-follow")
        assert up.returncode == 0, f"lab up failed:\n{up.stdout}\n{up.stderr}\n{_logs(plan)}"
        yield plan, up.stdout
    finally:
        down = lab_command(plan, "down")
        assert down.returncode == 0, down.stderr
    assert_gone(plan)


def _logs(plan: LabPlan) -> str:
    logs = plan.state_dir / "logs"
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log"))) \
        if logs.exists() else ""


def test_lab_up_proves_reachability_from_the_client(lab: tuple[LabPlan, str]) -> None:
    plan, output = lab
    assert "ARP owner node" in output and "NDP owner node" in output
    assert output.count("HTTP: 'hello from node") >= 2
    client = plan.ns("client")
    owner = node_of_mac(plan, arp_owner(client, "172.30.0.200"))
    assert owner in NODES
    assert http_get(client, "172.30.0.200") == f"hello from {owner} via 172.30.0.200"
    owner6 = node_of_mac(plan, ndp_owner(client, "fd30::200"))
    assert owner6 in NODES
    assert http_get(client, "fd30::200") == f"hello from {owner6} via fd30::200"
    # BGP: a route at the router through the nodes, or the lab says truthfully that there is none yet.
    hops = bird_routes(plan.ns("router"), bird_socket(plan), "203.0.113.10")
    if hops:
        assert set(hops) <= {v4 for v4, _ in NODES.values()}
        reply = http_get(client, "203.0.113.10")
        assert reply is not None and reply.endswith("via 203.0.113.10")
        assert "BGP route at the router via node" in output
    else:
        assert "BGP: not announced yet" in output


def test_the_operator_commands_answer_without_set_up(lab: tuple[LabPlan, str]) -> None:
    """`lab up` said to run `metalbus status`, `explain` and `history`: they find the lab's bus themselves."""
    plan, output = lab
    assert "bus: metalbus status | explain demo/web | history demo/web (they find this lab's bus)" in output
    status = metalbus(plan, "status", timeout=30)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "demo/web" in status.stdout and "lab-l2" in status.stdout
    assert all(f"{node} " in status.stdout for node in NODES)  # the lab's announcers, live
    explain = metalbus(plan, "explain", "demo/web", timeout=30)
    assert explain.returncode == 0 and "172.30.0.2" in explain.stdout, explain.stdout + explain.stderr
    history = metalbus(plan, "history", "demo/web", timeout=30)
    assert history.returncode == 0 and "172.30.0.2" in history.stdout, history.stdout + history.stderr


def test_editing_a_service_file_changes_the_outcome_live(lab: tuple[LabPlan, str]) -> None:
    plan, _ = lab
    path = plan.objects / "web.yaml"
    original = path.read_text()
    documents = list(yaml.safe_load_all(original))
    documents[0]["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] = "172.30.0.210"
    path.write_text(yaml.safe_dump_all(documents))
    try:
        client = plan.ns("client")
        owner = wait_for(lambda: node_of_mac(plan, arp_owner(client, "172.30.0.210")), timeout=20,
                         message="an ARP owner for the requested address")
        assert http_get(client, "172.30.0.210") == f"hello from {owner} via 172.30.0.210"
        status = yaml.safe_load((plan.objects / "status" / "demo_web.yaml").read_text())
        assert status["status"]["loadBalancer"]["ingress"] == [{"ip": "172.30.0.210", "ipMode": "VIP"}]
        wait_for(lambda: arp_owner(client, "172.30.0.200") is None, timeout=10, message="the old address silent")
    finally:
        path.write_text(original)
    # Without a request the Service keeps the address it holds (as with MetalLB): nothing moves back.
    assert arp_owner(plan.ns("client"), "172.30.0.210") is not None


def test_down_after_a_crash_leaves_nothing_behind(tmp_path: Path) -> None:
    plan = LabPlan(prefix="mbuslabc", state_dir=tmp_path, mgmt_subnet="10.254.80", nats_port=4325)
    try:
        up = lab_command(plan, "up", "--no-follow")
        assert up.returncode in (0, 1), up.stderr  # reachability is the other tests' business
        state = LabState.load(plan.state_file)
        assert state is not None and len(state.pids) == 5 + 2 * len(NODES)  # nats, authenticator, watcher, ipam, bird
        for pid in state.pids.values():  # the crash: every process dies at once, the state file is lost
            os.kill(pid, signal.SIGKILL)
        plan.state_file.unlink()
        assert lab_namespaces(plan.prefix)  # the namespaces outlive their processes
    finally:
        down = lab_command(plan, "down")
    assert down.returncode == 0, down.stderr
    assert f"namespace {plan.ns('node1')}" in down.stdout
    assert_gone(plan)


def test_ctrl_c_while_following_removes_the_lab(tmp_path: Path) -> None:
    """`make run` is `metalbus lab up` in the foreground: Ctrl-C ends it and takes the lab down."""
    plan = LabPlan(prefix="mbuslabf", state_dir=tmp_path, mgmt_subnet="10.254.81", nats_port=4326)
    options = ["--state-dir", str(plan.state_dir), "--prefix", plan.prefix, "--mgmt-subnet", plan.mgmt_subnet,
               "--nats-port", str(plan.nats_port)]
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "lab", "up", *options], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # ends at EOF if the command dies early
            lines.append(line)
            if line.startswith("following"):
                break
        assert any(line.startswith("following") for line in lines), "".join(lines)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "stopping the lab" in rest and f"namespace {plan.ns('router')}" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        lab_command(plan, "down")
    assert_gone(plan)
