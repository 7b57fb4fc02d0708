"""values.schema.json accepts the documented values, rejects mistakes, and lint is clean."""

from __future__ import annotations

import copy
import json
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from chart_render import CHART_DIR, NAMESPACE, VALUE_SETS

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
ERROR = 3  # lint message severity


def _merged(values: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing, enough for the schema: maps merge, null deletes a key."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in over.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    return merge(DEFAULTS, values)


@pytest.mark.parametrize("kube_version", ["v1.29.0", "v1.35.0"])
def test_lint_reports_no_errors(kube_version):
    report = helm_python.lint(
        CHART_DIR, namespace=NAMESPACE, strict=True, kube_version=kube_version
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_with_each_value_set(value_set):
    report = helm_python.lint(CHART_DIR, copy.deepcopy(VALUE_SETS[value_set]), namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= ERROR] + report["errors"]
    assert problems == []


def test_every_value_set_passes_the_schema(chart, value_set):
    chart.validate_schema(copy.deepcopy(VALUE_SETS[value_set]))
    jsonschema.Draft7Validator(SCHEMA).validate(_merged(VALUE_SETS[value_set]))


INVALID = {
    "unknown top-level key": {"replicaCount": 2},
    "misspelt nested key": {"crds": {"instal": False}},
    "crds.keep not a boolean": {"crds": {"keep": "yes"}},
    "watchNamespaces an empty list": {"watchNamespaces": []},
    "watchNamespaces a bad name": {"watchNamespaces": ["ML_Team"]},
    "watchNamespaces any other string": {"watchNamespaces": "*"},
    "image digest not sha256": {"image": {"digest": "latest"}},
    "image pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "unknown image key": {"images": {"serving": {"repository": "x/serving", "version": "1"}}},
    "gpu product field unknown": {"gpuCatalog": {"nvidia-l4": {"memory": "24Gi"}}},
    "gpu memory not positive": {"gpuCatalog": {"x": {"memoryGiB": 0}}},
    "gpu product name": {"gpuCatalog": {"NVIDIA L4": {"memoryGiB": 22}}},
    "gpu kind": {"gpuCatalog": {"x": {"memoryGiB": 22, "kind": "tpu"}}},
    "job quantity": {"jobs": {"defaultCpu": "2 cores"}},
    "job setting unknown": {"jobs": {"backoffLimit": 3}},
    "worker limit above the operator's bound": {"reconcile": {"workerLimit": 5000}},
    "watch timeout too short": {"watch": {"serverTimeoutSeconds": 1}},
    "privileged port for the liveness probe": {"liveness": {"port": 80}},
    "privilege escalation": {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
    "capabilities kept": {"containerSecurityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    "capability added": {
        "containerSecurityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}
    },
    "root allowed": {"podSecurityContext": {"runAsNonRoot": False}},
    "root user": {"podSecurityContext": {"runAsUser": 0}},
    "unconfined seccomp": {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
    "privileged container": {"containerSecurityContext": {"privileged": True}},
    "resource name": {"resources": {"requests": {"gpu": 1}}},
    "resource quantity": {"resources": {"limits": {"memory": "lots"}}},
    "toleration field": {"tolerations": [{"key": "a", "operator": "Maybe"}]},
    "metrics interval": {
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True, "interval": "often"}}
    },
    "peering name": {"peering": {"enabled": True, "name": "Not A Name"}},
    "service account without a name": {"serviceAccount": {"create": False, "name": "Bad_Name"}},
    "a storage secret in values": {"storage": {"accessKeyId": "AKIA..."}},
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_schema_rejects(chart, case):
    values = INVALID[case]
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(copy.deepcopy(values))
    with pytest.raises(helm_python.HelmError):
        chart.render(copy.deepcopy(values), name="mp", namespace=NAMESPACE)


def test_rejections_name_the_key(chart):
    with pytest.raises(helm_python.HelmValuesError, match="instal"):
        chart.validate_schema({"crds": {"instal": False}})


def _object_nodes(node: Any, path: str = "$"):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _object_nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _object_nodes(value, f"{path}[{index}]")


def test_every_object_in_the_schema_is_closed():
    """additionalProperties is false, or a schema for maps keyed by user names."""
    nodes = list(_object_nodes(SCHEMA))
    assert len(nodes) > 20
    for path, node in nodes:
        closed = node.get("additionalProperties")
        assert closed is False or isinstance(closed, dict), f"{path} accepts unknown keys"
        if isinstance(closed, dict):
            assert "properties" not in node, f"{path} mixes fixed and free keys"


def test_the_schema_describes_every_default():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(DEFAULTS)
    assert set(DEFAULTS) == set(SCHEMA["properties"])


def test_every_top_level_value_is_commented():
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith("#"):
            above = lines[index - 1] if index else ""
            assert above.startswith("#") or lines[index + 1].lstrip().startswith("#"), (
                f"values.yaml: `{line}` has no comment"
            )
