"""Real scanners on what modelpress puts in a cluster: checkov on the rendered chart and
on the children the operator creates, hadolint on the Dockerfiles. Zero findings but
those docs/security.md lists as deliberate, each with its reason.

The scanners live in their own environment (`scripts/bootstrap --scanners`, which
`scripts/test` runs); MODELPRESS_SCANNERS names its bin directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import rendered_set
from tests.plan.conftest import BASE, SOURCE, make_spec, variant_artifact

from modelpress.config import OperatorConfig
from modelpress.plan.observed import Observed, Owner
from modelpress.plan.recipes import variant_locations
from modelpress.plan.reconcile import plan_model

ROOT = Path(__file__).resolve().parents[2]
SCANNERS = Path(os.environ.get("MODELPRESS_SCANNERS", ROOT / ".venv-scan" / "bin"))
pytestmark = pytest.mark.skipif(
    not (SCANNERS / "checkov").exists(),
    reason="scanners absent: run scripts/bootstrap --scanners (scripts/test does)",
)


def deliberate() -> dict[str, str]:
    """Check id -> reason, from the table in docs/security.md."""
    text = (ROOT / "docs" / "security.md").read_text()
    return dict(re.findall(r"^\| `(CKV2?_K8S_\d+)` \| [^|]+ \| ([^|]+) \|$", text, re.M))


def children() -> list[dict[str, Any]]:
    """Every kind of object the operator creates for a model: the fetch Job, compression
    Jobs, the vLLM Deployment and Service, and both NetworkPolicies."""
    config = OperatorConfig.model_validate(
        {"networkPolicies": {"jobEgress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}
    )
    spec = make_spec(serving={"maxModelLen": 2048, "apiKeySecretRef": {"name": "key"}})
    owner = Owner("tiny", "ml", "uid-1", 1)
    built = {
        key: variant_artifact(uri, 100_000_000)
        for key, uri in variant_locations(spec, SOURCE, config).values()
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for observed in (Observed(), Observed(source=SOURCE, base=BASE)):
        for obj in plan_model(owner, spec, observed, config, None, "t").create:
            found[(obj["kind"], obj["metadata"]["name"])] = obj
    serving = plan_model(
        owner, spec, Observed(source=SOURCE, base=BASE, artifacts=built), config, None, "t"
    )
    for obj in serving.create:
        found[(obj["kind"], obj["metadata"]["name"])] = obj
    assert {kind for kind, _ in found} == {"Job", "Deployment", "Service", "NetworkPolicy"}
    return list(found.values())


def checkov(objects: list[dict[str, Any]], tmp_path: Path) -> list[tuple[str, str]]:
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    done = subprocess.run(
        [str(SCANNERS / "checkov"), "-f", str(manifest), "--framework", "kubernetes",
         "--skip-download", "--quiet", "--compact", "--output", "json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    return [
        (check["check_id"], check["resource"])
        for each in reports
        for check in each.get("results", {}).get("failed_checks", [])
    ]


@pytest.mark.parametrize("value_set", ["defaults", "gpu-catalog-and-jobs", "namespaced"])
def test_checkov_finds_nothing_undocumented_in_the_chart(value_set: str, tmp_path: Path) -> None:
    findings = checkov(rendered_set(value_set), tmp_path)
    undocumented = [f for f in findings if f[0] not in deliberate()]
    assert undocumented == []


def test_checkov_finds_nothing_undocumented_in_the_operators_children(tmp_path: Path) -> None:
    findings = checkov(children(), tmp_path)
    undocumented = [f for f in findings if f[0] not in deliberate()]
    assert undocumented == []


def test_every_documented_exception_still_has_a_reason_to_be() -> None:
    assert deliberate(), "docs/security.md lists the deliberate findings"
    assert all(len(reason.strip()) > 20 for reason in deliberate().values())


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "images").glob("*/Dockerfile")))
def test_hadolint_finds_nothing_in_the_dockerfiles(dockerfile: Path) -> None:
    done = subprocess.run(
        [str(SCANNERS / "hadolint"), "--no-color", str(dockerfile)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
