"""Finding a running lab's bus from its state directory, and the order `metalbus status`, `explain` and
`history` choose their bus in: --nats, NATS_URL, the lab running here, the default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import DEFAULT_NATS_URL, _operator_bus, build_parser, main
from services.common.credentials import BusCredentials
from services.common.permissions import BusUser
from services.lab import command as lab_command
from services.lab.discovery import LabBusAnswer, find_lab_bus, lab_state_dir
from services.lab.plan import DEFAULT_STATE_DIR, STATE_DIR_VARIABLE, LabPlan, credentials_in
from services.lab.state import LabState

LAB_NATS = "nats://10.254.77.1:4322"


def a_finished_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lab(state_dir: Path, *, nats_pid: int | None, credentials: bool = True) -> LabState:
    """A lab's state as `lab up` leaves it: its bus's address, its nats-server's pid, its credentials."""
    if credentials:
        BusCredentials.create(credentials_in(state_dir))
    state = LabState(prefix="mbuslab", nats_url=LAB_NATS, pids={} if nats_pid is None else {"nats": nats_pid})
    state.save(LabPlan(state_dir=state_dir).state_file)
    return state


def test_a_running_lab_is_found_with_its_operator_url(tmp_path: Path) -> None:
    write_lab(tmp_path, nats_pid=os.getpid())
    found = find_lab_bus(tmp_path)
    assert found.answer is LabBusAnswer.FOUND
    password = BusCredentials(credentials_in(tmp_path)).password(BusUser.OPERATOR)
    assert found.url == f"nats://operator:{password}@10.254.77.1:4322"


@pytest.mark.parametrize(("nats_pid", "answer", "words"), [
    ("finished", LabBusAnswer.NOT_RUNNING, "has no nats-server running"),
    (None, LabBusAnswer.NOT_RUNNING, "has no nats-server running"),  # still starting: no server yet
])
def test_a_lab_without_its_nats_server_is_not_used(tmp_path: Path, nats_pid: str | None, answer: LabBusAnswer,
                                                   words: str) -> None:
    write_lab(tmp_path, nats_pid=a_finished_pid() if nats_pid == "finished" else None)
    found = find_lab_bus(tmp_path)
    assert (found.answer, found.url) == (answer, None)
    assert words in found.reason and str(tmp_path) in found.reason and "metalbus lab down" in found.reason


def test_no_state_file_is_no_lab(tmp_path: Path) -> None:
    found = find_lab_bus(tmp_path / "nothing")
    assert (found.answer, found.url) == (LabBusAnswer.NO_LAB, None)
    (tmp_path / "state.json").write_text("{not json")
    assert find_lab_bus(tmp_path).answer is LabBusAnswer.NO_LAB


def test_credentials_that_cannot_be_read_are_said_so(tmp_path: Path) -> None:
    write_lab(tmp_path, nats_pid=os.getpid(), credentials=False)
    found = find_lab_bus(tmp_path)
    assert (found.answer, found.url) == (LabBusAnswer.CREDENTIALS_UNREADABLE, None)
    assert str(credentials_in(tmp_path)) in found.reason and "--nats / NATS_URL" in found.reason


def test_the_state_directory_comes_from_the_environment_or_the_default() -> None:
    assert lab_state_dir({}) == DEFAULT_STATE_DIR == LabPlan().state_dir
    assert lab_state_dir({STATE_DIR_VARIABLE: ""}) == DEFAULT_STATE_DIR
    assert lab_state_dir({STATE_DIR_VARIABLE: "/tmp/lab-a"}) == Path("/tmp/lab-a")


@pytest.fixture
def no_bus_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NATS_URL; the lab looked for in an empty directory of this test's."""
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv(STATE_DIR_VARIABLE, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("command", [["status"], ["explain", "demo/web"], ["history", "172.30.0.200"]])
def test_the_operator_commands_read_the_running_lab_when_told_no_bus(
    no_bus_set: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    args = build_parser().parse_args(command)
    assert _operator_bus(args) == DEFAULT_NATS_URL  # no lab: the default, and nothing said
    assert capsys.readouterr().err == ""
    write_lab(no_bus_set, nats_pid=os.getpid())
    lab_url = find_lab_bus(no_bus_set).url
    assert lab_url is not None and _operator_bus(args) == lab_url
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")  # what the user says comes first
    assert _operator_bus(args) == "nats://elsewhere:4222"
    assert _operator_bus(build_parser().parse_args([*command, "--nats", "nats://flag:4222"])) == "nats://flag:4222"


def test_a_lab_that_cannot_be_used_is_named_before_the_default_is_tried(
    no_bus_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lab(no_bus_set, nats_pid=a_finished_pid())
    assert _operator_bus(build_parser().parse_args(["status"])) == DEFAULT_NATS_URL
    said = capsys.readouterr().err
    assert said.startswith("metalbus status: the lab in") and f"trying {DEFAULT_NATS_URL}" in said


def test_the_lab_commands_use_the_state_directory_of_the_environment_unless_told_one(
    no_bus_set: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plans: list[LabPlan] = []

    def lab_down(plan: LabPlan) -> int:  # what it removes is the network tests' business
        plans.append(plan)
        return 0

    monkeypatch.setattr(lab_command, "lab_down", lab_down)
    assert main(["lab", "down"]) == 0
    assert main(["lab", "down", "--state-dir", str(tmp_path / "other")]) == 0
    assert [plan.state_dir for plan in plans] == [no_bus_set, tmp_path / "other"]
