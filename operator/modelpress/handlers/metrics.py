"""Prometheus metrics of the operator, through `prometheus_client`.

Counters and histograms are updated where the work happens (reconciles, API
errors, children, Jobs). What describes the models (phase, gate results, the
served variant, artifact bytes) is derived at scrape time from one small record
per model (`ModelFacts`), so a scrape costs nothing between scrapes and a model
that is deleted leaves no series behind. Process metrics come from the library.

Each running operator has a registry of its own, so tests can run several.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from modelpress.api.reasons import ConditionType
from modelpress.api.status import CompressedModelStatus
from modelpress.plan.observed import JobState

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)


@dataclass(frozen=True)
class VariantFacts:
    name: str
    bytes: int | None
    gate: str
    """pass, fail or unknown (not evaluated yet)."""


@dataclass(frozen=True)
class ModelFacts:
    """What the metrics say about one model: a few strings and numbers, not its status."""

    namespace: str
    name: str
    phase: str
    served: str | None
    variants: tuple[VariantFacts, ...]

    @classmethod
    def from_status(cls, namespace: str, name: str, status: CompressedModelStatus) -> ModelFacts:
        variants = []
        for variant in status.variants:
            gate = next(
                (c for c in variant.conditions if c.type == ConditionType.QUALITY_GATE), None
            )
            if gate is None or gate.status == "Unknown":
                result = "unknown"
            else:
                result = "pass" if gate.status == "True" else "fail"
            variants.append(VariantFacts(variant.name, variant.bytes, result))
        phase = (status.summary.phase if status.summary else None) or "Unknown"
        served = status.serving.variant if status.serving else None
        return cls(namespace, name, phase, served, tuple(variants))


def job_phase(job: JobState) -> str:
    if job.complete:
        return "succeeded"
    if job.is_failed:
        return "failed"
    return "running" if job.ready else "pending"


def job_seconds(job: Mapping[str, Any]) -> float | None:
    """From a Job's start to its end (completion, or the Failed condition), if it ended."""
    status = job.get("status") or {}
    end = status.get("completionTime") or next(
        (
            c.get("lastTransitionTime")
            for c in status.get("conditions") or []
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        None,
    )
    start = status.get("startTime")
    if not start or not end:
        return None
    try:
        return max(0.0, (_instant(end) - _instant(start)).total_seconds())
    except ValueError:
        return None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.reconcile_seconds = Histogram(
            "modelpress_reconcile_duration_seconds",
            "Time one reconcile took (observe, plan, apply).",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "modelpress_reconcile_errors",
            "Reconciles whose changes the API server refused (retried).",
            registry=registry,
        )
        self.api_errors = Counter(
            "modelpress_api_errors",
            "API server answers of 400 and above to the operator's own requests, by code.",
            ["code"],
            registry=registry,
        )
        self.children_created = Counter(
            "modelpress_children_created",
            "Child objects created, by kind.",
            ["kind"],
            registry=registry,
        )
        self.children_deleted = Counter(
            "modelpress_children_deleted",
            "Obsolete child objects deleted, by kind.",
            ["kind"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "modelpress_job_duration_seconds",
            "Time from a Job's start to its end, by component (fetch, compress) and outcome.",
            ["component", "outcome"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.models: dict[str, ModelFacts] = {}
        """By object uid."""
        self.jobs: dict[tuple[str, str], tuple[str, str]] = {}
        """(namespace, Job) -> (component, phase), for the Jobs that exist."""
        registry.register(_Derived(self))

    def api_error(self, code: int) -> None:
        self.api_errors.labels(str(code)).inc()

    def model_seen(self, uid: str, facts: ModelFacts) -> None:
        self.models[uid] = facts

    def model_gone(self, uid: str) -> None:
        self.models.pop(uid, None)

    def job_seen(self, namespace: str, job: JobState, gone: bool, seconds: float | None) -> None:
        """A Job event: its phase now, and its duration the first time it is seen finished."""
        key = (namespace, job.name)
        component = job.component or "unknown"
        before = self.jobs.pop(key, None)
        if gone:
            return
        phase = job_phase(job)
        self.jobs[key] = (component, phase)
        finished_now = job.finished and (before is None or before[1] != phase)
        if finished_now and seconds is not None:
            self.job_seconds.labels(component, phase).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Derived(Collector):
    """The gauges read from the per-model records at scrape time."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        models = list(self.metrics.models.values())
        phases = GaugeMetricFamily(
            "modelpress_models", "CompressedModels by phase.", labels=["phase"]
        )
        for phase, count in sorted(Tally(m.phase for m in models).items()):
            phases.add_metric([phase], count)
        yield phases

        gates = GaugeMetricFamily(
            "modelpress_variants", "Variants by quality-gate result.", labels=["gate"]
        )
        results = Tally(v.gate for m in models for v in m.variants)
        for gate in ("pass", "fail", "unknown"):
            gates.add_metric([gate], results.get(gate, 0))
        yield gates

        sizes = GaugeMetricFamily(
            "modelpress_artifact_bytes",
            "Bytes of each built variant's artifact.",
            labels=["namespace", "model", "variant"],
        )
        served = InfoMetricFamily(
            "modelpress_serving",
            "The variant each model serves.",
            labels=["namespace", "model"],
        )
        for model in models:
            for variant in model.variants:
                if variant.bytes is not None:
                    sizes.add_metric([model.namespace, model.name, variant.name], variant.bytes)
            if model.served:
                served.add_metric([model.namespace, model.name], {"variant": model.served})
        yield sizes
        yield served

        jobs = GaugeMetricFamily(
            "modelpress_jobs", "Jobs by component and phase.", labels=["component", "phase"]
        )
        for (component, phase), count in sorted(Tally(self.metrics.jobs.values()).items()):
            jobs.add_metric([component, phase], count)
        yield jobs


def parse_endpoint(url: str) -> tuple[str, int, str]:
    """`http://0.0.0.0:9090/metrics` -> (host, port, path); a clear error otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"metrics endpoint {url!r} must look like http://0.0.0.0:9090/metrics")
    return parts.hostname, parts.port, parts.path or "/metrics"


async def serve_metrics(url: str, render: Any) -> Any:
    """Start an HTTP server answering `render()` at the URL's path; returns its runner."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST

    host, port, path = parse_endpoint(url)

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
