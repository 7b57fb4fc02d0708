"""The metrics text is valid exposition format and says what the operator did."""

from __future__ import annotations

import pytest

from modelpress.handlers.metrics import OperatorMetrics, parse_endpoint


def test_render_counts_phases_and_children() -> None:
    metrics = OperatorMetrics(reconciles=7, reconcile_errors=1)
    metrics.children_created["Job"] += 3
    metrics.children_deleted["Deployment"] += 1
    statuses = {
        "a": {"summary": {"phase": "Ready"}},
        "b": {"summary": {"phase": "Ready"}},
        "c": {"summary": {"phase": "Compressing"}},
        "d": {},
    }
    text = metrics.render(statuses)
    assert "modelpress_reconciles_total 7\n" in text
    assert "modelpress_reconcile_errors_total 1\n" in text
    assert 'modelpress_children_created_total{kind="Job"} 3\n' in text
    assert 'modelpress_children_deleted_total{kind="Deployment"} 1\n' in text
    assert 'modelpress_models{phase="Ready"} 2\n' in text
    assert 'modelpress_models{phase="Compressing"} 1\n' in text
    assert 'modelpress_models{phase="Unknown"} 1\n' in text
    for line in text.splitlines():
        assert line.startswith("# ") or line.startswith("modelpress_"), line


def test_endpoint_must_be_an_http_url_with_a_port() -> None:
    assert parse_endpoint("http://0.0.0.0:9090/metrics") == ("0.0.0.0", 9090, "/metrics")
    for bad in ("0.0.0.0:9090", "https://0.0.0.0:9090/metrics", "http://host/metrics"):
        with pytest.raises(ValueError, match="must look like"):
            parse_endpoint(bad)
