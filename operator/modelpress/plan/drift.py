"""Drift: a child changed behind the operator's back (`kubectl set image`, `kubectl
scale`, an edited env) is put back.

The live object carries what the API server added (defaults) besides what modelpress
set, so it is compared by inclusion: every value modelpress sets in the fields below
must be in the live object unchanged. The fields are the ones that decide what runs:
replicas (unless an autoscaler owns them), and each container's image, command, arguments, environment and resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONTAINER_FIELDS = ("name", "image", "command", "args", "env", "resources")


def projection(deployment: Mapping[str, Any], desired: bool = False) -> dict[str, Any]:
    """The fields of a Deployment that drift is judged on. An autoscaled Deployment's
    desired form leaves replicas out: the autoscaler owns them."""
    spec = deployment.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}

    def containers(kind: str) -> list[dict[str, Any]]:
        return [
            {k: c[k] for k in CONTAINER_FIELDS if k in c}
            for c in pod.get(kind) or []
            if isinstance(c, Mapping)
        ]

    judged: dict[str, Any] = {
        "containers": containers("containers"),
        "initContainers": containers("initContainers"),
    }
    if "replicas" in spec or not desired:
        judged["replicas"] = spec.get("replicas", 1)
    return judged


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
    """Whether the live Deployment no longer runs what `desired` says."""
    if live_projection is None:
        return False  # not known (an older index entry): the spec hash decides
    return not included(projection(desired, desired=True), live_projection)
