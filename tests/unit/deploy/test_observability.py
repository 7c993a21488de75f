"""The Grafana dashboard and the Prometheus alert rules: they parse, and every metric they query is one
the code registers (under the name Prometheus shows), or an external one named here on purpose."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache

import pytest
import yaml

from tests.unit.deploy.manifests import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "metalbus-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

#: Metrics from elsewhere: Prometheus itself and kube-state-metrics.
EXTERNAL = frozenset({"up", "kube_daemonset_status_number_ready"})

#: Metrics the dashboard or the alerts use that no code registers yet (none today). Each turns into a
#: passing check as soon as the code registers it; a name outside this set that the code lacks fails.
#: Note: prometheus_client shows a Counter registered as ``x`` as ``x_total``, while MetalLB's layer 2
#: counters have no suffix (``metallb_layer2_responses_sent``); the dashboard queries the series names
#: as scraped.
NOT_YET_REGISTERED: frozenset[str] = frozenset()

_LITERAL = re.compile(r"\"((?:metallb|metalbus)_[a-z0-9_]+)\"")
_COUNTER = re.compile(r"\b(?:Counter|CounterMetricFamily)\(\s*\"((?:metallb|metalbus)_[a-z0-9_]+)\"")
_HISTOGRAM = re.compile(r"\b(?:Histogram|Summary|HistogramMetricFamily|SummaryMetricFamily)\(\s*\"([a-z0-9_]+)\"")


@cache
def exposed_series() -> dict[str, str]:
    """Series name as scraped → the name the code registers (grepped from services/: metric objects and
    custom collectors alike), with prometheus_client's suffixes for counters and histograms."""
    series: dict[str, str] = {}
    for path in (ROOT / "services").rglob("*.py"):
        text = path.read_text()
        counters, histograms = set(_COUNTER.findall(text)), set(_HISTOGRAM.findall(text))
        for name in _LITERAL.findall(text):
            if name in counters:
                base = name.removesuffix("_total")
                series[f"{base}_total"] = name
                series[f"{base}_created"] = name
            elif name in histograms:
                for suffix in ("_bucket", "_sum", "_count", "_created", ""):
                    series[f"{name}{suffix}"] = name
            else:
                series[name] = name
    return series


_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                       "unless", "offset", "le", "inf", "nan"})


def metric_names(expression: str) -> set[str]:
    """Metric names in a PromQL expression (labels, strings, ranges, functions and keywords left out)."""
    text = re.sub(r'"[^"]*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end():].lstrip()[:1]
        if following == "(" or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def dashboard() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_expressions() -> Iterator[str]:
    for panel in dashboard()["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", []):
            yield target["expr"]


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def all_names() -> set[str]:
    names = set()
    for expression in [*dashboard_expressions(), *(str(rule["expr"]) for rule in alert_rules())]:
        names |= metric_names(expression)
    return names


def test_metric_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x"}[5m])))') == {"a_bucket"}
    assert metric_names("(sum(b) or vector(0)) < 1") == {"b"}
    assert metric_names("max by (pool) (c) / max by (pool) (d > 0) > 0.9") == {"c", "d"}


@pytest.mark.parametrize("name", sorted(all_names()))
def test_every_queried_metric_exists(name: str) -> None:
    if name in EXTERNAL:
        return
    assert name.startswith(("metallb_", "metalbus_")), f"{name}: neither ours nor a declared external metric"
    if name in exposed_series():
        assert name not in NOT_YET_REGISTERED, f"{name} is registered now: drop it from NOT_YET_REGISTERED"
        return
    if name in NOT_YET_REGISTERED:
        pytest.xfail(f"{name} is not registered by the code yet")
    pytest.fail(f"{name} is queried but no code registers it (registered: {sorted(set(exposed_series()))})")


def test_the_code_registers_metallb_names_where_the_meaning_is_the_same() -> None:
    registered = set(exposed_series().values())
    assert {"metallb_allocator_addresses_in_use_total", "metallb_allocator_addresses_total"} <= registered


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] == "metalbus"
    panels = board["panels"]
    assert isinstance(panels, list)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
    shown = all_names()
    for name in ("metallb_allocator_addresses_in_use_total", "metallb_layer2_responses_sent",
                 "metallb_bgp_session_up", "metalbus_ipam_decision_latency_seconds_bucket",
                 "metalbus_watcher_status_write_lag_seconds_bucket"):
        assert name in shown


def test_alert_rules_shape_and_coverage() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert document["kind"] == "PrometheusRule" and document["apiVersion"] == "monitoring.coreos.com/v1"
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
        assert "summary" in rule["annotations"]  # type: ignore[operator]
        expression = str(rule["expr"])
        assert expression.count("(") == expression.count(")"), rule["alert"]
    for wanted in ("MetalbusNoActiveIpam", "MetalbusPoolNearlyFull", "MetalbusBGPSessionDown",
                   "MetalbusAnnouncerHeartbeatsMissing", "MetalbusDeadLettersGrowing"):
        assert wanted in names
