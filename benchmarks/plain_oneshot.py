"""The side-by-side rows: W4A16 GPTQ group 64 run by plain llmcompressor `oneshot`,
outside modelpress, on the same calibration windows, in a fresh process (so its time and
peak RSS are its own). Two ways: the same recipe modelpress runs (the model loaded in
fp32, the activation-weighted rounding-error-minimising observer), which measures what modelpress
adds around llmcompressor; and llmcompressor's own defaults (the model in bf16, its
min-max observer), which measures what modelpress's choices buy."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

CALIBRATION_SAMPLES = 32
SEQUENCE_LENGTH = 512


def run(
    base_files: str,
    calibration_uri: str,
    out_dir: str,
    threads: int,
    results: Any,
    same_recipe: bool,
) -> None:
    """Quantize `base_files` into `out_dir`; put {seconds, quantizeSeconds, peakRssBytes,
    quantizePeakRssBytes (the peak through quantization, before saving)}."""
    import torch

    torch.set_num_threads(threads)
    started = time.monotonic()
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationScheme,
        QuantizationStrategy,
        QuantizationType,
    )
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
    from modelpress.api.steps import QuantizeStep
    from modelpress.compress.quantize import weight_observer
    from modelpress.compress.text import read_text, tokenize, windows

    step = QuantizeStep(scheme="W4A16", algorithm="gptq", group_size=64)
    tokenizer = AutoTokenizer.from_pretrained(base_files)
    dtype = torch.float32 if same_recipe else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(base_files, dtype=dtype)
    cut = windows(
        tokenize(tokenizer, read_text(calibration_uri)),
        CALIBRATION_SAMPLES,
        SEQUENCE_LENGTH,
        what="calibration",
    )
    dataset = Dataset.from_dict({"input_ids": cut.tolist()})
    weights = QuantizationArgs(
        num_bits=4,
        type=QuantizationType.INT,
        symmetric=True,
        strategy=QuantizationStrategy.GROUP,
        group_size=64,
        **({"observer": weight_observer(step)} if same_recipe else {}),
    )
    recipe = GPTQModifier(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
        ignore=["lm_head"],
    )
    quantize_started = time.monotonic()
    oneshot(
        model=model,
        recipe=recipe,
        dataset=dataset,
        num_calibration_samples=CALIBRATION_SAMPLES,
        max_seq_length=SEQUENCE_LENGTH,
        shuffle_calibration_samples=False,
    )
    quantize_seconds = time.monotonic() - quantize_started
    quantize_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.to(torch.bfloat16)  # saved as modelpress saves: bf16 scales
    model.save_pretrained(out_dir, save_compressed=True)
    tokenizer.save_pretrained(out_dir)
    results.put(
        {
            "seconds": round(time.monotonic() - started, 1),
            "quantizeSeconds": round(quantize_seconds, 1),
            "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "quantizePeakRssBytes": quantize_peak,
        }
    )
