"""A running lab's bus, found from its state directory: what ``metalbus status``, ``explain`` and
``history`` read when given neither ``--nats`` nor ``NATS_URL``.

The lab writes its state file (with the bus's address and the pid of its nats-server) before it starts
anything, and ``lab down`` removes it; the operator's password is in the lab's credentials, readable by
root only.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.lab.plan import (
    DEFAULT_STATE_DIR,
    STATE_DIR_VARIABLE,
    credentials_in,
    operator_url_in,
    state_file_in,
)
from services.lab.state import LabState

NATS_ROLE = "nats"


class LabBusAnswer(enum.Enum):
    FOUND = "found"
    NO_LAB = "no_lab"                                   # no state file: no lab was brought up here
    NOT_RUNNING = "not_running"                         # a state file, but its nats-server is gone
    CREDENTIALS_UNREADABLE = "credentials_unreadable"   # a lab, but not this user's to read


@dataclass(frozen=True, slots=True)
class LabBus:
    answer: LabBusAnswer
    #: the operator URL (with its password) when ``answer`` is FOUND
    url: str | None = None
    #: why there is no URL, in words for the person at the terminal
    reason: str = ""


def lab_state_dir(environment: Mapping[str, str]) -> Path:
    """The state directory the lab commands use: ``METALBUS_LAB_STATE_DIR``, else the default."""
    return Path(environment.get(STATE_DIR_VARIABLE) or DEFAULT_STATE_DIR)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def find_lab_bus(state_dir: Path) -> LabBus:
    """The operator URL of the lab whose state is in ``state_dir``, or why there is none."""
    state = LabState.load(state_file_in(state_dir))
    if state is None or not state.nats_url:
        return LabBus(LabBusAnswer.NO_LAB, reason=f"no lab is up (no state file in {state_dir})")
    pid = state.pids.get(NATS_ROLE)
    if pid is None or not _alive(pid):
        return LabBus(LabBusAnswer.NOT_RUNNING,
                      reason=f"the lab in {state_dir} has no nats-server running (still starting, or left after a"
                      " crash: `metalbus lab down` removes what is left)")
    try:
        url = operator_url_in(state_dir, state.nats_url)
    except OSError as error:
        return LabBus(LabBusAnswer.CREDENTIALS_UNREADABLE,
                      reason=f"a lab is up but its credentials ({credentials_in(state_dir)}) are not readable here"
                      f" ({error.strerror or error}): run as root, or give --nats / NATS_URL")
    return LabBus(LabBusAnswer.FOUND, url=url)
