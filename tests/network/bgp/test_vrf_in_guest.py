"""Where this machine's kernel has no VRF driver, test_vrf.py runs in a guest whose kernel has one (a Debian
kernel, see tests/guest_vm.py) on this machine's own files: the VRF session against FRR, the peer outside the
VRF, TCP MD5 in the VRF and the missing VRF are then proven on a real VRF here too. The guest's pytest output
(and the session and router logs of a failure) is this test's failure message."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests import guest_vm
from tests.netlab import skip_reason
from tests.network.bgp.routers import Frr

VRF_TESTS = "tests/network/bgp/test_vrf.py"
GUEST_TIMEOUT_S = 400.0  # about 165 s under TCG on two shared cores (bench/guest_vm.py --vrf-tests)


def kernel_vrf_missing_reason() -> str | None:
    """Why this kernel cannot make a VRF device (then the guest is needed), or None when it can."""
    if shutil.which("unshare") is None:
        return None  # cannot tell: test_vrf.py says it itself
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "probe", "type", "vrf", "table", "10"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    if probe.returncode == 0:
        return None
    return probe.stderr.strip() or f"exit {probe.returncode}"


def _skip() -> str | None:
    if reason := skip_reason() or Frr.skip_reason():
        return reason
    if kernel_vrf_missing_reason() is None:
        return f"this kernel has VRF: {VRF_TESTS} runs here directly"
    return guest_vm.unavailable_reason()


_SKIP = _skip()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

_COMMAND = (
    f".venv/bin/python -m pytest -q -rs -p no:cacheprovider --basetemp=/tmp/vrf {VRF_TESTS}; status=$?; "
    "cd /tmp/vrf && find . -name '*.log' -exec cp --parents {} /job/keep \\; ; exit $status"
)


def test_the_vrf_tests_pass_in_a_guest_whose_kernel_has_vrf() -> None:
    run = guest_vm.run_in_guest(_COMMAND, timeout=GUEST_TIMEOUT_S)
    logs = "\n".join(f"--- {name}\n{guest_vm.tail(text, 40)}" for name, text in run.kept.items())
    console = guest_vm.tail(run.console, 30)
    report = f"guest ({run.seconds:.0f} s) status {run.status}:\n{run.output}\n{logs}\nconsole:\n{console}"
    assert run.status == 0, report
    assert " passed" in run.output and "skipped" not in run.output, report  # every case really ran
