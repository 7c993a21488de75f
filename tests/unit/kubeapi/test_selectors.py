"""Label selector grammar, as the API server reads it."""

from __future__ import annotations

import pytest

from tests.kubeapi.selectors import SelectorError, parse_label_selector

LABELS = {"app": "web", "tier": "fe", "kubernetes.io/service-name": "web"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web, api)", True),
        ("app in (api)", False),
        ("app notin (api,db)", True),
        ("missing notin (x)", True),
        ("tier", True),
        ("!tier", False),
        ("! missing", True),
        ("kubernetes.io/service-name=web,app in (web),!missing", True),
        ("kubernetes.io/service-name=web,app=db", False),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize("selector", ["app in web", "app=we b", "=web", "app in (web", "a,,b"])
def test_malformed_label_selectors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)
