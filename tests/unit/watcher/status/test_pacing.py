"""Write pacing: as fast as the API server accepts, a whole-writer pause on 429 — a story, row by row."""

from __future__ import annotations

import pytest

from services.watcher.status.pacing import WriteAnswer, WritePacing, retry_after_seconds


def test_writes_start_until_the_window_is_full() -> None:
    pacing = WritePacing(most_in_flight=3)
    for _ in range(3):
        assert pacing.wait(now=0.0) == 0.0
        pacing.started()
    assert pacing.wait(now=0.0) is None  # full: a write must end first
    pacing.finished(WriteAnswer.ACCEPTED, now=0.1)
    assert pacing.wait(now=0.1) == 0.0


def test_a_429_pauses_every_write_for_its_retry_after_and_halves_the_window() -> None:
    pacing = WritePacing(most_in_flight=8)
    for _ in range(8):
        pacing.started()
    # the whole burst in flight is refused: one pause, one halving, however many answers say so
    for index in range(8):
        pacing.finished(WriteAnswer.TOO_MANY_REQUESTS, now=10.0 + index * 0.01, retry_after=2.0)
    assert (pacing.refusals, pacing.pauses, pacing.window) == (8, 1, 4)
    assert pacing.wait(now=11.0) == pytest.approx(1.07)  # the latest refusal's Retry-After counts
    assert pacing.wait(now=12.07) == 0.0
    # after the pause, four at once, not eight
    for _ in range(4):
        pacing.started()
    assert pacing.wait(now=12.1) is None


def test_refused_again_after_the_pause_halves_again_down_to_one() -> None:
    pacing = WritePacing(most_in_flight=4)
    for now in (0.0, 2.0, 4.0, 6.0):
        pacing.started()
        pacing.finished(WriteAnswer.TOO_MANY_REQUESTS, now=now, retry_after=1.0)
    assert (pacing.pauses, pacing.window) == (4, 1)


def test_the_window_grows_back_by_one_per_window_of_accepted_writes() -> None:
    pacing = WritePacing(most_in_flight=4)
    pacing.started()
    pacing.finished(WriteAnswer.TOO_MANY_REQUESTS, now=0.0, retry_after=0.0)
    pacing.started()
    pacing.finished(WriteAnswer.TOO_MANY_REQUESTS, now=1.0, retry_after=0.0)
    assert pacing.window == 1
    windows = []
    for _ in range(6):
        pacing.started()
        pacing.finished(WriteAnswer.ACCEPTED, now=2.0)
        windows.append(pacing.window)
    assert windows == [2, 2, 3, 3, 3, 4]
    pacing.started()
    pacing.finished(WriteAnswer.ACCEPTED, now=2.0)
    assert pacing.window == 4  # never past the most in flight


def test_other_failures_say_nothing_about_the_servers_capacity() -> None:
    pacing = WritePacing(most_in_flight=4)
    pacing.started()
    pacing.finished(WriteAnswer.FAILED, now=0.0)
    assert (pacing.window, pacing.wait(now=0.0), pacing.in_flight) == (4, 0.0, 0)


def test_a_429_without_retry_after_pauses_the_default_and_a_huge_one_the_longest() -> None:
    pacing = WritePacing(most_in_flight=2, default_pause=1.5, longest_pause=30.0)
    pacing.started()
    pacing.finished(WriteAnswer.TOO_MANY_REQUESTS, now=0.0)
    assert pacing.wait(now=0.0) == 1.5
    pacing.started()
    pacing.finished(WriteAnswer.TOO_MANY_REQUESTS, now=5.0, retry_after=3600.0)
    assert pacing.wait(now=5.0) == 30.0


def test_retry_after_is_read_as_seconds() -> None:
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds(" 2.5 ") == 2.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None  # a date: the default pause
    assert retry_after_seconds("-3") is None
    assert retry_after_seconds("nan") is None
