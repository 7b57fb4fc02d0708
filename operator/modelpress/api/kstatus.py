"""How kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) judges a CompressedModel.

Flux's `wait`/health checks, kpt and Config Sync decide "done" with kstatus. For a
custom resource it applies only its generic rules, in this order:

1. `metadata.deletionTimestamp` set: Terminating;
2. `status.observedGeneration` present and not `metadata.generation`: InProgress;
3. a condition `Reconciling` with status True: InProgress (its reason and message);
4. a condition `Stalled` with status True: Failed (its message);
5. otherwise: Current.

A port of those documented rules, so the status the operator writes can be checked
against them: it must read InProgress while work is under way, Failed when someone
must act, and Current only when the model is Ready for the current generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

KStatus = Literal["InProgress", "Failed", "Current", "Terminating"]


@dataclass(frozen=True)
class Result:
    status: KStatus
    message: str


def compute(obj: Mapping[str, Any]) -> Result:
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return Result("Terminating", "Resource scheduled for deletion")
    generation = metadata.get("generation")
    observed = status.get("observedGeneration", generation)
    if observed != generation:
        kind = obj.get("kind", "")
        return Result(
            "InProgress",
            f"{kind} generation is {generation}, but latest observed generation is {observed}",
        )
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Reconciling":
            return Result("InProgress", str(condition.get("message") or ""))
        if condition.get("type") == "Stalled":
            return Result("Failed", str(condition.get("message") or ""))
    return Result("Current", "Resource is current")
