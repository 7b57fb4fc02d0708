"""The serving Deployment and Service for the chosen variant.

An init container (serving image, `modelpress pull`) downloads the artifact into
an emptyDir and verifies every file's sha256; the main container runs vLLM's
OpenAI-compatible server on it, sized by `modelpress.sizing`. The rollout
strategy never needs a GPU the cluster may not have spare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.plan import names, pods
from modelpress.sizing import SizingResult
from modelpress.sizing.pod import shm_bytes
from modelpress.sizing.units import GiB

PORT = 8000
MODELS_DIR = "/models"
PULL_CONTAINER = "pull"
SERVER_CONTAINER = "vllm"
#: Loading a large model (weights, CUDA graphs) may take long; the startup probe waits.
STARTUP_SECONDS = 30 * 60
#: Download + load must finish within this, or the rollout is reported stalled.
PROGRESS_DEADLINE_SECONDS = 2 * 3600


def endpoint(model: str, namespace: str) -> str:
    """The OpenAI-compatible base URL clients inside the cluster use."""
    return f"http://{names.service_name(model)}.{namespace}.svc:{PORT}/v1"


def strategy(sizing: SizingResult, replicas: int | None) -> dict[str, Any]:
    """A rollout that never waits for a spare GPU.

    GPU, one replica: Recreate (the old pod frees its GPUs first). GPU, several
    replicas, or as many as an autoscaler decides (None): replace one at a time
    without surge. CPU: surge one new pod, keep every old one serving until it is ready.
    """
    if sizing.gpus > 0:
        if replicas is not None and replicas <= 1:
            return {"type": "Recreate"}
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def _probe(path: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in sorted(values.items())]


@dataclass(frozen=True)
class Served:
    """What every serving pod of a model runs: the artifact and how it is sized."""

    model: str
    namespace: str
    spec: CompressedModelSpec
    variant: str
    key: str
    artifact_uri: str
    artifact_bytes: int
    sizing: SizingResult
    config: OperatorConfig

    @property
    def model_dir(self) -> str:
        return f"{MODELS_DIR}/{self.key}"


def server_command() -> list[str]:
    # The OpenAI server module, not the `vllm` script: the same in GPU and CPU builds.
    return ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def server_args(served: Served) -> list[str]:
    return [
        "--model", served.model_dir,
        "--served-model-name", served.model,
        "--port", str(PORT),
        *served.sizing.vllm_args,
    ]  # fmt: skip


def pod_template(
    served: Served, command: list[str], args: list[str], *, answers: bool = True
) -> dict[str, Any]:
    """A serving pod: `modelpress pull` verifies the artifact into an emptyDir, then the
    server container runs `command` `args` on it. `answers`: it serves HTTP on PORT (and
    is probed there); a multi-node worker does not."""
    spec, config, sizing = served.spec, served.config, served.sizing
    image = spec.serving.image or config.images.serving
    s_volumes, s_mounts, s_env = pods.storage_mounts(spec)
    models_size = f"{math.ceil((served.artifact_bytes * 1.1 + GiB) / GiB)}Gi"
    volumes = [pods.empty_dir("models", models_size), pods.empty_dir("tmp", "16Gi")]
    shm = shm_bytes(sizing.tensor_parallel_size)
    server_mounts = [
        {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": pods.TMP_DIR},
    ]
    if shm:
        volumes.append(pods.empty_dir("shm", f"{math.ceil(shm / GiB)}Gi", memory=True))
        server_mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    pull = {
        "name": PULL_CONTAINER,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["modelpress"],
        "args": ["pull", served.artifact_uri, served.model_dir],
        "env": pods.home_env(pods.TMP_DIR) + s_env,
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": pods.TMP_DIR},
            *s_mounts,
        ],
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": pods.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    server: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": command,
        "args": args,
        "env": pods.home_env(pods.TMP_DIR) + _env(sizing.env) + _api_key_env(spec),
    }
    if answers:
        server["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    server |= {
        "volumeMounts": server_mounts,
        "resources": sizing.resources,
    }
    if answers:
        server |= {
            "startupProbe": _probe("/health", 10, STARTUP_SECONDS // 10),
            "readinessProbe": _probe("/health", 5, 3),
            "livenessProbe": _probe("/health", 15, 4),
        }
    server |= {
        "securityContext": pods.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = pods.pod_spec(
        config,
        containers=[server],
        init_containers=[pull],
        volumes=volumes + s_volumes,
        service_account=config.serving_service_account_name,
        node_selector=sizing.node_selector,
        tolerations=sizing.tolerations,
    )
    pod_spec["terminationGracePeriodSeconds"] = 30
    labels = names.labels(served.model, names.SERVING, variant=served.variant, key=served.key)
    return {
        "metadata": {
            "labels": labels,
            "annotations": {names.ANNOTATION_ARTIFACT: served.artifact_uri},
        },
        "spec": pod_spec,
    }


def deployment(
    model: str,
    namespace: str,
    spec: CompressedModelSpec,
    variant: str,
    key: str,
    artifact_uri: str,
    artifact_bytes: int,
    sizing: SizingResult,
    config: OperatorConfig,
    autoscaler: str | None = None,
) -> dict[str, Any]:
    """The vLLM Deployment serving `variant` (artifact `key`) as sized; with `autoscaler`
    (its kind), the replica count is left to it."""
    served = Served(
        model, namespace, spec, variant, key, artifact_uri, artifact_bytes, sizing, config
    )
    template = pod_template(served, server_command(), server_args(served))
    selector = {names.LABEL_MODEL: model, names.LABEL_COMPONENT: names.SERVING}
    # An autoscaled Deployment leaves replicas to its autoscaler: applying a count here
    # would undo every scaling decision at the next reconcile.
    replicas = None if autoscaler else spec.serving.replicas
    deployment_spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    deployment_spec |= {
        "selector": {"matchLabels": selector},
        "strategy": strategy(sizing, replicas),
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        "template": template,
    }
    annotations = {
        names.ANNOTATION_SPEC_HASH: names.short_hash(deployment_spec),
        names.ANNOTATION_ARTIFACT: artifact_uri,
        f"{names.DOMAIN}/gpus": str(sizing.gpus),
    }
    if autoscaler:
        annotations[names.ANNOTATION_AUTOSCALER] = autoscaler
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment_name(model),
            "namespace": namespace,
            "labels": names.labels(model, names.SERVING, variant=variant, key=key),
            "annotations": annotations,
        },
        "spec": deployment_spec,
    }


def _api_key_env(spec: CompressedModelSpec) -> list[dict[str, Any]]:
    """vLLM refuses /v1 requests without this key (its health probe stays open)."""
    ref = spec.serving.api_key_secret_ref
    if ref is None:
        return []
    source = {"secretKeyRef": {"name": ref.name, "key": ref.key}}
    return [{"name": "VLLM_API_KEY", "valueFrom": source}]


def _policy(
    model: str,
    namespace: str,
    name: str,
    component: str,
    selector: dict[str, Any],
    spec: dict[str, Any],
) -> dict[str, Any]:
    policy_spec = {"podSelector": selector, **spec}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": names.labels(model, component),
            "annotations": {names.ANNOTATION_SPEC_HASH: names.short_hash(policy_spec)},
        },
        "spec": policy_spec,
    }


def serving_policy(
    model: str, namespace: str, config: OperatorConfig, across_nodes: bool = False
) -> dict[str, Any]:
    """Only pods of the model's namespace (and the namespaces the platform lists) reach the
    vLLM port; nothing else reaches the serving pods at all, except, across nodes, the
    model's own serving pods (torch.distributed and NCCL between the group's nodes)."""
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    allowed = config.network_policies.serving_from_namespaces
    if allowed:
        label = "kubernetes.io/metadata.name"
        expression = {"key": label, "operator": "In", "values": sorted(allowed)}
        peers.append({"namespaceSelector": {"matchExpressions": [expression]}})
    selector = {"matchLabels": {names.LABEL_MODEL: model, names.LABEL_COMPONENT: names.SERVING}}
    rules: list[dict[str, Any]] = [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}]
    if across_nodes:
        rules.append({"from": [{"podSelector": selector}]})
    return _policy(
        model,
        namespace,
        names.serving_policy_name(model),
        names.SERVING,
        selector,
        {"policyTypes": ["Ingress"], "ingress": rules},
    )


DNS_EGRESS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def jobs_policy(model: str, namespace: str, config: OperatorConfig) -> dict[str, Any] | None:
    """The Jobs reach DNS and what the platform lists (the store, the Hub), nothing else."""
    rules = config.network_policies.job_egress
    if rules is None:
        return None
    jobs = [names.COMPRESS, names.FETCH]
    components = {"key": names.LABEL_COMPONENT, "operator": "In", "values": jobs}
    selector = {"matchLabels": {names.LABEL_MODEL: model}, "matchExpressions": [components]}
    # A distillation over nodes: its pods reach each other (torch.distributed, NCCL).
    peers = {"matchLabels": {names.LABEL_MODEL: model, names.LABEL_COMPONENT: names.COMPRESS}}
    egress = [DNS_EGRESS, {"to": [{"podSelector": peers}]}, *rules]
    return _policy(
        model,
        namespace,
        names.jobs_policy_name(model),
        names.COMPRESS,
        selector,
        {"policyTypes": ["Egress"], "egress": egress},
    )


#: The label LeaderWorkerSet puts on its pods: "0" on each group's leader.
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


def service(model: str, namespace: str, leaders_only: bool = False) -> dict[str, Any]:
    """`<model>`: port 8000 of whichever pods serve the model (across nodes, the group
    leaders: the workers run the engine without an API)."""
    selector = {names.LABEL_MODEL: model, names.LABEL_COMPONENT: names.SERVING}
    if leaders_only:
        selector[WORKER_INDEX_LABEL] = "0"
    service_spec = {
        "type": "ClusterIP",
        "selector": selector,
        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.service_name(model),
            "namespace": namespace,
            "labels": names.labels(model, names.SERVING),
            "annotations": {names.ANNOTATION_SPEC_HASH: names.short_hash(service_spec)},
        },
        "spec": service_spec,
    }
