"""The state collector: no collection while state is built, cyclic garbage still reclaimed later."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common.collector import StateCollector, survivors_frozen

#: Whatever the suite froze before (gc.freeze is process-wide): these tests are about reclaiming, not the limit.
NO_LIMIT = 1 << 62


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cyclic:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def fresh_collector_state() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    gc.collect()
    if not was_enabled:
        gc.disable()


def garbage_cycle() -> weakref.ref[Cyclic]:
    """A reference cycle nobody holds: only the cyclic collector can free it."""
    return weakref.ref(Cyclic())


def test_no_collection_while_building_and_what_was_built_is_frozen() -> None:
    collector = StateCollector(clock=Clock())
    frozen_before = gc.get_freeze_count()
    with collector.building():
        assert not gc.isenabled()
        state = [{"service": i} for i in range(100)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(state)


def test_cyclic_garbage_frozen_while_building_is_reclaimed_when_idle_and_due() -> None:
    clock = Clock()
    collector = StateCollector(full_every=60, full_limit=NO_LIMIT, clock=clock)
    with collector.building():
        cycle = garbage_cycle()
    gc.collect()
    assert cycle() is not None  # frozen: out of the collector's sight
    clock.now = 59
    collector.idle()
    assert cycle() is not None  # not due yet
    clock.now = 60
    collector.idle()
    assert cycle() is None


def test_a_process_never_idle_still_gets_a_full_collection() -> None:
    clock = Clock()
    collector = StateCollector(full_every=60, full_limit=NO_LIMIT, clock=clock)
    with collector.building():
        cycle = garbage_cycle()
    clock.now = 120
    with collector.building():
        pass
    assert cycle() is None


def test_building_leaves_a_disabled_collector_disabled() -> None:
    collector = StateCollector(clock=Clock())
    gc.disable()
    with collector.building():
        pass
    assert not gc.isenabled()


def test_a_state_too_large_to_rescan_is_left_frozen() -> None:
    """A full collection of a big state would hold the interpreter for seconds (no loop turn, no lease
    renewal): above the limit only what was made outside ``building`` is collected."""
    clock = Clock()
    collector = StateCollector(full_every=60, full_limit=0, clock=clock)
    with collector.building():
        frozen_cycle = garbage_cycle()
    loose_cycle = garbage_cycle()
    clock.now = 60
    collector.idle()
    assert frozen_cycle() is not None
    assert loose_cycle() is None


def test_the_frozen_state_is_counted_without_walking_it() -> None:
    """Counting the frozen objects walks them all (the interpreter held 0.17 s at 50 000 Services): the
    collector keeps its own count of the state it froze."""
    collector = StateCollector(clock=Clock())
    before = collector.frozen
    with collector.building():
        state = [[i] for i in range(10_000)]
    assert collector.frozen >= before + len(state)
    assert abs(collector.frozen - gc.get_freeze_count()) <= gc.get_freeze_count() // 100


def test_what_outlives_a_full_collection_is_not_walked_again_until_handed_back() -> None:
    """The watcher's status state: built for good while it observes. Each full collection walks only what was
    made since the one before; cyclic garbage among what was frozen is reclaimed once the heap is handed back."""
    state = [Cyclic() for _ in range(1000)]
    with survivors_frozen():
        gc.collect()  # a full collection: the state outlives it and is frozen right after
        frozen = gc.get_freeze_count()
        assert frozen >= len(state)
        made_since = [Cyclic() for _ in range(10)]
        gc.collect(1)  # not a full collection: nothing more is frozen
        assert gc.get_freeze_count() == frozen
        gc.collect()
        assert gc.get_freeze_count() >= frozen + len(made_since)
        cycle = weakref.ref(state.pop())  # now garbage, but frozen: no collection sees it
        gc.collect()
        assert cycle() is not None
    gc.collect()
    assert cycle() is not None  # after the block it stays frozen ...
    gc.unfreeze()
    gc.collect()
    assert cycle() is None  # ... and the heap handed back is collected whole
