"""Ablation of the ffn-width cut on SmolLM2-135M-Instruct: the same cut without a
refit, with a plain ridge refit (pulled toward zero), with modelpress's (pulled
toward the sliced weights) and with modelpress's plus a bias on down_proj (`intercept`:
the mean output of the channels removed, as FLAP compensates it), for two amounts of
calibration text; and, with `--importance`, other ways to choose the channels kept.

    python benchmarks/ffn_refit.py --json results/ffn-refit.json
    python benchmarks/ffn_refit.py --samples 70 --pull 0.02 --pull 0.1 --pull 0.5
    python benchmarks/ffn_refit.py --samples 70 --fraction 0.33 --refit pulled \
        --importance activation --importance output --importance reconstruction
    python benchmarks/ffn_refit.py --samples 70 --fraction 0.33 --refit pulled \
        --refit intercept

(`--pull` sets the refit's pull, REFIT_PULL, for the pulled rows.) Importance:
`activation` is modelpress's (each channel's RMS activation); `output` weighs it by
the channel's down_proj column (the energy it adds to the MLP output); `reconstruction`
removes, one at a time, the channel whose loss the others' least-squares refit
compensates best (optimal brain surgeon on the output, as SparseGPT does for weights).

Calibration: license text (examples/data/calib.txt); judged in domain on held-out
license text and out of domain on this project's documentation (eval-docs.txt),
which no step sees. Uses the compression benchmark's base model and store
(`--work-dir`, made by benchmarks/compression.py if missing).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "benchmarks"))

FRACTION = 0.36
REFITS = ("none", "ridge", "pulled", "intercept")
SEQUENCE = 512
EVALUATION_SAMPLES = 12


#: The ridge rows' pull toward zero, as a share of the mean activation energy (the
#: default pull of modelpress's refit, toward the sliced weights).
RIDGE_PULL = 0.1


def ridge(down: Any, original: Any, gram: Any, channels: Any) -> None:
    """Least squares pulled toward zero: (G_KK + lambda I)^-1 G_K: W^T."""
    import torch

    g = gram.double()
    kk = g[channels][:, channels]
    pull = RIDGE_PULL * kk.diagonal().mean()
    system = kk + pull * torch.eye(len(channels), dtype=torch.float64)
    solved = torch.linalg.solve(system, g[channels] @ original.double().T).T
    with torch.no_grad():
        down.weight.copy_(solved.to(down.weight.dtype))


def with_intercept(mlp: Any, original: Any, augmented: Any, channels: Any) -> None:
    """modelpress's refit with a constant input beside the kept channels: `augmented` is
    the Gram matrix of [A, 1] (its last row holds the activations' sums and the token
    count), and the constant's weights become down_proj's bias."""
    import torch

    import modelpress.compress.prune as pruning  # read now: --pull may have changed it

    width = original.shape[1]
    g = augmented.double()
    kept = torch.cat([channels, torch.tensor([width])])
    kk = g[kept][:, kept]
    pull = pruning.REFIT_PULL * kk.diagonal()[:-1].mean()
    zero_bias = torch.zeros(len(original), 1, dtype=torch.float64)
    target = torch.cat([original.double()[:, channels], zero_bias], 1)
    rhs = g[kept][:, :width] @ original.double().T + pull * target.T
    # The bias is not pulled: a mean over every calibration token, it has nothing to learn
    # by heart.
    pulled = torch.ones(len(kept), dtype=torch.float64)
    pulled[-1] = 0
    solved = torch.linalg.solve(kk + pull * torch.diag(pulled), rhs).T
    down = torch.nn.Linear(len(channels), len(original), bias=True)
    with torch.no_grad():
        down.weight.copy_(solved[:, :-1].float())
        down.bias.copy_(solved[:, -1].float())
    mlp.down_proj = down


def augmented_grams(model: Any, windows: Any) -> list[Any]:
    """Per block, the Gram matrix of [A, 1] for A the input of down_proj, in fp64."""
    import torch

    from modelpress.compress.architecture import decoder_layers, mlp_projections
    from modelpress.compress.prune import score_windows

    layers = decoder_layers(model, purpose="ablation")
    downs = [mlp_projections(layer, index)[2] for index, layer in enumerate(layers)]
    grams = [torch.zeros(d.in_features + 1, d.in_features + 1, dtype=torch.float64) for d in downs]

    def hook_for(position: int) -> Any:
        def hook(module: Any, args: tuple) -> None:
            a = args[0].detach().double().reshape(-1, args[0].shape[-1])
            a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
            grams[position].addmm_(a.T, a)

        return hook

    handles = [down.register_forward_pre_hook(hook_for(p)) for p, down in enumerate(downs)]
    score_windows(model, windows, handles, "ffn-width statistics with an intercept")
    return grams


def by_activation(gram: Any, down: Any, kept: int) -> Any:
    """modelpress's: the channels of highest RMS activation."""
    from modelpress.compress.prune import strongest_channels

    return strongest_channels(gram.diagonal(), kept)


