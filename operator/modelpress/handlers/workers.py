"""The workers that take models off the queue and reconcile them.

`workerLimit` of them, plus one task that moves scheduled models (resync,
backoff) onto the queue when they are due.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

from modelpress.handlers.reconcile import Children, reconcile
from modelpress.handlers.settings import FINALIZER
from modelpress.handlers.state import ModelKey, OperatorState

log = logging.getLogger("modelpress.operator")


def start_workers(state: OperatorState, children: Children) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(state.queue.run_schedule(), name="modelpress-schedule")]
    for number in range(state.config.worker_limit):
        worker = work(state, children)
        tasks.append(asyncio.create_task(worker, name=f"modelpress-worker-{number}"))
    return tasks


async def work(state: OperatorState, children: Children) -> None:
    while True:
        key = await state.queue.get()
        try:
            delay = await _reconcile_one(state, children, key)
        finally:
            state.queue.done(key)
        if delay is not None:
            state.queue.add_after(key, delay)


async def _reconcile_one(state: OperatorState, children: Children, key: ModelKey) -> float | None:
    """Reconcile the model; seconds until it should be looked at again (None: only when
    something changes)."""
    body = state.model(key)
    if body is None:
        return None
    metadata = body.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return None  # the deletion handler's now
    if FINALIZER not in (metadata.get("finalizers") or ()):
        # Nothing is created before deletion can clean it up: kopf adds the finalizer
        # now, and that change queues the model again.
        return state.config.resync_seconds
    name = f"{key[0]}/{key[1]}"
    try:
        await reconcile(state, body, children)
    except kopf.TemporaryError as error:
        log.warning("%s: reconcile failed, retrying: %s", name, error)
        return error.delay or state.config.backoff_seconds
    except Exception:
        log.exception("%s: reconcile failed unexpectedly, retrying", name)
        return state.config.backoff_seconds
    return state.config.resync_seconds
