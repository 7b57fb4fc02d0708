"""The kopf handlers, registered in a registry of their own (one per operator run,
so tests can start, stop and restart operators in one process).

- a daemon per model: reconcile when it starts, when the spec changes (or a
  retry is asked for), when a child Job, Deployment or Service changes, and at
  least every `resyncSeconds` (level-based: nothing is missed for long). There
  are no kopf create/update handlers, so kopf writes nothing on the model but
  its finalizer;
- indexes of the children by model, kept current by watches, so a reconcile
  lists nothing;
- delete (a finalizer): honour spec.deletionPolicy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from modelpress.api.resource import GROUP, PLURAL, VERSION
from modelpress.handlers import deletion
from modelpress.handlers.kube import KubeClient
from modelpress.handlers.metrics import job_seconds
from modelpress.handlers.reconcile import Children, needs_reconcile, reconcile
from modelpress.handlers.settings import FINALIZER, configure
from modelpress.handlers.state import OperatorState
from modelpress.plan.names import LABEL_MODEL, MANAGED_BY, MANAGER
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
        if state.client is not None:
            await state.client.close()

    # --- children, indexed by their model and waking it up when they change -------------

    @kopf.index("batch", "v1", "jobs", id="modelpress_jobs", labels=CHILD_LABELS, registry=registry)
    async def modelpress_jobs(*, namespace: Any, labels: Any, body: Any, **_: Any) -> Any:
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
        state.poke(namespace, labels[LABEL_MODEL])

    @kopf.on.event("apps", "v1", "deployments", id="poke", labels=CHILD_LABELS, registry=registry)
    @kopf.on.event("", "v1", "services", id="poke", labels=CHILD_LABELS, registry=registry)
    async def child_changed(*, namespace: Any, labels: Any, **_: Any) -> None:
        state.poke(namespace, labels[LABEL_MODEL])

    # --- the models -------------------------------------------------------------------

    @kopf.on.event(*MODEL, id="spec-changed", registry=registry)
    async def model_changed(*, body: Any, namespace: Any, name: Any, **_: Any) -> None:
        """Wake the model's daemon when there is something new to act on: a spec the
        status has not answered yet, or a retry asked for. Its own status writes are not."""
        state.caught_up(body)
        if needs_reconcile(state, body):
            state.poke(namespace, name)

    @kopf.daemon(*MODEL, id="resync", registry=registry, cancellation_timeout=5.0)  # type: ignore[arg-type]
    # kopf passes each index as a keyword argument named by its id; its callback Protocols
    # do not list them, hence the ignore.
    async def resync(
        *,
        stopped: Any,
        body: Any,
        namespace: Any,
        name: Any,
        logger: Logger,
        modelpress_jobs: kopf.Index[Any, JobState],
        modelpress_deployments: kopf.Index[Any, DeploymentState],
        modelpress_services: kopf.Index[Any, ServiceState],
        modelpress_policies: kopf.Index[Any, ServiceState],
        **_: Any,
    ) -> None:
        """Reconcile at once, then when poked (a spec or child changed) and every
        resyncSeconds regardless."""
        children = Children(
            modelpress_jobs, modelpress_deployments, modelpress_services, modelpress_policies
        )
        trigger = state.trigger(namespace, name)
        trigger.set()
        stop = asyncio.ensure_future(stopped.wait())
        try:
            while not stopped:
                wake = asyncio.ensure_future(trigger.wait())
                await asyncio.wait(
                    {wake, stop},
                    timeout=state.config.resync_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                wake.cancel()
                metadata = body.get("metadata", {})
                if stopped or metadata.get("deletionTimestamp"):
                    break
                trigger.clear()
                if FINALIZER not in (metadata.get("finalizers") or ()):
                    # Nothing is created before deletion can clean it up; kopf adds the
                    # finalizer now, and that change wakes this loop again.
                    continue
                try:
                    await reconcile(state, body, logger, children)
                except kopf.TemporaryError as error:
                    logger.warning("reconcile failed, retrying: %s", error)
                    await asyncio.sleep(error.delay or state.config.backoff_seconds)
                except Exception:
                    logger.exception("reconcile failed unexpectedly, retrying")
                    await asyncio.sleep(state.config.backoff_seconds)
        finally:
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop

    @kopf.on.delete(*MODEL, id="artifacts", registry=registry)
    async def delete_model(
        *, body: Any, namespace: Any, name: Any, logger: Logger, retry: int, **_: Any
    ) -> None:
        await deletion.delete_model(state, body, logger, retry)
        state.forget(namespace, name, body.get("metadata", {}).get("uid"))

    return registry
