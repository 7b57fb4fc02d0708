"""How a variant answers chat prompts (spec.evaluation.chat), judged on the base model's
own answers.

The base model answers every prompt once, greedily, through its chat template; its
answer tokens and, at each of them, its TOP_K likeliest next tokens are kept as a
reference (`compress.references`) that every variant of the base reuses. A variant
reads the same prompt and answer (teacher forcing: one forward pass per prompt, no
generation) and is scored at every answer token by the KL divergence of its next-token
distribution from the base's (`evaluate.kl_to_reference`) and by whether its greedy
token is the base's. Perplexity on documents cannot see a variant that continues
documents well but has unlearned how to answer: this can.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelpress.api.keys import content_key
from modelpress.compress.errors import CompressionError
from modelpress.compress.evaluate import KL_PERCENTILE, TOP_K, kl_to_reference
from modelpress.compress.progress import Progress
from modelpress.compress.text import Problem, Text, json_lines, read_text

if TYPE_CHECKING:
    import torch

    from modelpress.api.spec import Chat
    from modelpress.storage import Credentials

#: Changes when what the kept answers mean changes.
ANSWERS_FORMAT = f"v1-greedy-top{TOP_K}"
ANSWERS_FILE = "chat-answers.pt"
PROMPT_SHAPE = '{"prompt": "..."}'
#: Prompts answered together: enough to keep the cores busy, few enough that the KV
#: cache of a large model stays small.
BATCH = 16


@dataclass(frozen=True)
class ChatPrompts:
    """The prompts of spec.evaluation.chat as read from their file."""

    text: Text
    prompts: tuple[str, ...]
    max_tokens: int


@dataclass(frozen=True)
class BaseAnswers:
    """The base model's answers: per prompt, the prompt's and the answer's token ids and,
    at every answer token, the base's TOP_K likeliest tokens and their log-probabilities."""

    prompt_ids: list[torch.Tensor]
    answer_ids: list[torch.Tensor]
    top_ids: list[torch.Tensor]
    top_logprobs: list[torch.Tensor]


def read_chat(chat: Chat, credentials: Credentials | None = None) -> ChatPrompts:
    text = read_text(chat.prompts.uri, credentials=credentials)
    where = f"evaluation.chat.prompts ({text.uri})"
    prompts = json_lines(text.content, _prompt, where=where, shape=PROMPT_SHAPE, items="prompts")
    return ChatPrompts(text, tuple(prompts[: chat.limit]), chat.max_tokens)


def _prompt(item: dict[str, Any], bad: Problem) -> str:
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad("prompt must be a non-empty string")
    return prompt


def check_chat_template(tokenizer: Any) -> None:
    """A base model without a chat template has no way of being asked."""
    if not getattr(tokenizer, "chat_template", None):
        raise CompressionError(
            "evaluation.chat needs a base model whose tokenizer has a chat template "
            "(chat_template in tokenizer_config.json or chat_template.jinja); this one has "
            "none: remove evaluation.chat, or use the model's instruct version",
            reason="InvalidBaseModel",
        )


def answers_key(base_identity: str, chat: ChatPrompts) -> str:
    """Names the base model's answers to exactly these prompts."""
    settings = [chat.text.sha256, len(chat.prompts), chat.max_tokens]
    return content_key("chat-answers", base_identity, ANSWERS_FORMAT, settings)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt as one user turn in the model's chat template, up to where it answers."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(token) for token in ids]


