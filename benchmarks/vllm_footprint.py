"""Predicted serving memory against what a running vLLM server reported.

Reads an artifact's manifest (weights bytes, model config) and the log of a vLLM
server that served it (e.g. `modelpress run`'s <work>/<name>/logs/vllm.log),
sizes the variant for the `cpu` target with the same serving settings, and
prints predicted and reported weights and KV-cache tokens side by side.

    python benchmarks/vllm_footprint.py \\
        --manifest /var/tmp/modelpress/store/artifacts/<key>/manifest.json \\
        --log /var/tmp/modelpress/work/smollm2/logs/vllm.log \\
        --max-model-len 2048 --max-num-seqs 4 --json results/vllm_footprint.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modelpress.sizing import ModelShape, ServingSettings, size_variant
from modelpress.sizing.measured import compare_with_vllm, kv_cache_tokens, parse_vllm_log
from modelpress.sizing.units import GiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="the vLLM server's log")
    parser.add_argument("--max-model-len", type=int, required=True)
    parser.add_argument("--max-num-seqs", type=int, required=True)
    parser.add_argument("--json", type=Path, help="write the comparison here")
    args = parser.parse_args(argv)

    metadata = json.loads(args.manifest.read_text())["metadata"]
    shape = ModelShape.from_config(metadata["modelConfig"])
    settings = ServingSettings(max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs)
    sizing = size_variant(shape, metadata["weightsBytes"], settings, "cpu")
    report = parse_vllm_log(args.log.read_text(errors="replace"))
    if report.weights_bytes is None or report.kv_cache_tokens is None:
        print(f"{args.log}: no weights or KV-cache line found; is it a vLLM log?", file=sys.stderr)
        return 1
    comparison = compare_with_vllm(sizing, shape, report)
    # vLLM on CPU reserves exactly VLLM_CPU_KVCACHE_SPACE GiB; what that holds:
    reserved_gib = int(sizing.env["VLLM_CPU_KVCACHE_SPACE"])
    reserved_tokens = kv_cache_tokens(shape, reserved_gib * GiB)
    rows = [
        ("weights (bytes)", comparison.predicted_weights_bytes, comparison.reported_weights_bytes,
         "vLLM logs GiB to two decimals"),
        ("KV cache needed (tokens)", settings.max_num_seqs * settings.max_model_len, None,
         "maxNumSeqs x maxModelLen"),
        (f"KV cache in {reserved_gib} GiB (tokens)", reserved_tokens, report.kv_cache_tokens,
         "VLLM_CPU_KVCACHE_SPACE is whole GiB"),
    ]  # fmt: skip
    print(f"{'term':<28} {'predicted':>14} {'vLLM reported':>14} {'error':>8}  note")
    for term, predicted, reported, note in rows:
        error = f"{(predicted - reported) / reported:+.2%}" if reported else ""
        shown = f"{reported:,}" if reported is not None else "-"
        print(f"{term:<28} {predicted:>14,} {shown:>14} {error:>8}  {note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "comparison": comparison.model_dump(),
            "reservedKvCacheGiB": reserved_gib,
            "reservedKvCacheTokensPredicted": reserved_tokens,
            "kvCacheBytesPerToken": sizing.kv_cache_bytes_per_token,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
