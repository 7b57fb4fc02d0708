"""Calibration text the base model writes itself (`calibration.generated`).

Sampling the model's own next-token distribution (temperature 1) from its start token
gives text that is what the model finds likely: no data to find, nothing to license,
in no one domain. GPTQ, pruning scores and distillation then learn from it as from a
dataset. It is written once per (base model, seed, samples, length) and kept as a
reference (`compress.references`: `<storage.uri>/evaluations/<key>/`), token ids and
text, so every variant of the base learns from the same tokens and people can read
them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from modelpress.api.keys import content_key
from modelpress.compress.errors import CompressionError
from modelpress.compress.progress import Progress

if TYPE_CHECKING:
    import torch

    from modelpress.api.inputs import Calibration
    from modelpress.compress.request import Prepared

GENERATED_FORMAT = 1
GENERATED_FILE = "calibration.json"
#: Sequences sampled together: enough to keep the cores busy, few enough that the
#: KV cache of a large model stays small.
BATCH = 32


def generated_key(base_identity: str, calibration: Calibration) -> str:
    """Names the text one base model writes for these generation settings."""
    assert calibration.generated is not None
    settings = [calibration.generated.seed, calibration.samples, calibration.sequence_length]
    return content_key("generated-calibration", GENERATED_FORMAT, base_identity, settings)


def start_token(tokenizer: Any) -> int:
    """The token every sample starts after: the beginning-of-text token, else the
    end-of-text one (after which a model trained on packed documents starts a new one)."""
    for token in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    raise CompressionError(
        "the base model's tokenizer has neither a beginning- nor an end-of-text token to "
        "start generated calibration text from: give calibration.dataset instead",
        reason="InvalidBaseModel",
    )


def sample(
    model: torch.nn.Module, start: int, calibration: Calibration, *, what: str
) -> torch.Tensor:
    """[samples, sequence_length] token ids sampled from `model`, seeded."""
    import torch

    assert calibration.generated is not None
    generator = torch.Generator().manual_seed(calibration.generated.seed)
    samples, length = calibration.samples, calibration.sequence_length
    progress = Progress(what, total=samples * length, unit="tokens")
    batches = []
    with torch.inference_mode():
        for first in range(0, samples, BATCH):
            count = min(BATCH, samples - first)
            ids = torch.full((count, 1), start, dtype=torch.long)
            past = None
            written = []
            for _ in range(length):
                out = model(input_ids=ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                probabilities = torch.softmax(out.logits[:, -1, :].float(), dim=-1)
                ids = torch.multinomial(probabilities, 1, generator=generator)
                written.append(ids)
                progress.advance(count)
            batches.append(torch.cat(written, dim=1))
    return torch.cat(batches)


def generated_windows(
    model: torch.nn.Module,
    tokenizer: Any,
    calibration: Calibration,
    base_identity: str,
    cache: Any,
    credentials: Any = None,
) -> torch.Tensor:
    """The generated windows, read from `cache` when another Job of the base wrote them.

    Two Jobs that write at once publish to the same place, where the first one wins;
    each then reads back what was kept, so every variant learns from the same tokens."""
    from modelpress.compress.references import load_file, save_file

    key = generated_key(base_identity, calibration)
    kept = load_file(cache, key, GENERATED_FILE, credentials)
    if kept is None:
        tokens = sample(
            model, start_token(tokenizer), calibration, what="generating calibration text"
        )
        document = {
            "format": GENERATED_FORMAT,
            "seed": calibration.generated.seed,  # type: ignore[union-attr]
            "tokens": tokens.tolist(),
            "text": [tokenizer.decode(row) for row in tokens],
        }
        data = json.dumps(document, ensure_ascii=False).encode()
        save_file(cache, key, GENERATED_FILE, data, {"kind": "generated-calibration"}, credentials)
        kept = load_file(cache, key, GENERATED_FILE, credentials) or data
    vocabulary = model.get_input_embeddings().num_embeddings  # type: ignore[operator]
    return _windows(kept, calibration, int(vocabulary), where=f"{str(cache).rstrip('/')}/{key}/")


def _windows(data: bytes, calibration: Calibration, vocabulary: int, *, where: str) -> torch.Tensor:
    """The kept token ids, checked against the settings that name them."""
    import torch

    shape = (calibration.samples, calibration.sequence_length)
    try:
        tokens = torch.tensor(json.loads(data)["tokens"], dtype=torch.long)
    except (ValueError, KeyError, TypeError):
        tokens = None
    if (
        tokens is None
        or tuple(tokens.shape) != shape
        or tokens.min() < 0
        or tokens.max() >= vocabulary
    ):
        raise CompressionError(
            f"the generated calibration text kept at {where} is not {shape[0]} x {shape[1]} "
            f"token ids of this model: remove it, and the next Job writes it again",
            reason="InvalidDataset",
        )
    return tokens


def fill_generated_windows(
    prepared: Prepared, model: torch.nn.Module, cache: Any, credentials: Any = None
) -> None:
    """Give every step that learns from generated text its windows, written by `model`
    (the base model, before any step changes it); each distinct setting is written once.
    A step that also has a dataset gets both, alternating."""
    written: dict[str, torch.Tensor] = {}
    for planned in prepared.steps:
        if planned.calibration is None or planned.calibration.generated is None:
            continue
        calibration = planned.calibration.generated_part()
        key = generated_key(prepared.base.identity, calibration)
        if key not in written:
            written[key] = generated_windows(
                model, prepared.tokenizer, calibration, prepared.base.identity, cache, credentials
            )
        own = prepared.step_windows.get(planned.index)
        prepared.step_windows[planned.index] = (
            written[key] if own is None else alternate(own, written[key])
        )


def alternate(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Rows of `first` and `second` taken in turn (first's extra rows at the end), so any
    run of consecutive windows holds both kinds of text."""
    import torch

    both = min(len(first), len(second))
    paired = torch.stack([first[:both], second[:both]], dim=1).flatten(0, 1)
    return torch.cat([paired, first[both:], second[both:]])
