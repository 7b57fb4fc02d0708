"""Drift: a serving workload (a Deployment or a LeaderWorkerSet) changed behind the
operator's back (`kubectl set image`, `kubectl scale`, an edited env) is put back.

The live object carries what the API server added (defaults) besides what modelpress
set, so it is compared by inclusion: every value modelpress sets in the fields below
must be in the live object unchanged. The fields are the ones that decide what runs:
replicas (unless an autoscaler owns them), a LeaderWorkerSet's group size, and each
container's image, command, arguments, environment and resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONTAINER_FIELDS = ("name", "image", "command", "args", "env", "resources")


def projection(workload: Mapping[str, Any], desired: bool = False) -> dict[str, Any]:
    """The fields of a Deployment or a LeaderWorkerSet that drift is judged on: each pod
    template's containers, and replicas (groups, and their size, for a LeaderWorkerSet).
    An autoscaled workload's desired form leaves replicas out: the autoscaler owns them."""
    spec = workload.get("spec") or {}
    judged: dict[str, Any] = {
        role: {"containers": _containers(pod, "containers"),
               "initContainers": _containers(pod, "initContainers")}
        for role, pod in _pods(workload).items()
    }  # fmt: skip
    group = spec.get("leaderWorkerTemplate")
    if isinstance(group, Mapping) and "size" in group:
        judged["size"] = group["size"]
    if "replicas" in spec or not desired:
        judged["replicas"] = spec.get("replicas", 1)
    return judged


def _pods(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each pod template's spec by role: a Deployment's one, a LeaderWorkerSet's leader
    and worker."""
    spec = workload.get("spec") or {}
    group = spec.get("leaderWorkerTemplate")
    if isinstance(group, Mapping):
        return {
            role: (group.get(f"{role}Template") or {}).get("spec") or {}
            for role in ("leader", "worker")
        }
    return {"pod": (spec.get("template") or {}).get("spec") or {}}


def _containers(pod: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        {k: c[k] for k in CONTAINER_FIELDS if k in c}
        for c in pod.get(kind) or []
        if isinstance(c, Mapping)
    ]


def included(wanted: Any, live: Any) -> bool:
    """Every value of `wanted` is in `live` (which may hold more: defaults)."""
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and included(value, live[key]) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(wanted) == len(live)
            and all(included(w, v) for w, v in zip(wanted, live, strict=True))
        )
    return bool(wanted == live)


def drifted(desired: Mapping[str, Any], live_projection: Mapping[str, Any] | None) -> bool:
    """Whether the live workload no longer runs what `desired` says."""
    if live_projection is None:
        return False  # not known (an older index entry): the spec hash decides
    return not included(projection(desired, desired=True), live_projection)
