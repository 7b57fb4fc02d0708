"""The child objects the planner builds: Jobs, their resources, the Deployment and Service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.plan.conftest import BASE, SMOLLM2, make_spec
from tests.pss import assert_restricted

from modelpress.config import OperatorConfig
from modelpress.plan import jobs, names, serving
from modelpress.plan.resources import compression_resources
from modelpress.sizing import ModelShape, ServingSettings, size_variant
from modelpress.sizing.units import GiB

ALLOWED_VOLUMES = {"emptyDir", "secret", "configMap", "projected"}
LONGEST_MODEL = "m" * 32
LONGEST_VARIANT = "v" * 20


def compress(spec, config, variant_index=1, model="tiny"):
    variant = spec.variants[variant_index]
    sized = compression_resources(spec, variant, BASE.weights_bytes, BASE.config, config)
    return jobs.compress_job(
        model,
        "ml",
        spec,
        variant,
        "k" * 20,
        BASE.uri,
        "s3://artifacts/store/artifacts/k/",
        sized,
        config,
    ), sized


def test_the_fetch_job_is_restricted_and_mounts_secrets_as_files(config: OperatorConfig) -> None:
    spec = make_spec(
        source={
            "huggingface": {"repo": "org/private", "tokenSecretRef": {"name": "hub", "key": "tok"}}
        }
    )
    job = jobs.fetch_job("tiny", "ml", spec, config)
    assert_restricted(job, allowed_volumes=ALLOWED_VOLUMES, read_only_root=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["modelpress"]
    assert container["args"][:2] == ["fetch", "--source"]
    assert container["args"][-2:] == ["--work-dir", "/work"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELPRESS_STORAGE_CREDENTIALS_DIR"] == "/var/run/secrets/modelpress/storage"
    assert env["HF_TOKEN_PATH"] == "/var/run/secrets/modelpress/huggingface/tok"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["storage-credentials"]["secret"]["secretName"] == "artifact-store"
    assert volumes["huggingface-token"]["secret"]["items"] == [{"key": "tok", "path": "tok"}]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {
        "/tmp",
        "/work",
        "/var/run/secrets/modelpress/storage",
        "/var/run/secrets/modelpress/huggingface",
    } <= mounts
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] == config.jobs.ttl_seconds_after_finished


def test_without_secret_refs_nothing_is_mounted(config: OperatorConfig) -> None:
    spec = make_spec(storage={"uri": "s3://artifacts/store/"})
    job = jobs.fetch_job("tiny", "ml", spec, config)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert not any("secret" in v for v in job["spec"]["template"]["spec"]["volumes"])
    assert "MODELPRESS_STORAGE_CREDENTIALS_DIR" not in {e["name"] for e in container["env"]}


def test_a_compression_job_runs_the_chain_with_limits_and_retries(config: OperatorConfig) -> None:
    spec = make_spec(compression={"backoffLimit": 3, "activeDeadlineSeconds": 7200})
    job, sized = compress(spec, config)
    assert_restricted(job, allowed_volumes=ALLOWED_VOLUMES, read_only_root=True)
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == config.images.compressor
    assert container["args"][0] == "compress"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    labels = job["metadata"]["labels"]
    assert labels[names.LABEL_VARIANT] == "w4" and labels[names.LABEL_KEY] == "k" * 20
    assert labels[names.MANAGED_BY] == "modelpress"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert container["resources"] == sized.resources
    work = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "work")
    assert work["emptyDir"]["sizeLimit"] == sized.work_dir_size


def test_cpu_memory_is_about_two_bytes_per_parameter_plus_headroom(config: OperatorConfig) -> None:
    spec = make_spec()
    sized = compression_resources(spec, spec.variants[0], BASE.weights_bytes, SMOLLM2, config)
    params = ModelShape.from_config(SMOLLM2).parameter_count()
    assert 2 * params + 2 * GiB <= sized.host_bytes <= 2.6 * params + 2.2 * GiB
    assert sized.resources["requests"]["memory"] == sized.resources["limits"]["memory"]
    assert sized.resources["requests"]["cpu"] == config.jobs.default_cpu
    assert "nvidia.com/gpu" not in sized.resources["requests"]


def test_distillation_needs_far_more_memory(config: OperatorConfig) -> None:
    spec = make_spec(variants=[{"name": "d", "distill": {"steps": 10, "studentLayers": 8}}])
    rtn = make_spec()
    distill = compression_resources(spec, spec.variants[0], BASE.weights_bytes, SMOLLM2, config)
    plain = compression_resources(rtn, rtn.variants[0], BASE.weights_bytes, SMOLLM2, config)
    assert distill.host_bytes > 6 * plain.host_bytes - 12 * GiB


def test_an_ffn_width_prune_also_asks_for_its_refit_statistics(config: OperatorConfig) -> None:
    """The refit keeps a 1536 x 1536 fp32 Gram matrix per block of SmolLM2 (30 x 9 MiB)
    and solves one block at a time in float64 (3 x 18 MiB)."""
    width = make_spec(variants=[{"name": "w", "prune": {"method": "ffn-width", "fraction": 0.25}}])
    depth = make_spec(variants=[{"name": "d", "prune": {"method": "layer-drop", "fraction": 0.25}}])
    narrow = compression_resources(width, width.variants[0], BASE.weights_bytes, SMOLLM2, config)
    short = compression_resources(depth, depth.variants[0], BASE.weights_bytes, SMOLLM2, config)
    refit = 30 * 1536 * 1536 * 4 + 3 * 1536 * 1536 * 8
    assert narrow.host_bytes - short.host_bytes == refit


def test_the_memory_override_wins(config: OperatorConfig) -> None:
    spec = make_spec(compression={"memory": "40Gi"})
    sized = compression_resources(spec, spec.variants[0], BASE.weights_bytes, SMOLLM2, config)
    assert sized.resources["requests"]["memory"] == "40Gi"


def test_without_a_config_the_weights_decide(config: OperatorConfig) -> None:
    spec = make_spec()
    sized = compression_resources(spec, spec.variants[0], 16 * GiB, None, config)
    assert sized.host_bytes >= 16 * GiB + 2 * GiB


def test_a_gpu_job_uses_the_cuda_image_one_gpu_and_the_catalog_placement(
    config: OperatorConfig,
) -> None:
    spec = make_spec(compression={"gpu": {"product": "nvidia-l4"}})
    job, sized = compress(spec, config)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == config.images.compressor_cuda
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert sized.problem is None and 0 < sized.gpu_bytes < 2 * GiB  # one layer, not the model


def test_a_gpu_too_small_for_one_layer_is_a_problem_with_numbers() -> None:
    config = OperatorConfig.model_validate({"gpuCatalog": {"tiny-gpu": {"memoryGiB": 0.01}}})
    spec = make_spec(compression={"gpu": {"product": "tiny-gpu"}})
    _, sized = compress(spec, config)
    assert (
        sized.problem is not None
        and "GiB of GPU memory" in sized.problem.message
        and "tiny-gpu" in sized.problem.message
    )


def test_an_unknown_compression_gpu_is_a_problem_naming_known_ones(config: OperatorConfig) -> None:
    spec = make_spec(compression={"gpu": {"product": "nvidia-b999"}})
    _, sized = compress(spec, config)
    assert (
        sized.problem is not None
        and "nvidia-l4" in sized.problem.message
        and "gpuCatalog" in sized.problem.message
    )


def test_a_custom_compressor_image_wins(config: OperatorConfig) -> None:
    spec = make_spec(
        compression={"image": "registry.example/compressor:dev", "gpu": {"product": "nvidia-l4"}}
    )
    job, _ = compress(spec, config)
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.example/compressor:dev"
    )


def test_job_names_are_deterministic_within_63_characters_and_follow_the_template(
    config: OperatorConfig,
) -> None:
    spec = make_spec(
        variants=[{"name": LONGEST_VARIANT, "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}]
    )
    first, _ = compress(spec, config, 0, LONGEST_MODEL)
    again, _ = compress(
        make_spec(
            variants=[
                {"name": LONGEST_VARIANT, "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
            ]
        ),
        config,
        0,
        LONGEST_MODEL,
    )
    assert first["metadata"]["name"] == again["metadata"]["name"]
    assert len(first["metadata"]["name"]) <= 63
    retried = make_spec(
        variants=[{"name": LONGEST_VARIANT, "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}],
        compression={"backoffLimit": 5},
    )
    retried_job = compress(retried, config, 0, LONGEST_MODEL)[0]
    # A retry setting does not change the output: same Job, other settings.
    assert retried_job["metadata"]["name"] == first["metadata"]["name"]
    spec_hash = names.ANNOTATION_SPEC_HASH
    assert (
        retried_job["metadata"]["annotations"][spec_hash]
        != (first["metadata"]["annotations"][spec_hash])
    )
    fetch = jobs.fetch_job(LONGEST_MODEL, "ml", spec, config)
    assert len(fetch["metadata"]["name"]) <= 63


def test_image_pull_settings_reach_every_pod() -> None:
    config = OperatorConfig.model_validate(
        {
            "imagePullPolicy": "Always",
            "imagePullSecrets": ["regcred"],
            "jobs": {"serviceAccountName": "jobs"},
        }
    )
    spec = make_spec()
    job, _ = compress(spec, config)
    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "jobs"
    assert pod["containers"][0]["imagePullPolicy"] == "Always"


# --- serving -----------------------------------------------------------------------------------


def sized(spec, config, gpu: str = "cpu", weights: int = 200_000_000, count=None):
    settings = ServingSettings(
        max_model_len=spec.serving.max_model_len, max_num_seqs=spec.serving.max_num_seqs
    )
    return size_variant(
        ModelShape.from_config(SMOLLM2), weights, settings, gpu, config.catalog, gpu_count=count
    )


def test_the_deployment_pulls_then_serves_with_vllm(config: OperatorConfig) -> None:
    spec = make_spec()
    sizing = sized(spec, config)
    uri = "s3://artifacts/store/artifacts/kkk/"
    deployment = serving.deployment(
        "tiny", "ml", spec, "w4", "kkk", uri, 200_000_000, sizing, config
    )
    assert_restricted(deployment, allowed_volumes=ALLOWED_VOLUMES, read_only_root=True)
    pod = deployment["spec"]["template"]["spec"]
    pull, server = pod["initContainers"][0], pod["containers"][0]
    assert pull["image"] == server["image"] == config.images.serving
    assert pull["args"] == ["pull", uri, "/models/kkk"]
    assert server["args"][:6] == [
        "--model",
        "/models/kkk",
        "--served-model-name",
        "tiny",
        "--port",
        "8000",
    ]
    assert server["args"][6:] == sizing.vllm_args
    assert {e["name"]: e["value"] for e in server["env"]}.items() >= sizing.env.items()
    assert server["resources"] == sizing.resources
    assert server["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert deployment["spec"]["template"]["metadata"]["labels"][names.LABEL_KEY] == "kkk"
    assert deployment["spec"]["selector"]["matchLabels"] == {
        names.LABEL_MODEL: "tiny",
        names.LABEL_COMPONENT: "serving",
    }
    assert not any("secret" in json.dumps(server).lower() for _ in [0])


def test_a_custom_serving_image_wins(config: OperatorConfig) -> None:
    spec = make_spec(serving={"image": "vllm/vllm-openai:custom"})
    deployment = serving.deployment(
        "t", "ml", spec, "w", "k", "s3://a/b/", 1, sized(spec, config), config
    )
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == "vllm/vllm-openai:custom"
    )


@pytest.mark.parametrize(
    ("gpu", "replicas", "expected"),
    [
        (
            "cpu",
            1,
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        ),
        (
            "cpu",
            3,
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        ),
        ("nvidia-l4", 1, {"type": "Recreate"}),
        (
            "nvidia-l4",
            2,
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        ),
    ],
)
def test_the_rollout_never_needs_a_spare_gpu(
    config: OperatorConfig, gpu: str, replicas: int, expected: dict
) -> None:
    spec = make_spec(serving={"replicas": replicas, "maxModelLen": 2048})
    assert serving.strategy(sized(spec, config, gpu), replicas) == expected


def test_tensor_parallel_serving_gets_shared_memory_and_gpu_placement(
    config: OperatorConfig,
) -> None:
    spec = make_spec(serving={"gpu": {"product": "nvidia-l4", "count": 2}, "maxModelLen": 2048})
    sizing = sized(spec, config, "nvidia-l4", count=2)
    assert sizing.tensor_parallel_size == 2
    deployment = serving.deployment("t", "ml", spec, "w", "k", "s3://a/b/", 1, sizing, config)
    pod = deployment["spec"]["template"]["spec"]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "shm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert deployment["metadata"]["annotations"]["modelpress.dev/gpus"] == "2"


def test_the_spec_hash_follows_the_deployment_spec(config: OperatorConfig) -> None:
    spec = make_spec()
    one = serving.deployment(
        "t", "ml", spec, "w", "k1", "s3://a/b/", 1, sized(spec, config), config
    )
    same = serving.deployment(
        "t", "ml", spec, "w", "k1", "s3://a/b/", 1, sized(spec, config), config
    )
    other = serving.deployment(
        "t", "ml", spec, "w", "k2", "s3://a/c/", 1, sized(spec, config), config
    )
    hashes = [d["metadata"]["annotations"][names.ANNOTATION_SPEC_HASH] for d in (one, same, other)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_the_service_is_named_after_the_model() -> None:
    svc = serving.service("tiny", "ml")
    assert svc["metadata"]["name"] == "tiny"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert serving.endpoint("tiny", "ml") == "http://tiny.ml.svc:8000/v1"


def test_distillation_on_gpus_trains_on_them_one_process_each(config: OperatorConfig) -> None:
    """A GPU Job that distills trains on its GPUs: each holds the student's fp32 training
    state (16 bytes per parameter) and the bf16 teacher (2), so more GPUs take fewer
    rows each; the node's host memory holds each process's loaded copy (bf16 base,
    fp32 student: 6 bytes per parameter)."""
    distill = [{"name": "d", "distill": {"steps": 10, "studentLayers": 8, "batchSize": 4}}]
    teacher = ModelShape.from_config(SMOLLM2)
    params = teacher.parameter_count()
    student = teacher.model_copy(update={"num_hidden_layers": 8}).parameter_count()
    sized = {}
    for count in (1, 2):
        spec = make_spec(variants=distill, compression={"gpu": {"product": "nvidia-l4",
                                                                 "count": count}})  # fmt: skip
        sized[count] = compression_resources(
            spec, spec.variants[0], BASE.weights_bytes, SMOLLM2, config
        )
        assert sized[count].problem is None and sized[count].sharding == "replicate"
        assert sized[count].gpu_bytes > 16 * student + 2 * params
        assert sized[count].host_bytes >= 6 * params * count
    assert sized[2].gpu_bytes < sized[1].gpu_bytes, "two rows of the batch each, not four"
    assert sized[2].host_bytes > sized[1].host_bytes + 6 * params


LLAMA_8B = json.loads(
    (
        Path(__file__).resolve().parents[1] / "sizing" / "configs" / "Llama-3.1-8B-Instruct.json"
    ).read_text()
)


def test_a_student_larger_than_its_gpus_replicas_trains_sharded(config: OperatorConfig) -> None:
    """Llama-3.1-8B healed after an ffn-width prune, on one node of 8 H100s: a replica
    needs 8.0e9 x 18 bytes = 134 GiB per GPU, over the 79 GiB one has; split eight ways
    it needs about 20 GiB each. The Job says so to the compressor (`--sharding full`)."""
    variants = [{"name": "healed", "steps": [
        {"prune": {"method": "ffn-width", "fraction": 0.25}},
        {"distill": {"steps": 100, "batchSize": 8}},
    ]}]  # fmt: skip
    gpus = {"product": "nvidia-h100-80gb", "count": 8}
    spec = make_spec(variants=variants, compression={"gpu": gpus})
    variant = spec.variants[0]
    sized = compression_resources(spec, variant, 16 * GiB, LLAMA_8B, config)
    assert sized.problem is None and sized.sharding == "full"
    assert 15 * GiB < sized.gpu_bytes < 40 * GiB
    job = jobs.compress_job(
        "llama", "ml", spec, variant, "k" * 20, BASE.uri, "s3://a/", sized, config
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--sharding") + 1] == "full"
    assert args[:3] == ["--standalone", "--nproc-per-node", "8"]

    one = make_spec(variants=variants, compression={"gpu": {**gpus, "count": 1}})
    alone = compression_resources(one, one.variants[0], 16 * GiB, LLAMA_8B, config)
    assert alone.problem is not None and alone.sharding == "replicate"
    assert "on each of its 1 GPUs" in alone.problem.message
    assert "use more GPUs" in alone.problem.message


@pytest.mark.parametrize(("gpus", "batch", "fits"), [(2, 2, True), (8, 8, False)])
def test_distillation_after_quantization_trains_on_one_gpu(
    gpus: int, batch: int, fits: bool, config: OperatorConfig
) -> None:
    """Tuning the scales of Llama-3.1-8B after W4A16 with several H100s: the quantized student
    needs a third of a trained one's state and trains on rank 0 alone, the whole batch
    on one GPU (a gang ends at the quantize step), so it is sized for that."""
    variants = [{"name": "w4-tuned", "steps": [
        {"quantize": {"scheme": "W4A16"}},
        {"distill": {"steps": 100, "batchSize": batch}},
    ]}]  # fmt: skip
    spec = make_spec(variants=variants, compression={"gpu": {"product": "nvidia-h100-80gb",
                                                              "count": gpus}})  # fmt: skip
    sized = compression_resources(spec, spec.variants[0], 16 * GiB, LLAMA_8B, config)
    assert sized.sharding == "replicate"
    if fits:
        assert sized.problem is None
        return
    assert sized.problem is not None
    assert "needs 107.5 GiB on each of its 1 GPUs" in sized.problem.message
    assert "after quantize it trains on one GPU, so use a larger GPU" in sized.problem.message


def test_a_tuning_too_large_for_one_gpu_is_refused_though_the_healing_before_shards(
    config: OperatorConfig,
) -> None:
    """Healed sharded over 8 H100s, then quantized and tuned with a batch of 8: the tuning
    runs on rank 0 alone and needs more than one H100 has. The plan says so, rather than
    judging the chain by its sharded healing and leaving the tuning to run out of memory;
    the Job still shards the healing."""
    variants = [{"name": "slim-w4", "steps": [
        {"prune": {"method": "ffn-width", "fraction": 0.25}},
        {"distill": {"steps": 100, "batchSize": 8}},
        {"quantize": {"scheme": "W4A16"}},
        {"distill": {"steps": 100, "batchSize": 8}},
    ]}]  # fmt: skip
    spec = make_spec(variants=variants, compression={"gpu": {"product": "nvidia-h100-80gb",
                                                              "count": 8}})  # fmt: skip
    sized = compression_resources(spec, spec.variants[0], 16 * GiB, LLAMA_8B, config)
    assert sized.sharding == "full"
    assert sized.problem is not None and sized.problem.reason == "CompressionDoesNotFit"
    assert "on each of its 1 GPUs" in sized.problem.message
    assert "after quantize it trains on one GPU" in sized.problem.message


def test_a_replicated_distillation_keeps_its_job_name(config: OperatorConfig) -> None:
    """No `--sharding` argument unless sharded: Jobs planned before it existed are found
    again after an upgrade, not started anew."""
    distill = [{"name": "d", "distill": {"steps": 10, "studentLayers": 8, "batchSize": 4}}]
    spec = make_spec(variants=distill, compression={"gpu": {"product": "nvidia-l4", "count": 2}})
    job, sized = compress(spec, config, variant_index=0)
    assert sized.sharding == "replicate"
    assert "--sharding" not in job["spec"]["template"]["spec"]["containers"][0]["args"]
