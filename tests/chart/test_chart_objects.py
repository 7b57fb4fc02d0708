"""Every object the chart renders is valid Kubernetes, restricted, least-privilege and secret-free."""

from __future__ import annotations

import functools
import re
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from chart_render import CHART_DIR, NAMESPACE, find, load_pss, rendered_set

from modelpress.handlers import permissions

#: Kubernetes versions the chart supports: the oldest (Chart.yaml kubeVersion) and a current one.
KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")

#: Custom resources kubernetes-validate has no schema for, checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "ClusterKopfPeering", "KopfPeering"}

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}

pss = load_pss()


@pytest.fixture(scope="module", autouse=True)
def _cache_kubernetes_schemas():
    """kubernetes-validate reads its schema files on every call; read each once."""
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(original)
    yield
    kubernetes_validate.utils.schema_contents = original


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(objects, version):
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(
                f"{_describe(obj)} is invalid for Kubernetes {version} at {path}: {error.message}"
            )


def test_the_validator_is_strict():
    """Guards the test above: an unknown field must be rejected, not ignored."""
    deployment = find(rendered_set("defaults"), "Deployment")[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_custom_resources_are_well_formed(objects):
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            continue
        name = obj["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) and len(name) <= 253
        if obj["kind"] == "ServiceMonitor":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert set(obj["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
            assert obj["spec"]["selector"]["matchLabels"]
            for endpoint in obj["spec"]["endpoints"]:
                assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
                assert isinstance(endpoint["port"], str)
        elif obj["kind"] == "PodMonitor":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert set(obj["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector"}
            for endpoint in obj["spec"]["podMetricsEndpoints"]:
                assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        else:
            assert obj["apiVersion"] == "kopf.dev/v1"
            assert (obj["kind"] == "KopfPeering") == ("namespace" in obj["metadata"])


# --- Pod Security Standard "restricted" --------------------------------------------


def test_every_pod_is_restricted_with_a_read_only_root(objects):
    workloads = [o for o in objects if o["kind"] in POD_TEMPLATE_KINDS]
    assert workloads, "the chart renders no pod"
    for workload in workloads:
        pss.assert_restricted(workload, read_only_root=True)


def test_the_restricted_check_catches_a_privileged_pod():
    deployment = find(rendered_set("defaults"), "Deployment")[0]
    spec = deployment["spec"]["template"]["spec"]
    container = {**spec["containers"][0], "securityContext": {"privileged": True}}
    hostile = {
        "kind": "Deployment",
        "spec": {"template": {"spec": {**spec, "containers": [container]}}},
    }
    assert pss.violations(hostile, read_only_root=True)


# --- RBAC ----------------------------------------------------------------------------

#: What the operator needs, per apiGroup/resource: exactly these verbs.
NAMESPACED_PERMISSIONS = {key: set(verbs) for key, verbs in permissions.NAMESPACED.items()}
FRAMEWORK_PERMISSIONS = {key: set(verbs) for key, verbs in permissions.FRAMEWORK.items()}
PEERING_VERBS = set(permissions.PEERING_VERBS)


def _permissions(roles: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_no_rule_has_a_wildcard(objects):
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert all("*" not in item for item in rule.get(field, [])), (
                    f"{_describe(role)} has a wildcard in {field}: {rule}"
                )


def test_cluster_wide_rbac_grants_exactly_what_the_operator_needs():
    objects = rendered_set("defaults")
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    assert _permissions(find(objects, "ClusterRole")) == {
        **NAMESPACED_PERMISSIONS,
        **FRAMEWORK_PERMISSIONS,
    }


def test_rbac_is_split_by_purpose_and_bound_to_the_operator():
    objects = rendered_set("defaults")
    roles = {r["metadata"]["name"]: r for r in find(objects, "ClusterRole")}
    assert set(roles) == {
        f"mp-modelpress-{p}" for p in ("framework", "models", "workloads", "events", "secrets")
    }
    assert _permissions([roles["mp-modelpress-secrets"]]) == {("", "secrets"): {"get"}}
    bindings = find(objects, "ClusterRoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == set(roles)
    (account,) = find(objects, "ServiceAccount")
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
        ]


def test_a_namespace_list_gets_roles_in_those_namespaces_only():
    objects = rendered_set("namespaced")
    # Cluster-wide: only kopf's read-only view of CRDs and namespaces.
    assert _permissions(find(objects, "ClusterRole")) == FRAMEWORK_PERMISSIONS
    for namespace in ("ml-team", "ml-staging"):
        roles = [r for r in find(objects, "Role") if r["metadata"]["namespace"] == namespace]
        assert _permissions(roles) == NAMESPACED_PERMISSIONS
        bindings = [
            b for b in find(objects, "RoleBinding") if b["metadata"]["namespace"] == namespace
        ]
        assert {b["roleRef"]["name"] for b in bindings} == {r["metadata"]["name"] for r in roles}
        assert all(b["roleRef"]["kind"] == "Role" for b in bindings)
        assert all(
            b["subjects"][0]["name"] == "modelpress-operator"
            and b["subjects"][0]["namespace"] == NAMESPACE
            for b in bindings
        )
    assert {r["metadata"]["namespace"] for r in find(objects, "Role")} == {"ml-team", "ml-staging"}


def test_peering_permissions_exist_only_with_peering():
    cluster = _permissions(find(rendered_set("peering-and-metrics"), "ClusterRole"))
    assert cluster[("kopf.dev", "clusterkopfpeerings")] == PEERING_VERBS
    namespaced = rendered_set("namespaced-peering-openshift")
    assert _permissions(find(namespaced, "Role"))[("kopf.dev", "kopfpeerings")] == PEERING_VERBS
    for name in ("defaults", "namespaced"):
        objects = rendered_set(name)
        granted = _permissions(find(objects, "ClusterRole") + find(objects, "Role"))
        assert not [key for key in granted if key[0] == "kopf.dev"]


def test_rbac_off_renders_no_rbac_and_uses_the_named_account():
    objects = rendered_set("existing-service-account")
    kinds = {o["kind"] for o in objects}
    assert not kinds & {
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    }
    (deployment,) = find(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "shared-operator"


# --- Secrets -------------------------------------------------------------------------

_CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face token
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
_CREDENTIAL_ENV = re.compile(r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY)", re.IGNORECASE)


def test_no_secret_is_rendered_or_copied(rendered, objects):
    assert not find(objects, "Secret"), "the chart must reference Secrets, never hold one"
    text = "\n".join(rendered.values())
    for pattern in _CREDENTIAL_PATTERNS:
        assert not pattern.search(text), f"credential-like text rendered: {pattern.pattern}"
    for workload in (o for o in objects if o["kind"] in POD_TEMPLATE_KINDS):
        spec = pss.pod_spec_of(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                assert not (_CREDENTIAL_ENV.search(env["name"]) and "value" in env), (
                    f"{_describe(workload)} sets {env['name']} inline; use a secretKeyRef"
                )


def test_templates_never_read_cluster_secrets():
    """`lookup` would copy live cluster objects (Secrets too) into the release."""
    for template in (CHART_DIR / "templates").iterdir():
        assert "lookup" not in template.read_text(), f"{template.name} uses lookup"
