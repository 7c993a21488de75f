"""What the qemu guest of the VRF tests costs (tests/guest_vm.py).

    python bench/guest_vm.py [--vrf-tests]

Boots the guest (KVM where the processor's virtualization backs it, else TCG) with a command that only prints
the guest's uptime, and prints the wall time of the whole run (initramfs built, guest booted, command run,
guest gone) beside the guest's own uptime when the command ran. With ``--vrf-tests`` it also runs
tests/network/bgp/test_vrf.py in the guest and prints pytest's summary and the wall time. The last line is one
JSON object. Needs root, qemu-system-x86 and ``make guest-kernel``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from tests import guest_vm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vrf-tests", action="store_true", help="also run test_vrf.py in the guest")
    args = parser.parse_args()
    if reason := guest_vm.unavailable_reason():
        sys.exit(f"no guest here: {reason}")
    figures: dict[str, object] = {"accelerator": guest_vm.accelerator()}
    boot = guest_vm.run_in_guest("cut -d' ' -f1 /proc/uptime")
    if boot.status != 0:
        sys.exit(f"the guest did not run the command:\n{guest_vm.tail(boot.console, 30)}")
    figures["run_s"] = round(boot.seconds, 1)
    figures["guest_uptime_at_command_s"] = float(boot.output.strip())
    print(f"accelerator {figures['accelerator']}: a guest run {boot.seconds:.1f} s, "
          f"the command ran at guest uptime {boot.output.strip()} s")  # fmt: skip
    if args.vrf_tests:
        tests = guest_vm.run_in_guest(".venv/bin/python -m pytest -q -p no:cacheprovider tests/network/bgp/test_vrf.py",
                                      timeout=600)  # fmt: skip
        summary = tests.output.strip().splitlines()[-1] if tests.output.strip() else "(no output)"
        figures["vrf_tests_s"], figures["vrf_tests"] = round(tests.seconds, 1), summary
        print(f"test_vrf.py in the guest: {summary}; the whole run {tests.seconds:.1f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
