"""The operator's Deployment: one replica, the right arguments, config mounted, config changes roll it."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from chart_render import (
    NAMESPACE,
    SHA,
    VALUE_SETS,
    config_map,
    find,
    render_objects,
    render_set,
    rendered_set,
)

from modelpress.cli import build_parser


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    return deployment


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    return container


def _option(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_one_replica_recreated_never_surged(objects):
    spec = _deployment(objects)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_liveness_probes_kopfs_health_endpoint(objects):
    container = _container(objects)
    (url,) = _option(container["args"], "--liveness")
    probe = container["livenessProbe"]["httpGet"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]]
    assert url == f"http://0.0.0.0:{port}{probe['path']}"
    assert probe["path"] == "/healthz"


def test_config_is_mounted_where_the_operator_reads_it(objects):
    container = _container(objects)
    (path,) = _option(container["args"], "--config")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert path == f"{mount['mountPath']}/config.yaml" and mount["readOnly"]
    volumes = _deployment(objects)["spec"]["template"]["spec"]["volumes"]
    (config_volume,) = [v for v in volumes if v["name"] == "config"]
    assert config_volume["configMap"]["name"] == config_map(objects)["metadata"]["name"]


def test_watched_namespaces_become_arguments():
    assert "--all-namespaces" in _container(rendered_set("defaults"))["args"]
    args = _container(rendered_set("namespaced"))["args"]
    assert "--all-namespaces" not in args
    assert _option(args, "--namespace") == ["ml-team", "ml-staging"]


def _operator_accepts(args: list[str]) -> argparse.Namespace:
    parser = build_parser()
    try:
        return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"`modelpress {' '.join(args)}` is refused by the operator's command line")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_arguments_are_ones_the_operator_command_accepts(value_set):
    args = _container(rendered_set(value_set))["args"]
    parsed = _operator_accepts(args)
    assert parsed.command == "operator"
    assert parsed.config == "/etc/modelpress/config.yaml"
    assert parsed.liveness.startswith("http://0.0.0.0:")
    watched = VALUE_SETS[value_set].get("watchNamespaces", "all")
    if watched == "all":
        assert parsed.all_namespaces and not parsed.namespace
    else:
        assert parsed.namespace == watched and not parsed.all_namespaces
    assert parsed.verbose is bool(VALUE_SETS[value_set].get("verbose"))
    metrics = VALUE_SETS[value_set].get("metrics", {})
    if metrics.get("enabled"):
        assert parsed.metrics == f"http://0.0.0.0:{metrics.get('port', 9090)}/metrics"
    else:
        assert parsed.metrics is None


def _checksum(chart, values: dict[str, Any]) -> str:
    deployment = _deployment(render_objects(chart, values))
    return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_config_changes_roll_the_pod_and_nothing_else_does(chart):
    base = _checksum(chart, {})
    assert _checksum(chart, {"reconcile": {"workerLimit": 3}}) != base
    assert _checksum(chart, {"gpuCatalog": {"x": {"memoryGiB": 8}}}) != base
    assert _checksum(chart, {"podLabels": {"a": "b"}, "resources": {}}) == base


def test_image_and_digest(chart):
    assert _container(rendered_set("defaults"))["image"] == "ghcr.io/modelpress/operator:0.1.0"
    assert _container(rendered_set("namespaced"))["image"] == f"ghcr.io/modelpress/operator@{SHA}"
    custom = render_objects(chart, {"image": {"repository": "r.example.com/op", "tag": "dev"}})
    assert _container(custom)["image"] == "r.example.com/op:dev"


def test_read_only_root_has_a_scratch_tmp(objects):
    container = _container(objects)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _deployment(objects)["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_openshift_values_leave_ids_to_the_platform():
    pod = _deployment(rendered_set("namespaced-peering-openshift"))["spec"]["template"]["spec"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_metrics_service_reaches_the_operators_metrics_port():
    objects = rendered_set("peering-and-metrics")
    container = _container(objects)
    (url,) = _option(container["args"], "--metrics")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert url == f"http://0.0.0.0:{ports['metrics']}/metrics"
    (service,) = find(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pod_labels = _deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (monitor,) = find(objects, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"


def test_no_metrics_objects_by_default():
    objects = rendered_set("defaults")
    assert not find(objects, "Service") and not find(objects, "ServiceMonitor")
    assert "--metrics" not in _container(objects)["args"]


def test_peering_objects_are_hooks_after_their_crd():
    objects = rendered_set("peering-and-metrics")
    (peering,) = find(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "modelpress-peers"
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]
    (crd,) = [
        c for c in find(objects, "CustomResourceDefinition") if c["spec"]["group"] == "kopf.dev"
    ]
    assert (
        crd["spec"]["names"]["kind"] == "ClusterKopfPeering" and crd["spec"]["scope"] == "Cluster"
    )
    namespaced = rendered_set("namespaced-peering-openshift")
    (peering,) = find(namespaced, "KopfPeering")
    assert peering["metadata"]["namespace"] == "ml-team"
    crds = find(namespaced, "CustomResourceDefinition")
    assert not [c for c in crds if c["spec"]["group"] == "kopf.dev"]  # installCrd: false


def test_notes_say_what_to_apply_next():
    notes = render_set("defaults")["modelpress/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/mp-modelpress" in notes
    assert "create secret generic artifact-store" in notes
    assert "apply -f examples/smollm2.yaml" in notes
    assert "every namespace" in notes
    namespaced = render_set("namespaced")["modelpress/templates/NOTES.txt"]
    assert "ml-team, ml-staging" in namespaced
    assert "kubectl -n ml-team apply" in namespaced
    assert "modelpress crd | kubectl apply --server-side -f -" in namespaced  # crds.install: false
