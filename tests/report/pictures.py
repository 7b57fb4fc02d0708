"""Pictures from real outputs: the planner's status for a model with three variants, and
the compression benchmark's JSON from a run on SmolLM2-135M (tests/report/compression-bench.json,
written by `python benchmarks/compression.py --json`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.plan.conftest import BASE, SOURCE, make_spec, spec_dict, variant_artifact

from modelpress.config import OperatorConfig
from modelpress.plan.observed import DeploymentState, Observed, Owner
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import plan_model

BENCHMARK = Path(__file__).with_name("compression-bench.json")
OWNER = Owner(name="tiny", namespace="ml", uid="uid-1", generation=1)
VARIANTS = [
    {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
    {"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64}},
    {"name": "w4-rtn", "quantize": {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 64}},
]
#: (bytes, perplexity increase): w4-rtn is as small as w4 and worse, and fails the gate.
MEASURED = {"w8": (160_000_000, 0.004), "w4": (110_000_000, 0.06), "w4-rtn": (110_000_000, 0.31)}


def model_document() -> dict[str, Any]:
    """A served CompressedModel as `kubectl get -o yaml` prints it."""
    body = spec_dict(variants=VARIANTS)
    spec = make_spec(variants=VARIANTS)
    locations = variant_locations(spec, SOURCE, OperatorConfig())
    artifacts = {
        key: variant_artifact(uri, *MEASURED[name]) for name, (key, uri) in locations.items()
    }
    observed = Observed(source=SOURCE, base=BASE, artifacts=artifacts)
    first = plan_model(OWNER, spec, observed, OperatorConfig(), None, "now")
    desired = next(o for o in first.create if o["kind"] == "Deployment")
    deployment = replace(
        DeploymentState.from_object(desired),
        owner_uid=OWNER.uid,
        ready_replicas=1,
        updated_replicas=1,
        available_replicas=1,
    )
    served = replace(observed, deployment=deployment)
    status = plan_model(OWNER, spec, served, OperatorConfig(), first.wire_status, "now")
    return {
        "apiVersion": "modelpress.dev/v1alpha1",
        "kind": "CompressedModel",
        "metadata": {"name": "tiny", "namespace": "ml", "generation": 1},
        "spec": body,
        "status": status.wire_status,
    }


def benchmark() -> dict[str, Any]:
    return json.loads(BENCHMARK.read_text())
