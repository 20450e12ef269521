"""docs/grafana-dashboard.json graphs only what /metrics exports: every metric name in its PromQL
is a sample name of a real app's /metrics (a counter's `_total`, a histogram's `_bucket`, `_sum`,
`_count`), and every panel has a query."""
from __future__ import annotations

import json
import re

from prometheus_client.parser import text_string_to_metric_families

from ivr.config import ROOT

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("_sum", "_count", ""), "untyped": ("",)}


def exported(text: str) -> set:
    """Sample names /metrics can carry, from its families (labelled families with no sample yet too)."""
    names = set()
    for fam in text_string_to_metric_families(text):
        names |= {fam.name + s for s in SUFFIXES.get(fam.type, ("",))}
        names |= {s.name for s in fam.samples}
    return names


def expressions(dashboard: dict) -> list:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for var in dashboard["templating"]["list"]:
        if isinstance(var.get("query"), dict):
            out.append((var["name"], var["query"]["query"]))
    return out


def test_every_metric_the_dashboard_queries_is_exported(app):
    resp = app.test_client().get("/metrics")
    names = exported(resp.get_data(as_text=True))
    dashboard = json.loads(DASHBOARD.read_text())
    used = {}
    for title, expr in expressions(dashboard):
        for name in re.findall(r"\bivr_[a-z_]+", expr):
            used.setdefault(name, title)
    missing = {name: title for name, title in used.items() if name not in names}
    assert not missing, f"queried but not exported: {missing}"
    # The figures the issue asks operators to see are all on it.
    for name in ("ivr_http_request_duration_seconds_bucket", "ivr_turn_latency_seconds_bucket",
                 "ivr_recognition_latency_seconds_bucket", "ivr_calls_total", "ivr_handoffs_total",
                 "ivr_callbacks_requested_total", "ivr_failures_total", "ivr_wait_seconds_bucket"):
        assert name in used, name


def test_a_wrong_name_would_be_caught(app):
    """The check itself: a counter without `_total`, or a histogram's bare name, is not a sample."""
    names = exported(app.test_client().get("/metrics").get_data(as_text=True))
    assert "ivr_calls_total" in names and "ivr_calls" not in names
    assert "ivr_wait_seconds_bucket" in names and "ivr_wait_seconds" not in names


def test_every_panel_queries_something():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p.get("targets") and all(t["expr"].strip() for t in p["targets"]) for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
