"""`modelpress size`: manifest and config inputs, JSON output, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelpress.cli import main

CONFIGS = Path(__file__).parent / "configs"
LLAMA_8B = CONFIGS / "Llama-3.1-8B-Instruct.json"
SERVING = ["--max-model-len", "4096", "--max-num-seqs", "8"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["size", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_manifest(tmp_path: Path, weights_bytes: object, config: object) -> Path:
    path = tmp_path / "manifest.json"
    manifest = {
        "files": [],
        "totalBytes": 0,
        "createdAt": "2025-01-01T00:00:00Z",
        "metadata": {"weightsBytes": weights_bytes, "modelConfig": config},
    }
    path.write_text(json.dumps(manifest))
    return path


def test_config_and_scheme_print_a_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--config", str(LLAMA_8B), "--scheme", "W4A16", "--gpu", "nvidia-l4", *SERVING
    )
    assert code == 0
    assert "fits         yes" in out
    assert "KV cache" in out and "128.0 KiB/token" in out
    assert "--tensor-parallel-size 1" in out
    assert "nvidia.com/gpu.product=NVIDIA-L4" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--config", str(LLAMA_8B), "--scheme", "bf16", "--gpu", "nvidia-h100-80gb",
        *SERVING, "--kv-cache-dtype", "fp8", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["fits"] is True
    assert data["gpus"] == data["tensor_parallel_size"] == 1
    assert data["kv_cache_bytes"] == 8 * 4096 * 64 * 1024
    assert (
        data["total_bytes"]
        == data["weights_bytes"] + data["kv_cache_bytes"] + data["overhead_bytes"]
    )
    assert data["cpu_offload_gb"] == 0
    assert "--kv-cache-dtype" in data["vllm_args"]


def test_manifest_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = json.loads(LLAMA_8B.read_text())
    manifest = write_manifest(tmp_path, 5_700_000_000, config)
    code, out, _ = run(
        capsys, "--manifest", str(manifest), "--gpu", "nvidia-l4", *SERVING, "--json"
    )
    assert code == 0 and json.loads(out)["weights_bytes"] == 5_700_000_000
    code, out, _ = run(capsys, "--manifest", str(tmp_path), "--gpu", "cpu", *SERVING, "--json")
    assert code == 0 and "VLLM_CPU_KVCACHE_SPACE" in json.loads(out)["env"]


def test_not_fitting_exits_1_with_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--config", str(CONFIGS / "Llama-3.1-70B.json"), "--scheme", "bf16",
        "--gpu", "nvidia-l4", "--max-model-len", "32768", "--max-num-seqs", "8",
    )  # fmt: skip
    assert code == 1
    assert "fits         NO" in out and "GiB per GPU" in out


def test_cpu_offload_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--config", str(CONFIGS / "Llama-3.1-70B.json"), "--scheme", "bf16",
        "--gpu", "nvidia-l4", "--max-model-len", "32768", "--max-num-seqs", "8",
        "--allow-cpu-offload", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["cpu_offload_gb"] > 0
    assert "--cpu-offload-gb" in data["vllm_args"]


def test_gpu_catalog_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("gpuCatalog:\n  lab-gpu:\n    memory: 48Gi\n    productLabel: LAB\n")
    code, out, _ = run(
        capsys, "--config", str(LLAMA_8B), "--scheme", "bf16", "--gpu", "lab-gpu",
        "--gpu-catalog", str(values), *SERVING, "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["node_selector"] == {"nvidia.com/gpu.product": "LAB"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", str(LLAMA_8B), "--scheme", "W4A16", "--gpu", "nvidia-b300", *SERVING],
         "unknown GPU product 'nvidia-b300'; use one of: cpu, nvidia-a100-40gb"),
        (["--config", str(LLAMA_8B), "--scheme", "W2A2", "--gpu", "nvidia-l4", *SERVING],
         "unknown scheme 'W2A2'"),
        (["--config", str(LLAMA_8B), "--gpu", "nvidia-l4", *SERVING], "--config needs --scheme"),
        (["--config", str(LLAMA_8B), "--scheme", "bf16", "--gpu", "nvidia-l4",
          "--max-model-len", "200000", "--max-num-seqs", "1"],
         "exceeds the model's max_position_embeddings 131072"),
        (["--config", str(LLAMA_8B), "--scheme", "bf16", "--gpu", "nvidia-l4", *SERVING,
          "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--config", str(LLAMA_8B), "--scheme", "bf16", "--gpu", "nvidia-l4", *SERVING,
          "--kv-cache-dtype", "int4"], "unknown --kv-cache-dtype"),
        (["--config", "/nonexistent/config.json", "--scheme", "bf16", "--gpu", "nvidia-l4",
          *SERVING], "cannot read model config"),
        (["--config", str(LLAMA_8B), "--scheme", "FP8_DYNAMIC", "--group-size", "64",
          "--gpu", "nvidia-l4", *SERVING], "has no group size"),
    ],
)  # fmt: skip
def test_usage_errors_say_what_to_change(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("weights", "config", "message"),
    [
        (None, {}, "metadata.weightsBytes"),
        (10**9, None, "metadata.modelConfig"),
        (10**9, {"hidden_size": 8}, "num_hidden_layers"),
    ],
)
def test_bad_manifests(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    weights: object,
    config: object,
    message: str,
) -> None:
    manifest = write_manifest(tmp_path, weights, config)
    code, _, err = run(capsys, "--manifest", str(manifest), "--gpu", "nvidia-l4", *SERVING)
    assert code == 2 and message in err


def test_scheme_with_manifest_is_rejected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, 10**9, json.loads(LLAMA_8B.read_text()))
    code, _, err = run(
        capsys, "--manifest", str(manifest), "--scheme", "W4A16", "--gpu", "nvidia-l4", *SERVING
    )
    assert code == 2 and "drop them with --manifest" in err


def test_an_artifact_config_with_groups_per_width_sizes_with_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A default-group W4A16 SmolLM2 (64 on the 576-wide layers, 128 on down_proj), given
    again with its scheme: its own groups, so three GPUs split every layer in whole groups."""
    schemes = {
        "group_0": {"targets": ["Linear"], "weights": {"strategy": "group", "group_size": 64}},
        "group_1": {
            "targets": [f"model.layers.{i}.mlp.down_proj" for i in range(30)],
            "weights": {"strategy": "group", "group_size": 128},
        },
    }
    config = json.loads((CONFIGS / "SmolLM2-135M.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config | {"quantization_config": {"config_groups": schemes}}))
    argv = ["--config", str(path), "--scheme", "W4A16", "--gpu", "nvidia-l4", *SERVING]
    code, out, err = run(capsys, *argv, "--gpu-count", "3")
    assert (code, err) == (0, "")
    assert "tensor-parallel-size 3" in out