def by_output(gram: Any, down: Any, kept: int) -> Any:
    """The channels adding most energy to the MLP output: mean a_i^2 times |W[:, i]|^2."""
    from modelpress.compress.prune import strongest_channels

    return strongest_channels(gram.diagonal() * down.float().pow(2).sum(0), kept)


#: Damping of the Gram matrix the reconstruction order inverts, as a share of its mean
#: diagonal (GPTQ's and SparseGPT's 1 %).
DAMPING = 0.01


def by_reconstruction(gram: Any, down: Any, kept: int) -> Any:
    """Greedy backward selection: remove the channel j of least ||X[:, j]||^2 / Hinv[j, j]
    (the output error left after the other channels' refit X absorbs it), update X and
    the inverse, repeat."""
    import torch

    width = gram.shape[0]
    hessian = gram.double() + DAMPING * gram.diagonal().double().mean() * torch.eye(
        width, dtype=torch.float64
    )
    inverse = torch.linalg.inv(hessian)
    refit = down.double().clone()  # [hidden, width]
    alive = torch.ones(width, dtype=torch.bool)
    for _ in range(width - kept):
        cost = refit.pow(2).sum(0) / inverse.diagonal()
        cost[~alive] = math.inf
        j = int(cost.argmin())
        refit -= torch.outer(refit[:, j], inverse[j]) / inverse[j, j]
        inverse -= torch.outer(inverse[:, j], inverse[j]) / inverse[j, j]
        alive[j] = False
        refit[:, j] = 0
    return alive.nonzero().flatten()


IMPORTANCE = {
    "activation": by_activation,
    "output": by_output,
    "reconstruction": by_reconstruction,
}


