"""Read the cluster for the planner: Secrets, and why failed pods ended.

The store is read by `modelpress.storeview`, shared with local mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.handlers.kube import ApiError, KubeClient
from modelpress.plan.observed import Blocker

SECRET_KEYS_HINT = (
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN, "
    "AWS_ENDPOINT_URL, AWS_REGION)"
)


async def storage_credentials(
    client: KubeClient, spec: CompressedModelSpec, namespace: str
) -> tuple[Any, Blocker | None]:
    """(Credentials or None for the ambient AWS environment, blocker). The Secret's
    values stay in memory: never logged, never copied anywhere."""
    from modelpress.storage import Credentials, CredentialsError

    ref = spec.storage.secret_ref
    if ref is None:
        return None, None
    secret = await client.get("Secret", namespace, ref.name)
    if secret is None:
        return None, Blocker(
            Reason.SECRET_NOT_FOUND,
            f"storage Secret {ref.name!r} does not exist in namespace {namespace}: create it "
            f"with keys {SECRET_KEYS_HINT}, or fix spec.storage.secretRef.name",
        )
    try:
        return Credentials.from_secret_data(secret.get("data") or {}), None
    except CredentialsError as error:
        return None, Blocker(Reason.INVALID_SECRET, f"storage Secret {ref.name!r}: {error}")


async def _secret_key_blocker(
    client: KubeClient, namespace: str, name: str, key: str, what: str, field: str
) -> Blocker | None:
    secret = await client.get("Secret", namespace, name)
    if secret is None:
        return Blocker(
            Reason.SECRET_NOT_FOUND,
            f"{what} Secret {name!r} does not exist in namespace {namespace}: create it with "
            f"the value under key {key!r}, or fix {field}",
        )
    if key not in (secret.get("data") or {}):
        return Blocker(
            Reason.SECRET_NOT_FOUND,
            f"{what} Secret {name!r} has no key {key!r}: add it, or set {field}.key to the key "
            "that holds it",
        )
    return None


async def api_key_blocker(
    client: KubeClient, spec: CompressedModelSpec, namespace: str
) -> Blocker | None:
    """Why vLLM's API key cannot be read, or None."""
    ref = spec.serving.api_key_secret_ref
    if ref is None or spec.serving.variant == "none":
        return None
    return await _secret_key_blocker(
        client, namespace, ref.name, ref.key, "API key", "spec.serving.apiKeySecretRef"
    )


async def hf_token_blocker(
    client: KubeClient, spec: CompressedModelSpec, namespace: str
) -> Blocker | None:
    """Why the fetch Job could not read its Hub token, or None."""
    hub = spec.source.huggingface
    if hub is None or hub.token_secret_ref is None:
        return None
    ref = hub.token_secret_ref
    field = "spec.source.huggingface.tokenSecretRef"
    return await _secret_key_blocker(client, namespace, ref.name, ref.key, "Hub token", field)


def terminated_message(pod: Mapping[str, Any]) -> str | None:
    """What a failed pod's container said as it ended (termination message or reason)."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        for state_name in ("state", "lastState"):
            terminated = (container.get(state_name) or {}).get("terminated")
            if terminated and terminated.get("exitCode", 0) != 0:
                reason = terminated.get("reason") or "Error"
                text = f"exit code {terminated.get('exitCode')} ({reason})"
                said = _last_words(terminated.get("message") or "")
                return f"{text}: {said}" if said else text
    if status.get("reason") or status.get("message"):
        return f"{status.get('reason', '')} {status.get('message', '')}".strip()
    return None


def _last_words(message: str) -> str:
    """The reason in a termination message: the `error` of the JSON line the
    modelpress commands write, else the message's last line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    try:
        report = json.loads(lines[-1])
    except ValueError:
        return lines[-1][:1000]
    if isinstance(report, dict) and report.get("error"):
        reason = f"{report['reason']}: " if report.get("reason") else ""
        return f"{reason}{report['error']}"[:1000]
    return lines[-1][:1000]


def waiting_message(pod: Mapping[str, Any]) -> str | None:
    """Why a pod has not started: unschedulable, an image that cannot be pulled..."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            return f"{reason}: {condition.get('message') or 'no node fits it'}"
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting['reason']}: {waiting.get('message') or ''}".strip(": ")
    return None


async def _messages(
    client: KubeClient,
    namespace: str,
    jobs: Mapping[str, Mapping[str, str]],
    candidates: Callable[[list[dict[str, Any]]], Iterable[dict[str, Any]]],
    describe: Callable[[Mapping[str, Any]], str | None],
) -> dict[str, str]:
    """For each Job (name -> its pods' labels), the first message `describe` finds among
    its pods' `candidates`."""
    found: dict[str, str] = {}
    for name, selector in jobs.items():
        try:
            pods = await client.list("Pod", namespace, selector)
        except ApiError:
            continue
        for pod in candidates(pods):
            message = describe(pod)
            if message:
                found[name] = message
                break
    return found


async def pending_messages(
    client: KubeClient, namespace: str, jobs: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """Why each Job's pod (name -> its pods' labels) has not started, where it says."""
    return await _messages(client, namespace, jobs, lambda pods: pods, waiting_message)


def _failed_newest_first(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    failed.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    return failed[::-1]


async def job_messages(
    client: KubeClient, namespace: str, jobs: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The last failed pod's message for each Job (name -> its pods' labels)."""
    return await _messages(client, namespace, jobs, _failed_newest_first, terminated_message)
