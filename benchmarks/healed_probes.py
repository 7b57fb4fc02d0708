"""Two questions about the healed ffn33m models of the compression benchmark, asked
without training anything:

- **Soups.** Does averaging the weights of healings that differ only in their learning
  rate (one cut, one data order) beat each of them? Model soups and checkpoint averaging
  often generalize better than any one run.
- **Positions.** Where in a 512-token window is the healed model's loss? The healing
  trains on 256-token windows and the evaluation scores 512; if the second half lost
  more, training on longer windows would be the lever.

    python benchmarks/healed_probes.py --json results/healed-probes.json
    python benchmarks/healed_probes.py --soup ffn33m-t1-lr1e4,ffn33m-t1-lr5e4 \
        --positions ffn33m-t1-lr5e5

The models are the benchmark's own artifacts (`--work-dir`, artifact-files/NAME), made by
`benchmarks/compression.py --only NAME`. Judged in domain on held-out license text and
out of domain on this project's documentation (eval-docs.txt), as the benchmark judges.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "benchmarks"))

#: The learning-rate sweep's healed models: 1e-4 (CHAIN's), 5e-5 and 5e-4.
SOUPS = (
    ("ffn33m-t1-lr1e4", "ffn33m-t1-lr5e5"),
    ("ffn33m-t1-lr1e4", "ffn33m-t1-lr5e5", "ffn33m-t1-lr5e4"),
)
POSITIONS = "ffn33m-t1-lr1e4"
#: Token positions of the evaluation windows, [start, end) of the next-token targets.
BANDS = ((0, 64), (64, 128), (128, 256), (256, 384), (384, 511))
WEIGHTS_FILE = "model.safetensors"


def average(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The uniform average of state dicts of one architecture, computed in fp32 and kept
    in each tensor's dtype."""
    names = set(states[0])
    for state in states[1:]:
        if set(state) != names:
            raise ValueError("the models to average name different tensors: not one cut")
    return {
        name: (sum(state[name].float() for state in states) / len(states)).to(states[0][name].dtype)
        for name in states[0]
    }


def band_increases(base_nll: Any, variant_nll: Any) -> list[float]:
    """The perplexity increase over each of BANDS, from per-position NLL [windows, 511]."""
    return [
        math.expm1(float(variant_nll[:, lo:hi].mean() - base_nll[:, lo:hi].mean()))
        for lo, hi in BANDS
    ]


def position_nll(model: Any, windows: Any) -> Any:
    """Next-token NLL of `model` at every position of every window: [windows, length-1]."""
    import torch

    rows = []
    with torch.no_grad():
        for window in windows:
            logits = model(input_ids=window.unsqueeze(0), use_cache=False).logits[0, :-1]
            rows.append(
                torch.nn.functional.cross_entropy(logits.float(), window[1:], reduction="none")
            )
    return torch.stack(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--work-dir", type=Path, default=REPO / "results" / "compression-bench")
    parser.add_argument("--soup", action="append", help="comma-separated artifact names")
    parser.add_argument("--positions", action="append", help="an artifact name")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    import compression as bench
    from modelpress.compress.checkpoint import load_model, load_tokenizer
    from modelpress.compress.text import read_text, tokenize, windows

    torch.set_num_threads(2)
    work = args.work_dir.resolve()
    base_files = work / "base-files"
    soups = [tuple(s.split(",")) for s in args.soup] if args.soup else list(SOUPS)
    positions = args.positions or [POSITIONS]
    needed = sorted({name for soup in soups for name in soup} | set(positions))
    missing = [n for n in needed if not (work / "artifact-files" / n / WEIGHTS_FILE).is_file()]
    if missing or not base_files.is_dir():
        only = " ".join(f"--only {n}" for n in missing)
        print(
            f"error: {work} lacks the base model or the artifacts {', '.join(missing)}; make "
            f"them with: .venv/bin/python benchmarks/compression.py {only} --no-baseline",
            file=sys.stderr,
        )
        return 2

    judged = {"in domain": bench.EVALUATION, "out of domain": bench.OUT_OF_DOMAIN}

    def scores(directory: Path) -> dict[str, Any]:
        return {
            where: bench.measure(base_files, directory, evaluation, work / "cache")
            for where, evaluation in judged.items()
        }

    soup_rows = []
    for soup in soups:
        for members in [(name,) for name in soup] + [soup]:
            if any(row["models"] == list(members) for row in soup_rows):
                continue
            if len(members) == 1:  # a model alone: judged as the benchmark stored it
                found = scores(work / "artifact-files" / members[0])
            else:
                with tempfile.TemporaryDirectory() as scratch:
                    directory = Path(scratch)
                    for item in (work / "artifact-files" / members[0]).iterdir():
                        if item.name != WEIGHTS_FILE:
                            shutil.copy(item, directory / item.name)
                    states = [
                        load_file(work / "artifact-files" / n / WEIGHTS_FILE) for n in members
                    ]
                    save_file(average(states), directory / WEIGHTS_FILE, metadata={"format": "pt"})
                    found = scores(directory)
            soup_rows.append(
                {
                    "models": list(members),
                    **{f"{w} increase": found[w]["perplexityIncrease"] for w in found},
                    **{f"{w} KLD": found[w]["klDivergence"] for w in found},
                }
            )
            print(json.dumps(soup_rows[-1]), file=sys.stderr, flush=True)

    tokenizer = load_tokenizer(base_files)
    texts = {
        where: windows(
            tokenize(tokenizer, read_text(evaluation["dataset"]["uri"])),
            evaluation["samples"],
            evaluation["sequenceLength"],
            what=where,
        )
        for where, evaluation in judged.items()
    }
    base_model = load_model(base_files)
    base_nll = {where: position_nll(base_model, text) for where, text in texts.items()}
    del base_model
    position_rows = []
    for name in positions:
        model = load_model(work / "artifact-files" / name)
        for where, text in texts.items():
            increases = band_increases(base_nll[where], position_nll(model, text))
            position_rows.append({"model": name, "text": where, "increases": increases})

    print("\nsoups: the uniform average of healed models' weights (Δppl and KLD to the base)")
    print(f"{'models':<54} {'Δppl in':>9} {'KLD in':>7} {'Δppl ood':>9} {'KLD ood':>8}")
    for row in soup_rows:
        print(
            f"{' + '.join(row['models']):<54} {row['in domain increase']:>+9.2%} "
            f"{row['in domain KLD']:>7.4f} {row['out of domain increase']:>+9.2%} "
            f"{row['out of domain KLD']:>8.4f}"
        )
    print("\npositions: Δppl over each band of the 512-token windows (target positions)")
    header = " ".join(f"{f'{lo}-{hi}':>9}" for lo, hi in BANDS)
    print(f"{'model':<20} {'text':<14} {header}")
    for row in position_rows:
        cells = " ".join(f"{value:>+9.2%}" for value in row["increases"])
        print(f"{row['model']:<20} {row['text']:<14} {cells}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"bands": BANDS, "soups": soup_rows, "positions": position_rows}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
