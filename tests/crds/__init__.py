"""The published CRD schemas of the custom resources the operator creates but does not
own (JobSet, LeaderWorkerSet), reduced by `reduce.py` to their openAPIV3Schema:

- jobset.x-k8s.io_jobsets.json: kubernetes-sigs/jobset
  config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml, version v1alpha2, at
  commit 08dfbdfd682714a9ab929633eca8dc95315187e7 (2026-08-18);
- leaderworkerset.x-k8s.io_leaderworkersets.json: kubernetes-sigs/lws
  config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml, version v1, at
  commit 060ab4da17eea1f0865fcbd3236bb1075e2cea32 (2026-08-21).

Both projects are Apache-2.0 licensed; the schemas are theirs, unchanged but for the
descriptions `reduce.py` leaves out. `admitted` runs a rendered object through
`modelpress.api.apiserver.admit` with the schema of its kind, as the API server would.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from modelpress.api.apiserver import admit
from modelpress.problems import Problem

HERE = Path(__file__).parent
FILES = {
    "JobSet": "jobset.x-k8s.io_jobsets.json",
    "LeaderWorkerSet": "leaderworkerset.x-k8s.io_leaderworkersets.json",
}


@cache
def published(kind: str) -> dict[str, Any]:
    return json.loads((HERE / FILES[kind]).read_text(encoding="utf-8"))


def problems(obj: dict[str, Any]) -> list[Problem]:
    """Why the API server would refuse `obj` (strict field validation), or drop parts of it."""
    crd = published(obj["kind"])
    group, _, version = obj["apiVersion"].partition("/")
    wrong = (group, version) != (crd["group"], crd["version"])
    if wrong:
        return [
            Problem(
                "apiVersion", f"the published CRD serves {crd['group']}/{crd['version']}", "schema"
            )
        ]
    return admit(obj, root=crd["openAPIV3Schema"]).problems
