"""The soak's short run (``bench/soak.py``, 2 minutes): the whole system — a 3-server NATS cluster, 2 watchers,
2 ipam replicas, 3 announcers in the netns lab — under every kind of fault, one after another, keeps every
invariant an operator sees from the outside. The 20-minute run is the benchmark's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.soak import Fault, run
from tests.netlab import skip_reason

_SKIP = skip_reason("arping", "ndisc6", "ping")
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


def test_two_minutes_of_faults_break_no_invariant(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    report = run(minutes=2.0, directory=tmp_path, seed=seed)
    print(report.as_dict())
    assert set(report.faults) == set(Fault), report.faults
    assert not report.violations, f"seed {seed}: " + "; ".join(report.details)
