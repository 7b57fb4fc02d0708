"""The ConfigMap the chart renders is a configuration `modelpress operator` accepts."""

from __future__ import annotations

from typing import Any

import yaml
from chart_render import CHART_DIR, SHA, VALUE_SETS, operator_config, rendered_set
from pydantic import BaseModel

from modelpress import __version__
from modelpress.config import OperatorConfig, parse_config

#: OperatorConfig settings the chart leaves to the operator on purpose.
NOT_FROM_THE_CHART = {"trust.allowFileStores"}


def test_rendered_config_is_accepted_by_the_operator(objects, value_set):
    config = parse_config(operator_config(objects), f"value set {value_set}")
    values = VALUE_SETS[value_set]
    watched = values.get("watchNamespaces", "all")
    assert config.namespaces == ([] if watched == "all" else watched)
    assert config.peering.standalone is not values.get("peering", {}).get("enabled", False)


def test_default_images_are_the_operators_defaults():
    """Chart and operator agree on image names, so either default works alone."""
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__, "Chart.yaml appVersion must be the package version"
    config = parse_config(operator_config(rendered_set("defaults")))
    assert config.images == OperatorConfig().images
    assert config.cpu_int4_kernel is True and config.cpu_int4_node_selector == {}
    assert config.image_pull_policy == "IfNotPresent"


def test_values_reach_the_config():
    config = parse_config(operator_config(rendered_set("gpu-catalog-and-jobs")))
    assert config.images.compressor == "registry.example.com/mp/compressor:1.2.3"
    assert config.images.compressor_cuda == f"registry.example.com/mp/compressor@{SHA}"
    assert config.images.serving == "registry.example.com:5000/mp/serving:v1"
    assert config.image_pull_policy == "Always"
    assert config.image_pull_secrets == ["regcred"]
    assert config.jobs.cpu_limit == "8" and config.jobs.work_dir_size_limit == "200Gi"
    assert config.jobs.memory_headroom_gib == 4.5
    assert config.serving_service_account_name == "vllm"
    assert config.cpu_int4_kernel is False
    assert config.cpu_int4_node_selector == {"feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true"}
    assert config.worker_limit == 5 and config.resync_seconds == 120
    assert config.watch.server_timeout_seconds == 120
    added = config.gpu_catalog["rtx-4090"]
    assert added.memory_gib == 23.6 and added.max_per_node == 2 and added.cpu_cores == 8
    assert added.product_label == "NVIDIA-GeForce-RTX-4090"
    assert added.node_selector == {"pool": "workstation-gpus"}
    assert added.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    # The catalog the operator sizes with: products added, one changed, the rest built in.
    assert config.catalog["rtx-4090"].max_per_node == 2
    assert config.catalog["nvidia-l4"].product_label == "NVIDIA-L4-custom"
    assert config.catalog["big-host"].kind == "cpu"
    assert "nvidia-h100-80gb" in config.catalog
    assert config.gpus_available("rtx-4090") == 6 and config.gpus_available("nvidia-l4") is None
    scaling = config.autoscaling
    assert scaling.engine == "keda" and scaling.scale_down_seconds == 600
    assert scaling.prometheus_address == "http://prometheus.monitoring.svc:9090"
    assert scaling.external_metrics.waiting_requests == "vllm_waiting"
    assert scaling.external_metrics.kv_cache_usage == "vllm_kv_cache_usage_perc"


def test_empty_optional_values_keep_the_operators_defaults():
    jobs = operator_config(rendered_set("defaults"))["jobs"]
    assert "cpuLimit" not in jobs and "workDirSizeLimit" not in jobs
    config = parse_config(operator_config(rendered_set("defaults")))
    assert config.jobs.cpu_limit is None and config.jobs.work_dir_size_limit is None


def _settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every setting of a config model, as dotted camelCase paths."""
    paths = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _settings(annotation, path + ".")
        else:
            paths.add(path)
    return paths


def _rendered_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        path = prefix + key
        if isinstance(value, dict) and key not in (
            "gpuCatalog",
            "nodeSelector",
            "cpuInt4NodeSelector",
        ):
            paths |= _rendered_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def test_every_operator_setting_can_be_set_from_values():
    """A setting added to OperatorConfig fails here until the chart can render it."""
    rendered = set()
    for name in VALUE_SETS:
        rendered |= _rendered_paths(operator_config(rendered_set(name)))
    missing = _settings(OperatorConfig) - rendered - NOT_FROM_THE_CHART
    assert not missing, f"values cannot set these operator settings: {sorted(missing)}"
    unknown = rendered - _settings(OperatorConfig)
    assert not unknown, f"the chart renders settings the operator does not know: {sorted(unknown)}"
