"""The Jobs of the pipeline: fetch the base model once, then one Job per variant
that runs its whole chain, evaluates the result and publishes it.

Both run the `modelpress` CLI from the compressor image in a restricted pod; a
usage error (exit code 2) fails the Job at once instead of being retried.
"""

from __future__ import annotations

from typing import Any

from modelpress.api.spec import CompressedModelSpec
from modelpress.api.steps import Variant
from modelpress.config import OperatorConfig
from modelpress.plan import names, pods
from modelpress.plan.jobset import as_jobset, master_address
from modelpress.plan.recipes import compress_job_args, source_job_args
from modelpress.plan.resources import JobResources, training_processes

USAGE_ERROR_EXIT_CODE = 2
#: torch.distributed's rendezvous port on a distributed distillation's first pod.
MASTER_PORT = 29500
#: A gang's pods are named, and their hostnames (DNS labels, 63 characters) made,
#: from its name: `<name>-<index>` for an indexed Job, `<name>-node-0-<index>` for a
#: JobSet's; this leaves room for either, up to 1000 nodes.
GANG_NAME_LIMIT = 63 - len("-node-0-999")
FETCH_CONTAINER = "fetch"
COMPRESS_CONTAINER = "compress"


def _container(
    name: str,
    image: str,
    args: list[str],
    env: list[dict[str, str]],
    mounts: list[dict[str, Any]],
    resources: dict[str, Any],
    config: OperatorConfig,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["modelpress"],
        "args": args,
        "env": env,
        "volumeMounts": mounts,
        "resources": resources,
        "securityContext": pods.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _job(
    prefix: str,
    namespace: str,
    labels: dict[str, str],
    pod_spec: dict[str, Any],
    container: str,
    spec: CompressedModelSpec,
    config: OperatorConfig,
    name: str | None = None,
    indexed: int = 0,
) -> dict[str, Any]:
    """A Job named `<prefix>-<hash of its labels and command>`: what determines its output
    (the content key is among the labels; the command holds the recipe, the evaluation
    and the locations). Other settings (resources, retries, TTL, image of the same
    compressor version) change the `spec-hash` annotation only, so changing them never
    replaces a running Job; a failed one is run again with them (see `plan.variants`)."""
    job_spec = {
        "backoffLimit": spec.compression.backoff_limit,
        "activeDeadlineSeconds": spec.compression.active_deadline_seconds,
        "ttlSecondsAfterFinished": config.jobs.ttl_seconds_after_finished,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": container,
                        "operator": "In",
                        "values": [USAGE_ERROR_EXIT_CODE],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if indexed:  # one pod per node, each knowing its index; all run at once
        job_spec |= {"completionMode": "Indexed", "completions": indexed, "parallelism": indexed}
    if name is None:
        command = next(c for c in pod_spec["containers"] if c["name"] == container)["args"]
        name = job_name(prefix, labels, command)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {names.ANNOTATION_SPEC_HASH: names.short_hash(job_spec)},
        },
        "spec": job_spec,
    }


def job_name(
    prefix: str, labels: dict[str, str], command: list[str], limit: int | None = None
) -> str:
    """`<prefix>-<hash>`, the prefix cut so the name has at most `limit` characters."""
    digest = names.short_hash({"labels": labels, "command": command})
    if limit is not None:
        prefix = prefix[: limit - len(digest) - 1].rstrip("-")
    return f"{prefix}-{digest}"


def distributed(spec: CompressedModelSpec, variant: Variant) -> bool:
    """Whether the variant's Job trains over several processes: it distills, and the spec
    asks for more than one GPU or node."""
    return training_processes(spec, variant) > 1


def torchrun_args(spec: CompressedModelSpec, master: str, args: list[str]) -> list[str]:
    """`modelpress <args>` under torchrun: one process per GPU of each node; across nodes
    node rank = the indexed Job's completion index, rendezvous at pod 0 (`master`)."""
    launch = ["--nproc-per-node", str(spec.compression.processes_per_node)]
    if spec.compression.nodes > 1:
        launch += [
            "--nnodes", str(spec.compression.nodes),
            "--node-rank", "$(JOB_COMPLETION_INDEX)",
            "--master-addr", master,
            "--master-port", str(MASTER_PORT),
        ]  # fmt: skip
    else:
        launch = ["--standalone", *launch]
    return [*launch, "--no-python", "modelpress", *args]


