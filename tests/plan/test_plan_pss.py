"""The Pod Security Standard "restricted" checker (tests/pss.py) catches what it must."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.pss import RESTRICTED_VOLUME_TYPES, assert_restricted, pod_spec_of, violations

GOOD: dict[str, Any] = {
    "kind": "Pod",
    "metadata": {"name": "ok"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {
                "name": "init",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                },
            }
        ],
        "containers": [
            {
                "name": "main",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "readOnlyRootFilesystem": True,
                },
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x"}}],
    },
}


def test_a_restricted_pod_passes_in_every_wrapping() -> None:
    assert violations(GOOD, read_only_root=True) == []
    template = {"metadata": {}, "spec": GOOD["spec"]}
    for workload in (
        {"kind": "Deployment", "spec": {"template": template}},
        {"kind": "Job", "spec": {"template": template}},
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template}}}},
        GOOD["spec"],
    ):
        assert pod_spec_of(workload) == GOOD["spec"]
        assert_restricted(workload, read_only_root=True)


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    pod = copy.deepcopy(GOOD)
    target = pod
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return pod


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["spec", "hostNetwork"], True, "hostNetwork"),
        (["spec", "securityContext", "runAsNonRoot"], None, "runAsNonRoot must be true"),
        (["spec", "securityContext", "seccompProfile"], {"type": "Unconfined"}, "seccompProfile"),
        (
            ["spec", "containers", 0, "securityContext", "allowPrivilegeEscalation"],
            None,
            "allowPrivilegeEscalation",
        ),
        (
            ["spec", "initContainers", 0, "securityContext", "capabilities"],
            {"drop": ["NET_RAW"]},
            "drop must include ALL",
        ),
        (
            ["spec", "containers", 0, "securityContext", "capabilities"],
            {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
            "SYS_ADMIN",
        ),
        (["spec", "containers", 0, "securityContext", "privileged"], True, "privileged"),
        (["spec", "containers", 0, "securityContext", "runAsUser"], 0, "runAsUser must not be 0"),
        (["spec", "containers", 0, "ports"], [{"containerPort": 80, "hostPort": 80}], "hostPort"),
        (["spec", "volumes"], [{"name": "h", "hostPath": {"path": "/"}}], "hostPath"),
        (
            ["spec", "containers", 0, "securityContext", "readOnlyRootFilesystem"],
            None,
            "readOnlyRootFilesystem",
        ),
        (
            ["spec", "securityContext", "sysctls"],
            [{"name": "kernel.msgmax", "value": "1"}],
            "kernel.msgmax",
        ),
    ],
)
def test_each_rule_is_enforced(path: list[Any], value: Any, expected: str) -> None:
    problems = violations(_broken(path, value), read_only_root=True)
    assert any(expected in p for p in problems), problems
    with pytest.raises(AssertionError, match="breaks PSS restricted"):
        assert_restricted(_broken(path, value), read_only_root=True)


def test_a_narrower_volume_list_is_honoured() -> None:
    pvc = _broken(["spec", "volumes"], [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}])
    assert violations(pvc) == []
    assert violations(pvc, allowed_volumes={"emptyDir", "secret"}) != []
    assert "persistentVolumeClaim" in RESTRICTED_VOLUME_TYPES
