"""Running the operator: kopf with the registry, settings and scope from the config."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import kopf

from modelpress.handlers.metrics import serve_metrics
from modelpress.handlers.registry import build_registry
from modelpress.handlers.state import OperatorState


async def run_operator(
    state: OperatorState,
    *,
    namespaces: Sequence[str] = (),
    standalone: bool | None = None,
    liveness_endpoint: str | None = None,
    metrics_endpoint: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run until `stop_flag` is set (or a signal arrives, in the main thread).

    Watches `namespaces` (globs allowed), or the whole cluster when there are none.
    With `metrics_endpoint` (e.g. http://0.0.0.0:9090/metrics) it also serves
    Prometheus metrics.
    """
    registry = build_registry(state, standalone)
    settings = kopf.OperatorSettings()
    kwargs: dict[str, Any] = {}
    if namespaces:
        kwargs["namespaces"] = list(namespaces)
    else:
        kwargs["clusterwide"] = True
    metrics_server = None
    if metrics_endpoint:
        metrics_server = await serve_metrics(metrics_endpoint, state.metrics.render)
    try:
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=state.config.peering.standalone if standalone is None else standalone,
            liveness_endpoint=liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **kwargs,
        )
    finally:
        if metrics_server is not None:
            await metrics_server.cleanup()
