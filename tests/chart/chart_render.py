"""Render the Helm chart with Helm's own engine (helm-python-sdk binds Helm's Go SDK).

Each value set is rendered once per session; tests get the parsed objects
through the fixtures in conftest.py or the functions here.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "modelpress"
RELEASE = "mp"
NAMESPACE = "modelpress-system"

SHA = "sha256:" + "ab" * 32

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Value sets every rendering test runs against: the defaults and the shapes an
#: installation really takes.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {
        "watchNamespaces": ["ml-team", "ml-staging"],
        "crds": {"install": False},
        "image": {"digest": SHA},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"name": "modelpress-operator", "annotations": {"team": "ml"}},
    },
    "gpu-catalog-and-jobs": {
        "gpuCatalog": {
            "nvidia-l4": {"productLabel": "NVIDIA-L4-custom"},
            "rtx-4090": {
                "memoryGiB": 23.6,
                "productLabel": "NVIDIA-GeForce-RTX-4090",
                "maxPerNode": 2,
                "cpuCores": 8,
                "available": 6,
                "nodeSelector": {"pool": "workstation-gpus"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
            "big-host": {"kind": "cpu", "memoryGiB": 256, "maxPerNode": 1, "cpuCores": 32},
        },
        "images": {
            "compressor": {"repository": "registry.example.com/mp/compressor", "tag": "1.2.3"},
            "compressorCuda": {"repository": "registry.example.com/mp/compressor", "digest": SHA},
            "serving": {"repository": "registry.example.com:5000/mp/serving", "tag": "v1"},
            "pullPolicy": "Always",
            "pullSecrets": ["regcred"],
        },
        "jobs": {
            "serviceAccountName": "compressor",
            "ttlSecondsAfterFinished": 3600,
            "defaultCpu": "4",
            "cpuLimit": "8",
            "memoryHeadroomGiB": 4.5,
            "fetchMemory": "1Gi",
            "workDirSizeLimit": "200Gi",
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "batch", "operator": "Equal", "value": "yes"}],
        },
        "serving": {
            "serviceAccountName": "vllm",
            "cpuInt4Kernel": False,
            "cpuInt4NodeSelector": {"feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true"},
        },
        "autoscaling": {
            "engine": "keda",
            "prometheusAddress": "http://prometheus.monitoring.svc:9090",
            "scaleDownSeconds": 600,
            "externalMetrics": {"waitingRequests": "vllm_waiting"},
        },
        "reconcile": {
            "resyncSeconds": 120,
            "workerLimit": 5,
            "backoffSeconds": 30,
            "storeCacheSeconds": 0,
        },
        "watch": {"serverTimeoutSeconds": 120, "inactivityTimeoutSeconds": 300},
        "resources": {"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"cpu": 1}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "control", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "verbose": True,
        "podLabels": {"team": "ml"},
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "compressorVersion": "2026.11-rebuild",
        "trust": {
            "ambientCredentialsNamespaces": ["ml-team"],
            "storeEndpoints": ["https://minio.storage.svc:9000"],
            "imagePrefixes": ["registry.example.com/mp/"],
        },
        "networkPolicies": {
            "serving": True,
            "servingFromNamespaces": ["gateway", "monitoring"],
            "jobEgress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}],
            "operatorEgress": [
                {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}], "ports": [{"port": 443}]}
            ],
        },
    },
    "peering-and-metrics": {
        "peering": {"enabled": True, "name": "modelpress-peers"},
        "metrics": {
            "enabled": True,
            "serviceMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "prom"}},
            "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "dashboard": {"enabled": True, "namespace": "monitoring"},
        },
        "crds": {"keep": False, "annotations": {"argocd.argoproj.io/sync-wave": "-1"}},
        "fullnameOverride": "modelpress",
    },
    "namespaced-peering-openshift": {
        "watchNamespaces": ["ml-team"],
        "peering": {"enabled": True, "installCrd": False},
        # OpenShift's restricted SCC assigns the ids: null removes the defaults.
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
    },
    "existing-service-account": {
        "serviceAccount": {"create": False, "name": "shared-operator"},
        "rbac": {"create": False},
        "nameOverride": "mp",
    },
}


@functools.cache
def render_set(name: str) -> dict[str, str]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        return loaded.render(copy.deepcopy(VALUE_SETS[name]), name=RELEASE, namespace=NAMESPACE)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a rendering (NOTES.txt left out)."""
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]
    return objects


def render_objects(chart: helm_python.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    return manifests(chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE))


@functools.cache
def rendered_set(name: str) -> list[dict[str, Any]]:
    """The objects of one named value set (cached: do not change them)."""
    return manifests(render_set(name))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap holding the operator's config file (not the dashboard's)."""
    (found,) = [o for o in find(objects, "ConfigMap") if "config.yaml" in o.get("data", {})]
    return found


def operator_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's config file, parsed, from the rendered ConfigMap."""
    return yaml.safe_load(config_map(objects)["data"]["config.yaml"])


def load_pss() -> ModuleType:
    """tests/pss.py, the shared Pod Security Standard checker, loaded by path
    (tests/ is not a package on sys.path)."""
    spec = importlib.util.spec_from_file_location("modelpress_tests_pss", ROOT / "tests" / "pss.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
