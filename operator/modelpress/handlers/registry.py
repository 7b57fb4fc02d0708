"""The kopf handlers, registered in a registry of their own (one per operator run,
so tests can start, stop and restart operators in one process).

- a watch of the models keeps each one's latest body and queues it (a work
  queue, `workqueue.py`) on first sight, when the spec changes or a retry is
  asked for; a child Job, Deployment or Service changing queues its model too;
  each reconcile schedules the next one `resyncSeconds` later (level-based:
  nothing is missed for long). `workerLimit` workers take models off the queue,
  never the same one twice at once. There are no kopf create/update handlers or
  daemons, so kopf writes nothing on the model but its finalizer, and what the
  operator keeps per model is its body and a few small entries;
- indexes of the children by model, kept current by watches, so a reconcile
  lists nothing;
- delete (a finalizer): honour spec.deletionPolicy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from modelpress.api.resource import GROUP, PLURAL, VERSION
from modelpress.handlers import deletion
from modelpress.handlers.kube import KubeClient
from modelpress.handlers.metrics import job_seconds
from modelpress.handlers.reconcile import Children, needs_reconcile
from modelpress.handlers.settings import configure
from modelpress.handlers.state import OperatorState
from modelpress.handlers.workers import start_workers
from modelpress.plan.jobset import JOBSET_KIND, JOBSET_NAME_LABEL, JOBSET_SETTLE_SECONDS
from modelpress.plan.names import (
    GANG,
    LABEL_COMPONENT,
    LABEL_MODEL,
    MANAGED_BY,
    MANAGER,
    SERVING,
)
from modelpress.plan.observed import DeploymentState, JobState, ServiceState

Logger = logging.Logger | logging.LoggerAdapter[Any]
MODEL = (GROUP, VERSION, PLURAL)
CHILD_LABELS: dict[str, Any] = {
    MANAGED_BY: MANAGER,
    LABEL_MODEL: kopf.PRESENT,
}


def default_login(**kwargs: Any) -> Any:
    """In a pod: the ServiceAccount; elsewhere: the kubeconfig."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def build_registry(state: OperatorState, standalone: bool | None = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    workers: list[asyncio.Task[None]] = []

    @kopf.on.startup(id="configure", registry=registry)
    async def startup(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, state.config, standalone)

    @kopf.on.login(id="login", registry=registry)
    async def login(**kwargs: Any) -> Any:
        connection = (state.login or default_login)(**kwargs)
        if connection is not None:
            if state.client is not None:
                await state.client.close()
            state.client = KubeClient(connection, on_error=state.metrics.api_error)
        return connection

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        workers.clear()
        if state.client is not None:
            await state.client.close()

    # --- children, indexed by their model and waking it up when they change -------------

    @kopf.index("batch", "v1", "jobs", id="modelpress_jobs", labels=CHILD_LABELS, registry=registry)
    async def modelpress_jobs(*, namespace: Any, labels: Any, body: Any, **_: Any) -> Any:
        if JOBSET_NAME_LABEL in labels:
            # a JobSet's Job: the model reads the JobSet itself, knowing from here it has one
            return {(namespace, labels[LABEL_MODEL], JOBSET_KIND): labels[JOBSET_NAME_LABEL]}
        return {(namespace, labels[LABEL_MODEL]): JobState.from_object(body)}

    @kopf.index(
        "apps",
        "v1",
        "deployments",
        id="modelpress_deployments",
        labels=CHILD_LABELS,
        registry=registry,
    )
    async def modelpress_deployments(*, namespace: Any, labels: Any, body: Any, **_: Any) -> Any:
        return {(namespace, labels[LABEL_MODEL]): DeploymentState.from_object(body)}

    @kopf.index(
        "", "v1", "services", id="modelpress_services", labels=CHILD_LABELS, registry=registry
    )
    async def modelpress_services(*, namespace: Any, labels: Any, body: Any, **_: Any) -> Any:
        if labels.get(LABEL_COMPONENT, SERVING) != SERVING:
            # an indexed Job's headless Service, not the model's endpoint: kept apart
            return {(namespace, labels[LABEL_MODEL], GANG): ServiceState.from_object(body)}
        return {(namespace, labels[LABEL_MODEL]): ServiceState.from_object(body)}

    @kopf.index(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        id="modelpress_policies",
        labels=CHILD_LABELS,
        registry=registry,
    )
    async def modelpress_policies(*, namespace: Any, labels: Any, body: Any, **_: Any) -> Any:
        return {(namespace, labels[LABEL_MODEL]): ServiceState.from_object(body)}

    @kopf.on.event("batch", "v1", "jobs", id="poke", labels=CHILD_LABELS, registry=registry)
    async def job_changed(*, namespace: Any, labels: Any, body: Any, type: Any, **_: Any) -> None:
        job = JobState.from_object(body)
        state.metrics.job_seen(namespace, job, gone=type == "DELETED", seconds=job_seconds(body))
        state.queue.add((namespace, labels[LABEL_MODEL]))
        if JOBSET_NAME_LABEL in labels and job.finished:
            # JobSets are not watched: look again once JobSet has read its Job's end
            state.queue.add_after((namespace, labels[LABEL_MODEL]), JOBSET_SETTLE_SECONDS)

    @kopf.on.event("apps", "v1", "deployments", id="poke", labels=CHILD_LABELS, registry=registry)
    @kopf.on.event("", "v1", "services", id="poke", labels=CHILD_LABELS, registry=registry)
    async def child_changed(*, namespace: Any, labels: Any, **_: Any) -> None:
        state.queue.add((namespace, labels[LABEL_MODEL]))

    # --- the models -------------------------------------------------------------------

    @kopf.on.event(*MODEL, id="models", registry=registry)  # type: ignore[arg-type]
    # kopf passes each index as a keyword argument named by its id; its callback Protocols
    # do not list them, hence the ignore.
    async def model_event(
        *,
        event: Any,
        type: Any,
        namespace: Any,
        name: Any,
        modelpress_jobs: kopf.Index[Any, Any],
        modelpress_deployments: kopf.Index[Any, DeploymentState],
        modelpress_services: kopf.Index[Any, ServiceState],
        modelpress_policies: kopf.Index[Any, ServiceState],
        **_: Any,
    ) -> None:
        """Keep the model's latest body and queue it when there is something to act on:
        first sight, a spec the status has not answered yet, or a retry asked for."""
        key = (namespace, name)
        if type == "DELETED":  # also when it went without our finalizer (removed by hand)
            state.forget(namespace, name, (event["object"].get("metadata") or {}).get("uid"))
            return
        if not workers:  # kopf hands its indexes to handlers only, and only once filled
            children = Children(
                modelpress_jobs, modelpress_deployments, modelpress_services, modelpress_policies
            )
            workers.extend(start_workers(state, children))
        body = event["object"]
        first = key not in state.models
        state.keep_model(key, body)
        state.caught_up(body)
        if first or needs_reconcile(state, body):
            state.queue.add(key)

    @kopf.on.delete(*MODEL, id="artifacts", registry=registry)
    async def delete_model(
        *, body: Any, namespace: Any, name: Any, logger: Logger, retry: int, **_: Any
    ) -> None:
        await state.settled(namespace, name)  # no reconcile of it runs alongside
        await deletion.delete_model(state, body, logger, retry)
        state.forget(namespace, name, body.get("metadata", {}).get("uid"))

    return registry