def headless_service(job: dict[str, Any]) -> dict[str, Any]:
    """Stable DNS names for the pods of an indexed Job (`<job>-<index>.<job>`)."""
    metadata = job["metadata"]
    service_spec = {
        "clusterIP": "None",
        "selector": {"job-name": metadata["name"]},
        "publishNotReadyAddresses": True,
        "ports": [{"name": "rendezvous", "port": MASTER_PORT, "protocol": "TCP"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": dict(metadata["labels"]),
            "annotations": {names.ANNOTATION_SPEC_HASH: names.short_hash(service_spec)},
        },
        "spec": service_spec,
    }


def compressor_image(spec: CompressedModelSpec, config: OperatorConfig) -> str:
    if spec.compression.image:
        return spec.compression.image
    if spec.compression.gpu is not None:
        return config.images.compressor_cuda
    return config.images.compressor


def fetch_job(
    model: str, namespace: str, spec: CompressedModelSpec, config: OperatorConfig
) -> dict[str, Any]:
    """The Job that resolves the source and publishes the base model (once per store)."""
    s_volumes, s_mounts, s_env = pods.storage_mounts(spec)
    h_volumes, h_mounts, h_env = pods.hf_token_mounts(spec)
    volumes = [pods.empty_dir("work", config.jobs.work_dir_size_limit), pods.empty_dir("tmp")]
    mounts = [
        {"name": "work", "mountPath": pods.WORK_DIR},
        {"name": "tmp", "mountPath": pods.TMP_DIR},
    ]
    memory = config.jobs.fetch_memory
    resources: dict[str, Any] = {
        "requests": {"cpu": "500m", "memory": memory},
        "limits": {"memory": memory},
    }
    container = _container(
        FETCH_CONTAINER,
        spec.compression.image or config.images.compressor,
        source_job_args(spec, pods.WORK_DIR),
        pods.home_env(pods.WORK_DIR) + s_env + h_env,
        mounts + s_mounts + h_mounts,
        resources,
        config,
    )
    pod_spec = pods.pod_spec(
        config,
        containers=[container],
        volumes=volumes + s_volumes + h_volumes,
        service_account=config.jobs.service_account_name,
        restart_policy="Never",
        node_selector=config.jobs.node_selector,
        tolerations=config.jobs.tolerations,
    )
    labels = names.labels(model, names.FETCH)
    return _job(f"{model}-fetch", namespace, labels, pod_spec, FETCH_CONTAINER, spec, config)


def compress_job(
    model: str,
    namespace: str,
    spec: CompressedModelSpec,
    variant: Variant,
    key: str,
    base_uri: str,
    out_uri: str,
    sized: JobResources,
    config: OperatorConfig,
    *,
    jobset: bool = False,
) -> dict[str, Any]:
    """One variant's Job: its chain, its evaluation and its publish in one process, or,
    for a distillation over several GPUs or nodes, under torchrun: one pod per node, as
    a JobSet when `jobset` (the cluster has it, `plan.jobset`), else an indexed Job
    beside a headless Service (`headless_service`).

    Its name hashes what determines the artifact (see `_job`): a changed recipe is a new
    Job, and an unchanged one is found again.
    """
    s_volumes, s_mounts, s_env = pods.storage_mounts(spec)
    volumes = [pods.empty_dir("work", sized.work_dir_size), pods.empty_dir("tmp")]
    mounts = [
        {"name": "work", "mountPath": pods.WORK_DIR},
        {"name": "tmp", "mountPath": pods.TMP_DIR},
    ]
    args = compress_job_args(spec, variant, base_uri, out_uri, pods.WORK_DIR)
    if sized.sharding != "replicate":  # only then: the Jobs of earlier versions keep their names
        args += ["--sharding", sized.sharding]
    labels = names.labels(model, names.COMPRESS, variant=variant.name, key=key)
    prefix = f"{model}-{variant.name}"
    spread = distributed(spec, variant)
    nodes = spec.compression.nodes if spread else 1
    name = job_name(prefix, labels, args, limit=GANG_NAME_LIMIT if nodes > 1 else None)
    gang = jobset and nodes > 1
    master = master_address(name) if gang else f"{name}-0.{name}"
    container = _container(
        COMPRESS_CONTAINER,
        compressor_image(spec, config),
        torchrun_args(spec, master, args) if spread else args,
        pods.home_env(pods.WORK_DIR) + s_env,
        mounts + s_mounts,
        sized.resources,
        config,
    )
    if spread:
        container["command"] = ["torchrun"]
    pod_spec = pods.pod_spec(
        config,
        containers=[container],
        volumes=volumes + s_volumes,
        service_account=config.jobs.service_account_name,
        restart_policy="Never",
        node_selector=sized.node_selector,
        tolerations=sized.tolerations,
    )
    if nodes > 1:
        pod_spec["subdomain"] = name  # the headless Service: `<job>-<index>.<job>`
    job = _job(
        prefix, namespace, labels, pod_spec, COMPRESS_CONTAINER, spec, config,
        name=name, indexed=nodes if nodes > 1 else 0,
    )  # fmt: skip
    return as_jobset(job) if gang else job
