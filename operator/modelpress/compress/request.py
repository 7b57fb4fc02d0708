"""A compression request checked before any heavy work: the API models parsed, the
chain resolved against the base model's config, the texts read, tokenized and cut
into windows. A bad request fails here in seconds, naming what to change.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from modelpress.api.inputs import Calibration
from modelpress.api.spec import Evaluation
from modelpress.api.steps import QuantizeStep, Variant
from modelpress.compress.base import Base, open_base
from modelpress.compress.chat import ChatPrompts, check_chat_template, read_chat
from modelpress.compress.errors import CompressionError
from modelpress.compress.preflight import PlannedStep, check_chain, resolve_chain
from modelpress.compress.tasks import TaskQuestions, read_task
from modelpress.compress.text import Text, check_disjoint, read_text, tokenize, windows
from modelpress.problems import describe as describe_problems

if TYPE_CHECKING:
    import torch


@dataclass
class Prepared:
    """A request that passed every check, with its data cut into windows."""

    base: Base
    variant: Variant
    evaluation: Evaluation
    steps: list[PlannedStep]
    config: Any
    tokenizer: Any
    evaluation_windows: torch.Tensor
    step_windows: dict[int, torch.Tensor] = field(default_factory=dict)
    tasks: list[TaskQuestions] = field(default_factory=list)
    chat: ChatPrompts | None = None


def parse_request(
    variant: Variant | Mapping[str, Any],
    evaluation: Evaluation | Mapping[str, Any],
    calibration: Calibration | Mapping[str, Any] | None,
) -> tuple[Variant, Evaluation, Calibration | None]:
    """The API models from wire JSON (camelCase dicts) or as given."""
    try:
        parsed_variant = (
            variant if isinstance(variant, Variant) else Variant.model_validate(variant)
        )
        parsed_evaluation = (
            evaluation
            if isinstance(evaluation, Evaluation)
            else Evaluation.model_validate(evaluation)
        )
        parsed_calibration = (
            calibration
            if calibration is None or isinstance(calibration, Calibration)
            else Calibration.model_validate(calibration)
        )
    except ValidationError as error:
        raise CompressionError(
            f"invalid {error.title}: {describe_problems(error, limit=1)}", reason="InvalidVariant"
        ) from None
    return parsed_variant, parsed_evaluation, parsed_calibration


def prepare(
    base_location: str,
    variant: Variant,
    evaluation: Evaluation,
    calibration: Calibration | None,
    scratch: Path,
    *,
    credentials: Any = None,
    shared_base: Path | None = None,
) -> Prepared:
    """Every check that needs no weights: config, chain, datasets, token counts.
    `shared_base`: where processes of one distributed run keep one copy of the base."""
    from transformers import AutoConfig

    from modelpress.compress.checkpoint import load_tokenizer
    from modelpress.compress.quantize import check_scheme

    steps = resolve_chain(variant, calibration)
    for planned in steps:
        if isinstance(planned.action, QuantizeStep):
            try:
                check_scheme(planned.action)
            except CompressionError as error:
                raise CompressionError(f"{planned.label}: {error}", reason=error.reason) from None
    base = open_base(base_location, scratch, credentials=credentials, shared=shared_base)
    config = AutoConfig.from_pretrained(base.directory)
    check_chain(config, steps, evaluation)

    texts: dict[str, Text] = {}
    for uri in [
        evaluation.dataset.uri,
        *(p.calibration.dataset.uri for p in steps if p.calibration and p.calibration.dataset),
    ]:
        if uri not in texts:
            texts[uri] = read_text(uri, credentials=credentials)
    held_out = texts[evaluation.dataset.uri]
    tasks = [read_task(task, credentials) for task in evaluation.tasks or []]
    chat = read_chat(evaluation.chat, credentials) if evaluation.chat else None
    unseen = [held_out, *(task.text for task in tasks), *([chat.text] if chat else [])]
    for planned in steps:
        if planned.calibration is not None and planned.calibration.dataset is not None:
            for text in unseen:
                check_disjoint(texts[planned.calibration.dataset.uri], text)

    tokenizer = load_tokenizer(base.directory)
    if chat:
        check_chat_template(tokenizer)
    tokens = {uri: tokenize(tokenizer, text) for uri, text in texts.items()}
    evaluation_windows = windows(
        tokens[held_out.uri],
        evaluation.samples,
        evaluation.sequence_length,
        what=f"evaluation dataset {held_out.uri}",
    )
    step_windows = {}  # generated text is written, or mixed in, once the base model is loaded
    for planned in steps:
        calib = planned.calibration
        if calib is None or calib.dataset is None:
            continue
        step_windows[planned.index] = windows(
            tokens[calib.dataset.uri],
            calib.dataset_samples,
            calib.sequence_length,
            what=f"{planned.label} calibration dataset {calib.dataset.uri}",
        )
    return Prepared(
        base,
        variant,
        evaluation,
        steps,
        config,
        tokenizer,
        evaluation_windows,
        step_windows,
        tasks,
        chat,
    )


def validate_variant(
    base: str,
    variant: Variant | Mapping[str, Any],
    evaluation: Evaluation | Mapping[str, Any],
    *,
    calibration: Calibration | Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    credentials: Any = None,
) -> str:
    """Run every check `compress_variant` runs before heavy work; returns a summary line.

    Only the base model's small files are read (config, tokenizer), never its weights.
    Raises `CompressionError` saying what to change.
    """
    parsed = parse_request(variant, evaluation, calibration)
    with tempfile.TemporaryDirectory(prefix="modelpress-check-", dir=work_dir) as temp:
        return describe(prepare(base, *parsed, Path(temp), credentials=credentials))


def describe(prepared: Prepared) -> str:
    chain = " -> ".join(p.kind for p in prepared.steps)
    return (
        f"variant {prepared.variant.name!r} ({chain}) of a {prepared.config.num_hidden_layers}-layer "
        f"{prepared.config.model_type} model; evaluation on {len(prepared.evaluation_windows)} windows "
        f"of {prepared.evaluation.sequence_length} tokens"
    )
