"""Quality of a variant: perplexity on held-out text, greedy-token agreement and KL
divergence from the base model.

The evaluation text is cut into `samples` non-overlapping windows of
`sequenceLength` tokens (see `text.windows`); inside each window every token but
the first is predicted from those before it. The base model is scored on the same
windows, so the quality gate (perplexity increase = variant / base - 1) follows from
the manifest alone. Agreement is the share of those positions where the variant's
most likely next token is the base model's.

KL divergence KL(base ‖ variant) is what practitioners judge quantized models by: it
sees every change of the next-token distribution, where perplexity only sees the
probability of the one token the text has. The base model's distribution is kept as
its TOP_K most likely tokens plus one bucket for the rest, so the reference is a few
MB instead of the whole vocabulary per position; the divergence between the two
distributions so coarsened is a lower bound of the full one, and equals it when the
top tokens hold all the mass (tests/compress/test_evaluate.py measures the gap).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelpress.compress.progress import Progress

if TYPE_CHECKING:
    import torch

    from modelpress.storage import Credentials

#: Base-model tokens kept per position for the KL divergence.
TOP_K = 64
#: Changes when what a reference holds changes: older references are not reused.
REFERENCE_FORMAT = f"v2-top{TOP_K}"
REFERENCE_FILE = "scores.pt"
KL_PERCENTILE = 0.99


@dataclass(frozen=True)
class Scores:
    """A model's predictions on the evaluation windows."""

    nll_sum: float
    tokens: int
    argmax: torch.Tensor
    """[windows, sequence_length - 1] greedy next-token ids."""
    top_ids: torch.Tensor | None = None
    """The base model's TOP_K most likely next tokens, [windows, positions, TOP_K]."""
    top_logprobs: torch.Tensor | None = None
    """Their log-probabilities, same shape."""
    kl: torch.Tensor | None = None
    """A variant's KL(base ‖ variant) at every position, flattened (nats)."""

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_sum / self.tokens)


def kl_to_reference(
    logprobs: torch.Tensor, top_ids: torch.Tensor, top_logprobs: torch.Tensor
) -> torch.Tensor:
    """KL(base ‖ variant) per position, over the base's top tokens plus one bucket for
    every other token. `logprobs`: the variant's [positions, vocabulary]."""
    import torch

    tiny = 1e-12
    p_top = top_logprobs.exp()
    q_top_log = logprobs.gather(-1, top_ids.long())
    p_rest = (1 - p_top.sum(-1)).clamp_min(0)
    q_rest = (1 - q_top_log.exp().sum(-1)).clamp_min(tiny)
    top = (p_top * (top_logprobs - q_top_log)).sum(-1)
    rest = torch.where(
        p_rest > tiny,
        p_rest * (p_rest.clamp_min(tiny).log() - q_rest.log()),
        torch.zeros_like(p_rest),
    )
    return (top + rest).clamp_min(0)


def score(
    model: torch.nn.Module,
    windows: torch.Tensor,
    *,
    what: str,
    keep_top: bool = False,
    reference: Scores | None = None,
) -> Scores:
    """Summed next-token negative log-likelihood and greedy tokens of `model` on `windows`;
    with `keep_top`, its most likely tokens (a reference); with `reference`, the KL
    divergence from it at every position."""
    import torch

    nll_sum = 0.0
    greedy, top_ids, top_logprobs, kl = [], [], [], []
    progress = Progress(f"evaluating {what}", total=len(windows), unit="windows")
    model.eval()
    with torch.no_grad():
        for index, window in enumerate(windows):
            logits = model(input_ids=window.unsqueeze(0), use_cache=False).logits[0, :-1].float()
            targets = window[1:]
            nll_sum += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            greedy.append(logits.argmax(-1).to(torch.int32))
            if keep_top or reference is not None:
                logprobs = torch.log_softmax(logits, dim=-1)
            if keep_top:
                values, ids = logprobs.topk(min(TOP_K, logprobs.shape[-1]), dim=-1)
                top_ids.append(ids.to(torch.int32))
                top_logprobs.append(values)
            if reference is not None and reference.top_ids is not None:
                assert reference.top_logprobs is not None
                kl.append(
                    kl_to_reference(
                        logprobs, reference.top_ids[index], reference.top_logprobs[index]
                    )
                )
            progress.advance(1)
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    return Scores(
        nll_sum=nll_sum,
        tokens=tokens,
        argmax=torch.stack(greedy),
        top_ids=torch.stack(top_ids) if top_ids else None,
        top_logprobs=torch.stack(top_logprobs) if top_logprobs else None,
        kl=torch.cat(kl) if kl else None,
    )


def metrics(variant: Scores, base: Scores) -> dict[str, float]:
    """The manifest's `metrics`: perplexity, basePerplexity, perplexityIncrease, agreement,
    klDivergence (mean, nats per token) and klDivergenceP99."""
    import torch

    agreement = (variant.argmax == base.argmax).float().mean().item()
    found = {
        "perplexity": round(variant.perplexity, 6),
        "basePerplexity": round(base.perplexity, 6),
        "perplexityIncrease": round(variant.perplexity / base.perplexity - 1, 6),
        "agreement": round(agreement, 6),
    }
    if variant.kl is not None:
        # Six significant digits: an 8-bit variant's divergence is a few millionths.
        found["klDivergence"] = float(f"{variant.kl.mean().item():.6g}")
        found["klDivergenceP99"] = float(f"{torch.quantile(variant.kl, KL_PERCENTILE).item():.6g}")
    return found


def reference_key(base_identity: str, windows: torch.Tensor) -> str:
    """Names the base model's scores on exactly these windows."""
    digest = hashlib.sha256(f"{REFERENCE_FORMAT}\n{base_identity}".encode())
    digest.update(windows.numpy().tobytes())
    return digest.hexdigest()[:24]


def _as_scores(saved: dict[str, torch.Tensor]) -> Scores:
    return Scores(
        nll_sum=float(saved["nll_sum"]),
        tokens=int(saved["tokens"]),
        argmax=saved["argmax"],
        top_ids=saved["top_ids"],
        top_logprobs=saved["top_logprobs"],
    )


def load_reference(
    place: str | Path | None, key: str, credentials: Credentials | None = None
) -> Scores | None:
    """The base model's scores computed earlier on the same windows (see
    `compress.references`: a directory, or `<storage.uri>/evaluations/`)."""
    import torch

    from modelpress.compress.references import load_file

    data = load_file(place, key, REFERENCE_FILE, credentials)
    if data is None:
        return None
    return _as_scores(torch.load(io.BytesIO(data), weights_only=True))


def save_reference(
    place: str | Path | None, key: str, scores: Scores, credentials: Credentials | None = None
) -> None:
    """Keep the base model's scores for the next variant (see `load_reference`)."""
    import torch

    from modelpress.compress.references import save_file

    if place is None:
        return
    saved = {
        "nll_sum": torch.tensor(scores.nll_sum, dtype=torch.float64),
        "tokens": torch.tensor(scores.tokens),
        "argmax": scores.argmax,
        "top_ids": scores.top_ids,
        "top_logprobs": scores.top_logprobs,
    }
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    metadata = {"kind": "evaluation-reference", "format": REFERENCE_FORMAT}
    save_file(place, key, REFERENCE_FILE, buffer.getvalue(), metadata, credentials)
