"""Check a manifest the way the API server and the operator will, offline.

Two judges, in the order a real cluster applies them: the API server
(`api.apiserver`: pruning, defaults, the generated CRD's schema and CEL rules,
metadata), then the operator's pydantic models, which read the object the API
server would store, defaults included. `modelpress validate` reports both, so a
manifest that passes here is accepted by `kubectl apply` and understood by the
operator; one message per problem, the operator's wording where both object.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelpress.api import resource
from modelpress.api.apiserver import admit, status_problems
from modelpress.problems import Problem, problems

__all__ = ["check", "model_problems", "schema_problems", "status_problems"]


def model_problems(manifest: dict[str, Any]) -> list[Problem]:
    """What the operator's pydantic models reject, one problem per field."""
    try:
        resource.CompressedModel.from_manifest(manifest)
    except ValidationError as error:
        return problems(error)
    return []


def schema_problems(manifest: dict[str, Any]) -> list[Problem]:
    """What the API server would reject given the generated CRD."""
    return admit(manifest).problems


def check(manifest: dict[str, Any]) -> list[Problem]:
    """Every problem either judge finds, judged on the object the API server would store.

    The operator's wording comes first; a schema problem on the same field is not
    repeated.
    """
    admission = admit(manifest)
    from_model = model_problems(admission.stored)
    seen_paths = {p.path for p in from_model}
    return from_model + [p for p in admission.problems if p.path not in seen_paths]
