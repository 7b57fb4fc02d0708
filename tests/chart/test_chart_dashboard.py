"""The Grafana dashboard and the vLLM PodMonitor the chart can ship: every expression
names a metric that the operator or vLLM really exports, and the monitor selects the
serving pods the operator creates, on the port they listen on."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chart_render import find, rendered_set

from modelpress.api.status import CompressedModelStatus
from modelpress.handlers.metrics import ModelFacts, OperatorMetrics
from modelpress.plan import names
from modelpress.plan.observed import JobState

HERE = Path(__file__).resolve().parent
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created", "_info")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "offset"}  # fmt: skip


def operator_names() -> set[str]:
    """What a running operator exposes once it has seen a model and a Job."""
    metrics = OperatorMetrics()
    status = CompressedModelStatus.model_validate(
        {
            "summary": {"phase": "Ready"},
            "serving": {"variant": "w4"},
            "variants": [{"name": "w4", "bytes": 1}],
        }
    )
    metrics.model_seen("uid", ModelFacts.from_status("ml", "m", status))
    metrics.job_seen("ml", JobState(name="j", component="fetch", complete=True), False, 1.0)
    metrics.api_error(409)
    metrics.children_created.labels("Job").inc()
    metrics.children_deleted.labels("Job").inc()
    metrics.reconcile_errors.inc()
    metrics.reconcile_seconds.observe(0.1)
    text = metrics.render().decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def vllm_names() -> set[str]:
    lines = (HERE / "vllm-metrics.txt").read_text().splitlines()
    bases = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {base + suffix for base in bases for suffix in SUFFIXES}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (no full parser: enough for ours)."""
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # grouping labels
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group()
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or word in PROMQL_WORDS:  # a function or a keyword
            continue
        found.add(word)
    return found


def dashboard() -> dict:
    (config_map,) = [
        o for o in find(rendered_set("peering-and-metrics"), "ConfigMap")
        if o["metadata"]["name"].endswith("-dashboard")
    ]  # fmt: skip
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    return json.loads(config_map["data"]["modelpress.json"])


def test_every_dashboard_expression_names_exported_metrics() -> None:
    known = operator_names() | vllm_names()
    panels = dashboard()["panels"]
    assert len(panels) >= 10
    read = set()
    for panel in panels:
        for target in panel["targets"]:
            names_read = metric_names(target["expr"])
            assert names_read, target["expr"]
            assert names_read <= known, (panel["title"], names_read - known)
            read |= names_read
    assert any(n.startswith("vllm:") for n in read) and any(
        n.startswith("modelpress_") for n in read
    )


def test_the_name_check_catches_a_typo() -> None:
    assert metric_names('sum by (phase) (rate(modelpress_modles{a="b"}[5m]))') == {
        "modelpress_modles"
    }
    assert "modelpress_modles" not in operator_names() | vllm_names()


def test_the_shipped_file_is_what_the_chart_renders() -> None:
    shipped = json.loads(
        (HERE.parents[1] / "charts/modelpress/files/grafana-dashboard.json").read_text()
    )
    assert dashboard() == shipped


def test_the_pod_monitor_scrapes_the_serving_pods_http_port() -> None:
    (monitor,) = find(rendered_set("peering-and-metrics"), "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {names.MANAGED_BY: names.MANAGER, names.LABEL_COMPONENT: names.SERVING}
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_nothing_is_rendered_unless_asked() -> None:
    assert not find(rendered_set("defaults"), "PodMonitor")
    assert not [
        o
        for o in find(rendered_set("defaults"), "ConfigMap")
        if "dashboard" in o["metadata"]["name"]
    ]
