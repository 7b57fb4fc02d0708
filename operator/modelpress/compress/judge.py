"""A saved variant judged against its base model: perplexity, agreement and KL divergence
on the evaluation windows, accuracy on the tasks, and how it answers the chat prompts.

What the base model scored (its distributions on the windows, its task answers, its
chat answers) is kept in a cache (`compress.references`) by the first Job of the base
and reused by every other, so the base is loaded only when something is missing.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from modelpress.compress.chat import ChatPrompts
    from modelpress.compress.request import Prepared
    from modelpress.compress.tasks import TaskQuestions


def evaluate_saved(
    prepared: Prepared, saved: Path, cache: str | Path | None, credentials: Any = None
) -> dict[str, Any]:
    """Metrics of the saved variant against the base model on the request's evaluation."""
    return evaluate_against_base(
        prepared.base.directory,
        prepared.base.identity,
        saved,
        prepared.evaluation_windows,
        prepared.tasks,
        prepared.tokenizer,
        cache,
        credentials,
        chat=prepared.chat,
    )


def evaluate_against_base(
    base_directory: Path,
    base_identity: str,
    saved: Path,
    windows: torch.Tensor,
    tasks: list[TaskQuestions],
    tokenizer: Any,
    cache: str | Path | None,
    credentials: Any = None,
    *,
    chat: ChatPrompts | None = None,
) -> dict[str, Any]:
    """The variant at `saved` scored against the base model at `base_directory` (named by
    `base_identity` in the cache)."""
    from modelpress.compress import chat as chats
    from modelpress.compress import evaluate
    from modelpress.compress import tasks as choices
    from modelpress.compress.checkpoint import load_model

    reference_key = evaluate.reference_key(base_identity, windows)
    reference = evaluate.load_reference(cache, reference_key, credentials)
    tasks_key = choices.answers_key(base_identity, tasks)
    base_picks = choices.load_base_answers(cache, tasks_key, credentials) if tasks else []
    chat_key = chats.answers_key(base_identity, chat) if chat else ""
    base_chat = (
        chats.load_base_answers(cache, chat_key, len(chat.prompts), credentials) if chat else None
    )
    if reference is None or base_picks is None or (chat and base_chat is None):
        base_model = load_model(base_directory)
        if reference is None:
            reference = evaluate.score(base_model, windows, what="base model", keep_top=True)
            evaluate.save_reference(cache, reference_key, reference, credentials)
        if base_picks is None:
            base_picks = [
                choices.answer(base_model, tokenizer, t, what="base model") for t in tasks
            ]
            choices.save_base_answers(cache, tasks_key, base_picks, credentials)
        if chat and base_chat is None:
            base_chat = chats.answer_prompts(base_model, tokenizer, chat)
            chats.save_base_answers(cache, chat_key, base_chat, credentials)
        del base_model
        gc.collect()
    variant_model = load_model(saved)
    result = evaluate.score(variant_model, windows, what="variant", reference=reference)
    picked = [choices.answer(variant_model, tokenizer, task, what="variant") for task in tasks]
    answered = chats.chat_score(variant_model, base_chat) if base_chat else None
    del variant_model
    gc.collect()
    measured: dict[str, Any] = dict(evaluate.metrics(result, reference))
    if tasks:
        measured["tasks"] = choices.task_scores(picked, base_picks, tasks)
    if answered:
        measured["chat"] = answered
    return measured
