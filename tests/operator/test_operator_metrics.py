"""The metrics are valid exposition format (read back with prometheus_client's own
parser) and say what the operator did and what the models are."""

from __future__ import annotations

import pytest
from tests.operator.conftest import Samples, metric_samples

from modelpress.api.status import CompressedModelStatus
from modelpress.handlers.metrics import (
    ModelFacts,
    OperatorMetrics,
    job_seconds,
    parse_endpoint,
)
from modelpress.plan.observed import JobState


def samples(metrics: OperatorMetrics) -> Samples:
    return metric_samples(metrics.render().decode())


def status(phase: str, served: str | None, gates: dict[str, str]) -> CompressedModelStatus:
    return CompressedModelStatus.model_validate(
        {
            "summary": {"phase": phase},
            "serving": {"variant": served} if served else None,
            "variants": [
                {
                    "name": name,
                    "bytes": 1000,
                    "conditions": [{"type": "QualityGate", "status": value, "reason": "X"}],
                }
                for name, value in gates.items()
            ],
        }
    )


def test_models_variants_and_serving_are_derived_from_the_last_status() -> None:
    metrics = OperatorMetrics()
    metrics.model_seen(
        "a", ModelFacts.from_status("ml", "a", status("Ready", "w4", {"w4": "True", "w8": "True"}))
    )
    metrics.model_seen(
        "b", ModelFacts.from_status("ml", "b", status("Ready", "w8", {"w8": "False"}))
    )
    metrics.model_seen(
        "c", ModelFacts.from_status("ml", "c", status("Compressing", None, {"w4": "Unknown"}))
    )
    metrics.model_seen("d", ModelFacts.from_status("ml", "d", CompressedModelStatus()))
    found = samples(metrics)
    assert found[("modelpress_models", (("phase", "Ready"),))] == 2
    assert found[("modelpress_models", (("phase", "Compressing"),))] == 1
    assert found[("modelpress_models", (("phase", "Unknown"),))] == 1
    assert found[("modelpress_variants", (("gate", "pass"),))] == 2
    assert found[("modelpress_variants", (("gate", "fail"),))] == 1
    assert found[("modelpress_variants", (("gate", "unknown"),))] == 1
    assert (
        found[("modelpress_serving_info", (("model", "a"), ("namespace", "ml"), ("variant", "w4")))]
        == 1
    )
    key = ("modelpress_artifact_bytes", (("model", "b"), ("namespace", "ml"), ("variant", "w8")))
    assert found[key] == 1000

    metrics.model_gone("a")
    metrics.model_gone("b")
    found = samples(metrics)
    assert ("modelpress_models", (("phase", "Ready"),)) not in found
    assert not any(name == "modelpress_serving_info" for name, _ in found), "no stale series"


def test_counters_histograms_and_process_metrics() -> None:
    metrics = OperatorMetrics()
    metrics.reconcile_seconds.observe(0.02)
    metrics.reconcile_seconds.observe(3.0)
    metrics.reconcile_errors.inc()
    metrics.api_error(409)
    metrics.api_error(409)
    metrics.api_error(500)
    metrics.children_created.labels("Job").inc(3)
    metrics.children_deleted.labels("Deployment").inc()
    found = samples(metrics)
    assert found[("modelpress_reconcile_duration_seconds_count", ())] == 2
    assert found[("modelpress_reconcile_duration_seconds_bucket", (("le", "0.025"),))] == 1
    assert found[("modelpress_reconcile_errors_total", ())] == 1
    assert found[("modelpress_api_errors_total", (("code", "409"),))] == 2
    assert found[("modelpress_api_errors_total", (("code", "500"),))] == 1
    assert found[("modelpress_children_created_total", (("kind", "Job"),))] == 3
    assert found[("modelpress_children_deleted_total", (("kind", "Deployment"),))] == 1
    assert found[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name, _ in found)


def job(name: str, status: dict) -> dict:
    return {
        "metadata": {"name": name, "labels": {"modelpress.dev/component": "compress"}},
        "spec": {"backoffLimit": 1},
        "status": status,
    }


def test_jobs_by_phase_and_their_duration_once() -> None:
    metrics = OperatorMetrics()
    running = job("j", {"startTime": "2026-01-01T00:00:00Z", "active": 1, "ready": 1})
    done = job(
        "j",
        {
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:04:00Z",
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    )
    assert job_seconds(running) is None and job_seconds(done) == 240
    metrics.job_seen("ml", JobState.from_object(running), gone=False, seconds=None)
    found = samples(metrics)
    assert found[("modelpress_jobs", (("component", "compress"), ("phase", "running")))] == 1
    for _ in range(2):  # the same finished Job seen twice counts once
        metrics.job_seen("ml", JobState.from_object(done), gone=False, seconds=240)
    found = samples(metrics)
    assert found[("modelpress_jobs", (("component", "compress"), ("phase", "succeeded")))] == 1
    count = (
        "modelpress_job_duration_seconds_count",
        (("component", "compress"), ("outcome", "succeeded")),
    )
    assert found[count] == 1
    metrics.job_seen("ml", JobState.from_object(done), gone=True, seconds=240)
    assert not any(name == "modelpress_jobs" for name, _ in samples(metrics))


def test_endpoint_must_be_an_http_url_with_a_port() -> None:
    assert parse_endpoint("http://0.0.0.0:9090/metrics") == ("0.0.0.0", 9090, "/metrics")
    for bad in ("0.0.0.0:9090", "https://0.0.0.0:9090/metrics", "http://host/metrics"):
        with pytest.raises(ValueError, match="must look like"):
            parse_endpoint(bad)
