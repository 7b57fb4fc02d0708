"""Deleting a CompressedModel: honour spec.deletionPolicy, then let it go.

Retain keeps every artifact. Delete stops the model's Jobs (so none publishes
afterwards) and removes its variant artifacts and distillation checkpoints. What
to delete is computed from the spec and the store's own source record, never
from the status (which anyone allowed to write it could point anywhere), only
under the model's own store prefix, and never what another CompressedModel lists
or serves; the base model is shared and always kept.
Children go with the model through their owner references. When the store
cannot be reached, the deletion is retried a few times, then the model is
released with a Warning naming what was left behind: a finalizer must never
hold a namespace hostage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from modelpress.api.resource import KIND, read_spec
from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.handlers import observe
from modelpress.handlers.deadline import StoreTimeout
from modelpress.handlers.kube import ApiError, path
from modelpress.handlers.state import OperatorState
from modelpress.plan.names import COMPRESS, FETCH, LABEL_COMPONENT, LABEL_MODEL
from modelpress.plan.observed import SourceRecord, owner_uid
from modelpress.plan.recipes import checkpoint_uri, store_prefix, variant_locations
from modelpress.storage import StorageError

GIVE_UP_AFTER_RETRIES = 5


def owned_locations(
    spec: CompressedModelSpec, record: SourceRecord, config: OperatorConfig
) -> set[str]:
    """The artifacts and checkpoints this model's spec leads to, all under its store."""
    found = set()
    for variant in spec.variants:
        _, uri = variant_locations(spec, record, config)[variant.name]
        found.add(uri)
        if any(step.distill is not None for step in variant.chain):
            found.add(checkpoint_uri(uri))
    prefix = store_prefix(spec)
    return {uri for uri in found if uri.startswith(prefix)}


def in_use_by_others(uid: str | None, others: list[dict[str, Any]]) -> set[str]:
    """Artifacts other models list or serve. Their status only ever protects more."""
    used: set[str] = set()
    for other in others:
        if (other.get("metadata") or {}).get("uid") == uid:
            continue
        status = other.get("status")
        if not isinstance(status, dict):
            continue
        for entry in status.get("variants") or []:
            if isinstance(entry, dict) and isinstance(entry.get("artifactUri"), str):
                used.add(entry["artifactUri"])
        serving = status.get("serving")
        if isinstance(serving, dict) and isinstance(serving.get("artifactUri"), str):
            used.add(serving["artifactUri"])
    return used


def artifacts_to_delete(
    uid: str | None, candidates: set[str], others: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    """(URIs to delete, URIs kept because another model lists or serves them)."""
    in_use = in_use_by_others(uid, others)
    in_use |= {checkpoint_uri(uri) for uri in in_use if "/artifacts/" in uri}
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
    jobs = [
        job["metadata"]["name"]
        for job in await client.list("Job", namespace, {LABEL_MODEL: name})
        if owner_uid(job.get("metadata") or {}) == uid
    ]
    for job in jobs:
        await client.delete("Job", namespace, job, propagation="Foreground")
    # A pod still running could publish after its artifact is deleted: wait until the
    # Jobs' pods are gone (they stop at once on SIGTERM). Found by the model's label, which
    # the Jobs' pods carry, so Jobs already gone cannot hide their pods.
    running = sorted(
        pod["metadata"]["name"]
        for pod in await client.list("Pod", namespace, {LABEL_MODEL: name})
        if (pod["metadata"].get("labels") or {}).get(LABEL_COMPONENT) in (FETCH, COMPRESS)
    )
    if running:
        waiting = f"the Job pods {', '.join(running)} still run"
        if retry < GIVE_UP_AFTER_RETRIES:
            raise kopf.TemporaryError(
                f"{waiting}: waiting for them before deleting artifacts",
                delay=state.config.backoff_seconds,
            )
        # Safe over tidy: an artifact deleted under a running publish could be committed
        # half-gone. `modelpress gc` and a later deletion remove what is left.
        message = f"{waiting} after {retry + 1} attempts: artifacts are kept"
        kopf.warn(body, reason="ArtifactsKept", message=message[:1000])  # type: ignore[arg-type]
        return

    candidates: set[str] = set()
    try:
        credentials, blocker = await observe.storage_credentials(client, spec, namespace)
        if blocker is not None:
            raise _StoreProblem(blocker.message)
        endpoint = (credentials.endpoint_url if credentials else None) or "AWS S3"
        record = await state.guard.read(endpoint, state.store.record, spec, credentials)
        if record is not None:
            candidates = owned_locations(spec, record, state.config)
        others = await other_models(client, namespace, state.config.namespaces)
        doomed, kept = artifacts_to_delete(uid, candidates, others)
        removed = await state.guard.read(endpoint, _delete_artifacts, doomed, credentials)
    except (StorageError, ApiError, StoreTimeout, _StoreProblem) as error:
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