def cut(model: Any, windows: Any, refit: str, importance: str, fraction: float) -> None:
    """ffn-width `fraction`, the channels chosen by `importance`, with the given refit:
    none, ridge, or modelpress's own."""
    from modelpress.api.steps import PruneStep
    from modelpress.compress.architecture import decoder_layers, mlp_projections
    from modelpress.compress.prune import ffn_grams, narrow_mlp, prune, refit_down_proj
    from modelpress.sizing.chain import ffn_channels_kept

    if refit == "pulled" and importance == "activation":  # modelpress's code path itself
        prune(model, PruneStep(method="ffn-width", fraction=fraction), windows)
        return
    layers = decoder_layers(model, purpose="ablation")
    width = mlp_projections(layers[0], 0)[2].in_features
    kept = ffn_channels_kept(width, fraction)
    if refit == "intercept":
        augmented = augmented_grams(model, windows)
        grams = [g[:width, :width].float() for g in augmented]
    else:
        grams = ffn_grams(model, windows, list(range(len(layers))))
    for index, (layer, gram) in enumerate(zip(layers, grams, strict=True)):
        original = mlp_projections(layer, index)[2].weight.detach().clone()
        channels = IMPORTANCE[importance](gram, original, kept)
        narrow_mlp(layer, index, channels)
        if refit == "intercept":
            with_intercept(layer.mlp, original, augmented[index], channels)
        elif refit == "ridge":
            ridge(mlp_projections(layer, index)[2], original, gram, channels)
        elif refit == "pulled":
            refit_down_proj(mlp_projections(layer, index)[2], original, gram, channels)
    model.config.intermediate_size = kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--work-dir", type=Path, default=REPO / "results" / "compression-bench")
    parser.add_argument("--samples", type=int, action="append", help="calibration windows")
    parser.add_argument("--pull", type=float, action="append", help="REFIT_PULL values to try")
    parser.add_argument("--fraction", type=float, default=FRACTION, help="of the MLP channels")
    parser.add_argument("--refit", choices=REFITS, action="append", help="refits to try")
    parser.add_argument(
        "--importance", choices=sorted(IMPORTANCE), action="append", help="channel choices"
    )
    args = parser.parse_args(argv)

    import torch

    import compression as bench
    import modelpress.compress.prune as pruning
    from modelpress.compress.checkpoint import load_model, load_tokenizer
    from modelpress.compress.evaluate import score
    from modelpress.compress.text import read_text, tokenize, windows
    from modelpress.storage import fetch

    torch.set_num_threads(2)
    work = args.work_dir.resolve()
    base_files = work / "base-files"
    if not base_files.is_dir():
        fetch(bench.prepare_base(f"file://{work}/store/"), base_files)
    tokenizer = load_tokenizer(base_files)

    def cut_text(name: str, samples: int) -> Any:
        text = read_text(f"file://{bench.DATA / name}")
        return windows(tokenize(tokenizer, text), samples, SEQUENCE, what=name)

    judged = {
        "in domain": cut_text("eval.txt", EVALUATION_SAMPLES),
        "out of domain": cut_text("eval-docs.txt", EVALUATION_SAMPLES),
    }

    def perplexities(model: Any) -> dict[str, float]:
        found = {}
        for where, text in judged.items():
            scores = score(model, text, what=where)
            found[where] = math.exp(scores.nll_sum / scores.tokens)
        return found

    base = perplexities(load_model(base_files).float())
    rows = []
    for samples in args.samples or [12, 70]:
        calibration = cut_text("calib.txt", samples)
        refits = args.refit or list(REFITS)
        trials = [(refit, None) for refit in refits if refit != "pulled"]
        if "pulled" in refits:
            trials += [("pulled", pull) for pull in args.pull or [pruning.REFIT_PULL]]
        for (refit, pull), importance in itertools.product(
            trials, args.importance or ["activation"]
        ):
            if pull is not None:
                pruning.REFIT_PULL = pull
            model = load_model(base_files).float()
            started = time.monotonic()
            cut(model, calibration, refit, importance, args.fraction)
            seconds = time.monotonic() - started
            found = perplexities(model)
            rows.append(
                {
                    "samples": samples,
                    "refit": refit if pull is None else f"pulled {pull}",
                    "importance": importance,
                    "seconds": round(seconds, 1),
                    **{
                        f"{where} increase": round(found[where] / base[where] - 1, 4)
                        for where in judged
                    },
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nffn-width {args.fraction}, calibration x {SEQUENCE} tokens of license text")
    print(
        f"{'samples':>7}  {'refit':<12} {'importance':<14} {'seconds':>7}  "
        f"{'Δppl in':>9}  {'Δppl ood':>9}"
    )
    for row in rows:
        print(
            f"{row['samples']:>7}  {row['refit']:<12} {row['importance']:<14} "
            f"{row['seconds']:>7.1f}  "
            f"{row['in domain increase']:>+9.2%}  {row['out of domain increase']:>+9.2%}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"base": base, "fraction": args.fraction, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
