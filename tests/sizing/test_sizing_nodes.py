"""Past one node: tensor parallel within each node, pipeline parallel across nodes.

The expected answers, and why:
- Llama-3.1-405B in BF16 is 756 GiB of weights; eight H100s give 8 x 71.2 = 570 GiB
  (gpuMemoryUtilization 0.9): no single node holds it. Two nodes at TP 8 x PP 2 give
  each GPU 63 of the 126 layers' eighth plus one embedding matrix: 47 GiB of weights.
  This is the deployment Meta documents for 405B in BF16 (16 H100s).
- In W4A16 the same model is 201 GiB: one node of four H100s holds it with a short
  context, and nothing spans nodes that does not have to.
- Qwen3-235B-A22B (128 experts, 8 active) in BF16 is 438 GiB: eight L40S give 320 GiB,
  so two nodes; pipeline stages split its 94 layers 47 + 47.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelpress.sizing import ModelShape, ServingSettings, predict_weights_bytes, size_variant
from modelpress.sizing.catalog import find_gpu
from modelpress.sizing.nodes import plan_nodes, stage_memory
from modelpress.sizing.units import GiB

CONFIGS = Path(__file__).with_name("configs")
SHORT = ServingSettings(max_model_len=8192, max_num_seqs=16)


def shape(name: str) -> ModelShape:
    return ModelShape.from_config(json.loads((CONFIGS / f"{name}.json").read_text()))


def sized(name: str, scheme: str, gpu: str, max_nodes: int = 4, **kwargs):
    model = shape(name)
    return size_variant(
        model, predict_weights_bytes(model, scheme), SHORT, gpu, max_nodes=max_nodes, **kwargs
    )


def test_405b_in_bf16_spans_two_h100_nodes() -> None:
    result = sized("Llama-3.1-405B", "BF16", "nvidia-h100-80gb")
    assert result.fits
    assert (result.nodes, result.tensor_parallel_size, result.pipeline_parallel_size) == (2, 8, 2)
    assert result.gpus == 16
    assert result.vllm_args[-2:] == ["--pipeline-parallel-size", "2"]
    assert result.resources["limits"]["nvidia.com/gpu"] == "8", "one pod per node"
    stage = result.per_device
    assert 45 * GiB < stage.weights_bytes < 49 * GiB
    assert stage.total_bytes <= stage.budget_bytes
    assert "2 nodes of 8x nvidia-h100-80gb" in result.reason


def test_405b_in_w4a16_stays_on_one_node() -> None:
    result = sized("Llama-3.1-405B", "W4A16", "nvidia-h100-80gb")
    assert result.fits and result.nodes == 1 and result.pipeline_parallel_size == 1
    assert "--pipeline-parallel-size" not in result.vllm_args


def test_a_large_moe_in_bf16_spans_two_l40s_nodes() -> None:
    result = sized("Qwen3-235B-A22B", "BF16", "nvidia-l40s")
    assert result.fits and (result.nodes, result.tensor_parallel_size) == (2, 8)


def test_without_permission_to_span_nodes_it_says_how_many_it_would_need() -> None:
    result = sized("Llama-3.1-405B", "BF16", "nvidia-h100-80gb", max_nodes=1)
    assert not result.fits and result.nodes == 1
    assert "let it span 2 nodes of 8x nvidia-h100-80gb" in result.reason
    assert "serving.maxNodes: 2" in result.reason


def test_a_fixed_gpu_count_is_never_spread_over_nodes() -> None:
    result = sized("Llama-3.1-405B", "BF16", "nvidia-h100-80gb", gpu_count=8)
    assert not result.fits and result.nodes == 1


def test_more_nodes_than_allowed_is_no_fit() -> None:
    result = sized("Llama-3.1-405B", "BF16", "nvidia-a100-40gb", max_nodes=2)
    assert not result.fits and "let it span 4 nodes" in result.reason


def test_a_stage_holds_its_layers_and_one_embedding() -> None:
    model = shape("Llama-3.1-405B")
    weights = predict_weights_bytes(model, "BF16")
    target = find_gpu("nvidia-h100-80gb")
    one_node = stage_memory(model, weights, SHORT, target, 8, 1)
    two = stage_memory(model, weights, SHORT, target, 8, 2)
    embedding = model.vocab_size * model.hidden_size * 2
    layers = (weights - 2 * embedding) / model.num_hidden_layers
    assert two.weights_bytes == pytest.approx((63 * layers + embedding) / 8, rel=1e-6)
    assert two.kv_cache_bytes == pytest.approx(one_node.kv_cache_bytes / 2, rel=1e-3)


def test_pipeline_stages_never_outnumber_layers() -> None:
    model = shape("SmolLM2-135M")
    huge = ServingSettings(max_model_len=8192, max_num_seqs=4096)
    assert plan_nodes(model, 10**8, huge, find_gpu("nvidia-t4"), max_nodes=64) is None
