"""The side-by-side row: the same W4A16 GPTQ group-64 recipe run by plain llmcompressor
`oneshot`, outside modelpress, with llmcompressor's own defaults (its min-max weight
observer), on the same calibration windows. Run in a fresh process, so its time and
peak RSS are its own."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

CALIBRATION_SAMPLES = 32
SEQUENCE_LENGTH = 512


def run(base_files: str, calibration_uri: str, out_dir: str, threads: int, results: Any) -> None:
    """Quantize `base_files` into `out_dir`; put {seconds, quantizeSeconds, peakRssBytes}."""
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
    from modelpress.compress.text import read_text, tokenize, windows

    tokenizer = AutoTokenizer.from_pretrained(base_files)
    model = AutoModelForCausalLM.from_pretrained(base_files, dtype=torch.bfloat16)
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
    model.save_pretrained(out_dir, save_compressed=True)
    tokenizer.save_pretrained(out_dir)
    results.put(
        {
            "seconds": round(time.monotonic() - started, 1),
            "quantizeSeconds": round(quantize_seconds, 1),
            "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
    )