def stop_tokens(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    """Where an answer ends: the tokenizer's end token and the generation config's."""
    found = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found |= set(configured) if isinstance(configured, list) else {configured}
    return {int(token) for token in found if token is not None}


def answer_prompts(model: torch.nn.Module, tokenizer: Any, chat: ChatPrompts) -> BaseAnswers:
    """The base model's greedy answers (at most max_tokens each, ending at its stop token)
    and its distributions along them."""
    import torch

    prompts = [torch.tensor(prompt_ids(tokenizer, prompt)) for prompt in chat.prompts]
    answers = BaseAnswers([], [], [], [])
    progress = Progress("chat prompts: base model answers", total=len(prompts), unit="prompts")
    model.eval()
    with torch.inference_mode():
        for first in range(0, len(prompts), BATCH):
            batch = prompts[first : first + BATCH]
            for prompt, answer in zip(
                batch, greedy(model, tokenizer, batch, chat.max_tokens), strict=True
            ):
                logprobs = _answer_logprobs(model, prompt, answer)
                values, top = logprobs.topk(min(TOP_K, logprobs.shape[-1]), dim=-1)
                answers.prompt_ids.append(prompt)
                answers.answer_ids.append(answer)
                answers.top_ids.append(top.to(torch.int32))
                answers.top_logprobs.append(values)
                progress.advance(1)
    return answers


def greedy(
    model: torch.nn.Module, tokenizer: Any, prompts: list[torch.Tensor], max_tokens: int
) -> list[torch.Tensor]:
    """Each prompt's greedy continuation, written together (left-padded, so every prompt
    ends where writing starts), cut after its first stop token."""
    import torch
    from transformers import GenerationConfig

    stops = stop_tokens(model, tokenizer)
    longest = max(len(prompt) for prompt in prompts)
    pad = min(stops)
    ids = torch.full((len(prompts), longest), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = prompt
        mask[row, longest - len(prompt) :] = 1
    # A configuration of its own: greedy whatever the model's sampling settings say.
    settings = GenerationConfig(
        do_sample=False, max_new_tokens=max_tokens, eos_token_id=sorted(stops), pad_token_id=pad
    )
    written = model.generate(  # type: ignore[operator]
        input_ids=ids, attention_mask=mask, generation_config=settings
    )[:, longest:]
    answers = []
    for row in written.tolist():
        end = next((at + 1 for at, token in enumerate(row) if token in stops), len(row))
        answers.append(torch.tensor(row[:end]))
    return answers


def _answer_logprobs(
    model: torch.nn.Module, prompt: torch.Tensor, answer: torch.Tensor
) -> torch.Tensor:
    """[answer tokens, vocabulary]: the model's log-probabilities at every answer token,
    reading the prompt and the answer before it."""
    import torch

    ids = torch.cat([prompt, answer]).unsqueeze(0)
    logits = model(input_ids=ids, use_cache=False, logits_to_keep=len(answer) + 1).logits
    return torch.log_softmax(logits[0, :-1].float(), dim=-1)


def chat_score(model: torch.nn.Module, base: BaseAnswers) -> dict[str, Any]:
    """The status's `metrics.chat`: the variant's KL divergence from the base model and
    greedy-token agreement along the base's answers."""
    import torch

    divergences, agreed = [], 0
    progress = Progress("chat prompts: variant", total=len(base.answer_ids), unit="prompts")
    model.eval()
    with torch.inference_mode():
        for index, (prompt, answer) in enumerate(
            zip(base.prompt_ids, base.answer_ids, strict=True)
        ):
            logprobs = _answer_logprobs(model, prompt, answer)
            divergences.append(
                kl_to_reference(logprobs, base.top_ids[index], base.top_logprobs[index])
            )
            agreed += int((logprobs.argmax(-1) == answer).sum())
            progress.advance(1)
    kl = torch.cat(divergences)
    return {
        "klDivergence": float(f"{kl.mean().item():.6g}"),
        "klDivergenceP99": float(f"{torch.quantile(kl, KL_PERCENTILE).item():.6g}"),
        "agreement": round(agreed / len(kl), 6),
        "prompts": len(base.answer_ids),
        "tokens": len(kl),
    }


def load_base_answers(
    place: Any, key: str, prompts: int, credentials: Credentials | None = None
) -> BaseAnswers | None:
    """The answers kept by an earlier Job of the base, or None; `prompts` answers."""
    import torch

    from modelpress.compress.references import load_file

    data = load_file(place, key, ANSWERS_FILE, credentials)
    if data is None:
        return None
    try:
        kept = torch.load(io.BytesIO(data), weights_only=True)
        answers = BaseAnswers(
            kept["prompt_ids"], kept["answer_ids"], kept["top_ids"], kept["top_logprobs"]
        )
    except Exception:  # any unreadable file: what to do about it is the same
        answers = None
    if answers is None or len(answers.answer_ids) != prompts or not _consistent(answers):
        raise CompressionError(
            f"the base model's chat answers kept at {str(place).rstrip('/')}/{key}/ are not "
            f"{prompts} answers of the form this version writes: remove them, and the next "
            "Job writes them again",
            reason="InvalidDataset",
        )
    return answers


def _consistent(answers: BaseAnswers) -> bool:
    """Every list the same length; every answer's distributions one per answer token."""
    lists = (answers.prompt_ids, answers.answer_ids, answers.top_ids, answers.top_logprobs)
    if len({len(kept) for kept in lists}) != 1:
        return False
    return all(
        ids.shape[0] == top.shape[0] == values.shape[0] > 0
        for ids, top, values in zip(*lists[1:], strict=True)
    )


def save_base_answers(
    place: Any, key: str, answers: BaseAnswers, credentials: Credentials | None = None
) -> None:
    import torch

    from modelpress.compress.references import save_file

    buffer = io.BytesIO()
    torch.save(
        {
            "prompt_ids": answers.prompt_ids,
            "answer_ids": answers.answer_ids,
            "top_ids": answers.top_ids,
            "top_logprobs": answers.top_logprobs,
        },
        buffer,
    )
    metadata = {"kind": "chat-answers", "format": ANSWERS_FORMAT}
    save_file(place, key, ANSWERS_FILE, buffer.getvalue(), metadata, credentials)
