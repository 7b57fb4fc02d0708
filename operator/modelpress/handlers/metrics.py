"""Prometheus metrics of the operator, in the text exposition format.

Counted where the work happens (reconcile, children created, API errors) and
rendered by a pure function, so the numbers are testable without a server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class OperatorMetrics:
    reconciles: int = 0
    reconcile_errors: int = 0
    reconcile_seconds: float = 0.0
    children_created: Counter[str] = field(default_factory=Counter)
    children_deleted: Counter[str] = field(default_factory=Counter)

    def render(self, statuses: Mapping[str, Mapping[str, Any]]) -> str:
        """The exposition text; `statuses` are the last status written per model."""
        phases = Counter(
            str(((status.get("summary") or {}).get("phase")) or "Unknown")
            for status in statuses.values()
        )
        lines = [
            *_metric(
                "modelpress_reconciles_total",
                "counter",
                "Reconciles completed.",
                {(): self.reconciles},
            ),
            *_metric(
                "modelpress_reconcile_errors_total",
                "counter",
                "Reconciles whose changes the API server refused (retried).",
                {(): self.reconcile_errors},
            ),
            *_metric(
                "modelpress_reconcile_seconds_total",
                "counter",
                "Time spent reconciling.",
                {(): round(self.reconcile_seconds, 6)},
            ),
            *_metric(
                "modelpress_children_created_total",
                "counter",
                "Child objects created, by kind.",
                {(("kind", k),): v for k, v in sorted(self.children_created.items())},
            ),
            *_metric(
                "modelpress_children_deleted_total",
                "counter",
                "Obsolete child objects deleted, by kind.",
                {(("kind", k),): v for k, v in sorted(self.children_deleted.items())},
            ),
            *_metric(
                "modelpress_models",
                "gauge",
                "CompressedModels this operator has reconciled, by phase.",
                {(("phase", p),): v for p, v in sorted(phases.items())},
            ),
        ]
        return "\n".join(lines) + "\n"


def _metric(
    name: str, kind: str, help_text: str, samples: Mapping[tuple[tuple[str, str], ...], float]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples.items():
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_endpoint(url: str) -> tuple[str, int, str]:
    """`http://0.0.0.0:9090/metrics` -> (host, port, path); a clear error otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"metrics endpoint {url!r} must look like http://0.0.0.0:9090/metrics")
    return parts.hostname, parts.port, parts.path or "/metrics"


async def serve_metrics(url: str, render: Any) -> Any:
    """Start an HTTP server answering `render()` at the URL's path; returns its runner."""
    from aiohttp import web

    host, port, path = parse_endpoint(url)

    async def handle(_: web.Request) -> web.Response:
        return web.Response(text=render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get(path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
