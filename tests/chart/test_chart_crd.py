"""The chart ships exactly the CRD `modelpress crd` generates, with install and keep toggles."""

from __future__ import annotations

from chart_render import CHART_DIR, ROOT, find, render_objects, rendered_set

from modelpress.api.crd import crd, crd_yaml

CHART_COPY = CHART_DIR / "files" / "modelpress.dev_compressedmodels.yaml"
FIX = (
    "the chart's CRD is stale: run "
    "`modelpress crd > charts/modelpress/files/modelpress.dev_compressedmodels.yaml`"
)


def test_chart_copy_is_the_generated_crd():
    assert CHART_COPY.read_text() == crd_yaml(), FIX
    assert CHART_COPY.read_text() == (ROOT / "crds" / CHART_COPY.name).read_text(), FIX


def test_rendered_crd_is_the_generated_one_plus_release_metadata():
    (rendered,) = find(rendered_set("defaults"), "CustomResourceDefinition")
    generated = crd()
    # templates/crd.yaml copies the spec as text and writes metadata itself.
    assert set(generated) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(generated["metadata"]) == {"name"}, "templates/crd.yaml drops other metadata"
    assert rendered["spec"] == generated["spec"]
    assert rendered["metadata"]["name"] == generated["metadata"]["name"]
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crd_is_kept_on_uninstall_by_default():
    (rendered,) = find(rendered_set("defaults"), "CustomResourceDefinition")
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_keep_off_drops_the_policy_and_annotations_are_added():
    crds = find(rendered_set("peering-and-metrics"), "CustomResourceDefinition")
    (ours,) = [c for c in crds if c["spec"]["group"] == "modelpress.dev"]
    assert ours["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "-1"}


def test_install_off_renders_no_crd():
    assert not find(rendered_set("namespaced"), "CustomResourceDefinition")


def test_keep_off_without_annotations_has_no_annotations(chart):
    (rendered,) = find(render_objects(chart, {"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in rendered["metadata"]
