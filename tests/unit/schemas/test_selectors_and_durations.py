"""Label selectors match like Kubernetes'; Go durations parse like Go's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.metallb import LabelSelector, any_selector_matches, format_go_duration, parse_go_duration

NODE = {"kubernetes.io/hostname": "node-a", "rack": "frontend", "network-speed": "fast"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, NODE, True),
        ({"matchLabels": {"rack": "frontend"}}, NODE, True),
        ({"matchLabels": {"rack": "backend"}}, NODE, False),
        ({"matchLabels": {"rack": "frontend", "zone": "a"}}, NODE, False),
        ({"matchExpressions": [{"key": "rack", "operator": "In", "values": ["frontend", "x"]}]}, NODE, True),
        ({"matchExpressions": [{"key": "rack", "operator": "In", "values": ["x"]}]}, NODE, False),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, NODE, False),
        ({"matchExpressions": [{"key": "network-speed", "operator": "NotIn", "values": ["slow"]}]}, NODE, True),
        ({"matchExpressions": [{"key": "network-speed", "operator": "NotIn", "values": ["fast"]}]}, NODE, False),
        # NotIn holds for a missing key, as in Kubernetes.
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, NODE, True),
        ({"matchExpressions": [{"key": "rack", "operator": "Exists"}]}, NODE, True),
        ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, NODE, False),
        ({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, NODE, True),
        ({"matchExpressions": [{"key": "rack", "operator": "DoesNotExist"}]}, NODE, False),
        # matchLabels and matchExpressions must all hold.
        (
            {
                "matchLabels": {"rack": "frontend"},
                "matchExpressions": [{"key": "network-speed", "operator": "NotIn", "values": ["fast"]}],
            },
            NODE,
            False,
        ),
        ({"matchLabels": None, "matchExpressions": None}, NODE, True),
    ],
)
def test_selector_matches(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is expected


def test_selector_list_is_any_of_and_empty_list_is_everything() -> None:
    a = LabelSelector.model_validate({"matchLabels": {"kubernetes.io/hostname": "node-a"}})
    b = LabelSelector.model_validate({"matchLabels": {"kubernetes.io/hostname": "node-b"}})
    assert any_selector_matches((), NODE)
    assert any_selector_matches((b, a), NODE)
    assert not any_selector_matches((b,), NODE)


def test_selector_canonical_form_ignores_order() -> None:
    one = LabelSelector.model_validate(
        {
            "matchLabels": {"a": "1", "b": "2"},
            "matchExpressions": [{"key": "k", "operator": "In", "values": ["y", "x"]}],
        }
    )
    two = LabelSelector.model_validate(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}],
        }
    )
    assert one.canonical() == two.canonical()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("1h2m3s", 3723.0),
        ("500ms", 0.5),
        ("250us", 0.00025),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("3m0.5s", 180.5),
        ("-2s", -2.0),
    ],
)
def test_go_duration_parses(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected a Go duration"),
        ("90", "missing unit"),
        ("1.5", "missing unit"),
        ("1d", "unknown unit or syntax"),
        ("1m30", "missing unit"),
        ("s", "unknown unit or syntax"),
        ("1 m", "unknown unit or syntax"),
    ],
)
def test_go_duration_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (90.0, "1m30s"), (3.0, "3s"), (3600.0, "1h0m0s"), (0.5, "500ms"), (5400.0, "1h30m0s")],
)
def test_go_duration_formats_like_go(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text
    assert parse_go_duration(text) == pytest.approx(seconds)


@given(st.integers(min_value=0, max_value=10**9))
def test_go_duration_round_trip_in_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_go_duration(format_go_duration(seconds)) == pytest.approx(seconds, abs=1e-9)
