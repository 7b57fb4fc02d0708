"""Quality of a variant: perplexity on held-out text and greedy-token agreement with the base.

The evaluation text is cut into `samples` non-overlapping windows of
`sequenceLength` tokens (see `text.windows`); inside each window every token but
the first is predicted from those before it. The base model is scored on the same
windows, so the quality gate (perplexity increase = variant / base - 1) follows from
the manifest alone. Agreement is the share of those positions where the variant's
most likely next token is the base model's.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.compress.progress import Progress

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """A model's predictions on the evaluation windows."""

    nll_sum: float
    tokens: int
    argmax: torch.Tensor
    """[windows, sequence_length - 1] greedy next-token ids."""

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_sum / self.tokens)


def score(model: torch.nn.Module, windows: torch.Tensor, *, what: str) -> Scores:
    """Summed next-token negative log-likelihood and greedy tokens of `model` on `windows`."""
    import torch

    nll_sum = 0.0
    greedy = []
    progress = Progress(f"evaluating {what}", total=len(windows), unit="windows")
    model.eval()
    with torch.no_grad():
        for window in windows:
            logits = model(input_ids=window.unsqueeze(0), use_cache=False).logits[0, :-1].float()
            targets = window[1:]
            nll_sum += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            greedy.append(logits.argmax(-1).to(torch.int32))
            progress.advance(1)
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    return Scores(nll_sum=nll_sum, tokens=tokens, argmax=torch.stack(greedy))


def metrics(variant: Scores, base: Scores) -> dict[str, float]:
    """The manifest's `metrics`: perplexity, basePerplexity, perplexityIncrease, agreement."""
    agreement = (variant.argmax == base.argmax).float().mean().item()
    return {
        "perplexity": round(variant.perplexity, 6),
        "basePerplexity": round(base.perplexity, 6),
        "perplexityIncrease": round(variant.perplexity / base.perplexity - 1, 6),
        "agreement": round(agreement, 6),
    }


def reference_key(base_identity: str, windows: torch.Tensor) -> str:
    """Names the base model's scores on exactly these windows."""
    digest = hashlib.sha256(base_identity.encode())
    digest.update(windows.numpy().tobytes())
    return digest.hexdigest()[:24]


def load_reference(cache_dir: Path | None, key: str) -> Scores | None:
    """The base model's scores computed earlier on the same windows, if cached."""
    import torch

    path = cache_dir / f"base-scores-{key}.pt" if cache_dir else None
    if path is None or not path.is_file():
        return None
    saved = torch.load(path, weights_only=True)
    log.info("reusing the base model's evaluation from %s", path)
    return Scores(
        nll_sum=float(saved["nll_sum"]), tokens=int(saved["tokens"]), argmax=saved["argmax"]
    )


def save_reference(cache_dir: Path | None, key: str, scores: Scores) -> None:
    import torch

    if cache_dir is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"base-scores-{key}.pt"
    partial = path.with_suffix(".partial")
    torch.save(
        {"nll_sum": scores.nll_sum, "tokens": scores.tokens, "argmax": scores.argmax}, partial
    )
    partial.replace(path)
