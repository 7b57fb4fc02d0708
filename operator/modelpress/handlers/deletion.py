"""Deleting a CompressedModel: honour spec.deletionPolicy, then let it go.

Retain keeps every artifact. Delete stops the model's Jobs (so none publishes
afterwards) and removes its variant artifacts, except those another
CompressedModel still reports; the base model is shared and always kept.
Children go with the model through their owner references. When the store
cannot be reached, the deletion is retried a few times, then the model is
released with a Warning naming what was left behind: a finalizer must never
hold a namespace hostage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from modelpress.api.resource import KIND, read_spec
from modelpress.handlers import observe
from modelpress.handlers.kube import ApiError, path
from modelpress.handlers.state import OperatorState
from modelpress.plan.names import LABEL_MODEL
from modelpress.plan.observed import owner_uid
from modelpress.plan.recipes import variant_locations
from modelpress.storage import StorageError

GIVE_UP_AFTER_RETRIES = 5


def artifacts_to_delete(
    uid: str | None, candidates: set[str], others: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(URIs to delete, URIs kept because another model reports them in its status)."""
    in_use = {
        entry.get("artifactUri")
        for other in others
        if (other.get("metadata") or {}).get("uid") != uid
        for entry in (other.get("status") or {}).get("variants") or []
    }
    delete = sorted(uri for uri in candidates if uri not in in_use)
    kept = sorted(uri for uri in candidates if uri in in_use)
    return delete, kept


async def other_models(client: Any, namespace: str, namespaces: list[str]) -> list[dict[str, Any]]:
    """Every CompressedModel the operator may see: cluster-wide when allowed, else in
    the model's namespace and the configured ones."""
    try:
        answer = await client.request("GET", path(KIND, None))
        return list((answer or {}).get("items") or [])
    except ApiError as error:
        if error.status not in (403, 404):
            raise
    found: list[dict[str, Any]] = []
    for ns in dict.fromkeys([namespace, *[n for n in namespaces if "*" not in n]]):
        answer = await client.request("GET", path(KIND, ns))
        found += list((answer or {}).get("items") or [])
    return found


async def delete_model(
    state: OperatorState,
    body: Mapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    retry: int,
) -> None:
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata.get("uid")
    spec, problems = read_spec(body.get("spec"))
    policy = (body.get("spec") or {}).get("deletionPolicy", "Retain")
    if policy != "Delete":
        logger.info("deletionPolicy %s: artifacts are kept", policy)
        return
    if spec is None:
        kopf.warn(body, reason="ArtifactsKept", message="spec unreadable: " + "; ".join(problems))  # type: ignore[arg-type]
        return

    client = state.api()
    for job in await client.list("Job", namespace, {LABEL_MODEL: name}):
        if owner_uid(job.get("metadata") or {}) == uid:
            await client.delete("Job", namespace, job["metadata"]["name"])

    candidates = {
        v["artifactUri"]
        for v in (body.get("status") or {}).get("variants") or []
        if v.get("artifactUri")
    }
    try:
        credentials, blocker = await observe.storage_credentials(client, spec, namespace)
        if blocker is not None:
            raise _StoreProblem(blocker.message)
        record = await asyncio.to_thread(state.store.record, spec, credentials)
        if record is not None:
            locations = variant_locations(spec, record, state.config)
            candidates |= {uri for _, uri in locations.values()}
        others = await other_models(client, namespace, state.config.namespaces)
        doomed, kept = artifacts_to_delete(uid, candidates, others)
        removed = await asyncio.to_thread(_delete_artifacts, doomed, credentials)
    except (StorageError, ApiError, _StoreProblem) as error:
        if retry < GIVE_UP_AFTER_RETRIES:
            raise kopf.TemporaryError(
                f"cannot delete artifacts yet: {error}", delay=state.config.backoff_seconds
            ) from None
        message = f"gave up deleting artifacts after {retry + 1} attempts: {error}; they remain"
        kopf.warn(body, reason="ArtifactsKept", message=message[:1000])  # type: ignore[arg-type]
        return
    state.store.forget(doomed)
    if kept:
        logger.info("kept artifacts other models use: %s", ", ".join(kept))
    message = f"deleted {len(removed)} artifact(s)"
    if kept:
        message += f"; kept {len(kept)} another CompressedModel uses"
    kopf.event(body, type="Normal", reason="ArtifactsDeleted", message=message)  # type: ignore[arg-type]


class _StoreProblem(Exception):
    pass


def _delete_artifacts(uris: list[str], credentials: Any) -> list[str]:
    from modelpress.storage import delete_artifact

    removed = []
    for uri in uris:
        if delete_artifact(uri, credentials=credentials):
            removed.append(uri)
    return removed
