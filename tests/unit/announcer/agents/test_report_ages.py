"""Reports that outlive ``ANNOUNCE``'s 30 days: a report unchanged for a week is published again."""

from __future__ import annotations

from ipaddress import ip_address

from schemas.events import ServiceId
from services.announcer.agents.layer2_ownership import Answering, report_changes
from services.announcer.agents.report_ages import REFRESH_AFTER, ReportAges

DAY = 86400.0
V4, V6 = ip_address("192.0.2.10"), ip_address("2001:db8::10")
ONE = Answering(interfaces=("eth0",), epoch=5, services=(ServiceId(namespace="default", name="web"),))


def test_a_report_is_due_a_week_after_it_was_last_published_and_until_published_again() -> None:
    ages = ReportAges[str]()
    ages.published("a", 0.0)
    ages.published("b", 2 * DAY)
    assert REFRESH_AFTER == 7 * DAY and ages.due(6 * DAY) == set()
    assert ages.due(7 * DAY) == {"a"} and ages.due(7.5 * DAY) == {"a"}  # until published again
    ages.published("a", 7.5 * DAY)
    assert ages.due(9 * DAY) == {"b"}
    ages.withdrawn("b")
    assert ages.due(14 * DAY) == set() and ages.due(14.5 * DAY) == {"a"}


def test_an_l2_report_due_is_published_again_unchanged_and_one_no_longer_answered_is_withdrawn() -> None:
    assert report_changes(node="a", reported={V4: ONE}, answering={V4: ONE}, newest_epoch={}) == []
    [(ip, again)] = report_changes(node="a", reported={V4: ONE}, answering={V4: ONE}, newest_epoch={},
                                   refresh={V4})
    assert (ip, again.announcing, again.interfaces, again.placement_epoch) == (V4, True, ("eth0",), 5)
    [(ip, gone)] = report_changes(node="a", reported={V6: ONE}, answering={}, newest_epoch={}, refresh={V6})
    assert (ip, gone.announcing) == (V6, False)
