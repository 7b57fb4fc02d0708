"""Multiple-choice accuracy on the tasks of spec.evaluation.tasks.

A task file has one question per line: `{"context": "...", "choices": ["...", ...],
"answer": 0}` (other keys are ignored). The model's answer is the choice with the
highest log-likelihood after the context per byte of the choice, lm-evaluation-harness's
acc_norm: the sum alone would favour short choices. The choice's tokens are those that
tokenizing context + choice adds to the context's own, as the harness does, so a word
split differently at the boundary is scored as the model reads it.

Accuracy is reported with the base model's on the same questions and their ratio, the
"recovery" the published quantized checkpoints are judged by. The base model's answers
are kept as a reference (`compress.references`) and reused by every variant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelpress.api.keys import content_key
from modelpress.api.spec import Task
from modelpress.compress.errors import CompressionError
from modelpress.compress.progress import Progress
from modelpress.compress.text import Problem, Text, json_lines, read_text

if TYPE_CHECKING:
    import torch

    from modelpress.storage import Credentials

#: Changes when what the base model's kept answers mean changes.
ANSWERS_FORMAT = "v1-acc-norm"
ANSWERS_FILE = "answers.json"
#: Tokens one question may take (context cut from the left beyond it).
MAX_TOKENS = 2048


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class TaskQuestions:
    """A task's questions as read from its file."""

    name: str
    text: Text
    questions: tuple[Question, ...]


def read_task(task: Task, credentials: Credentials | None = None) -> TaskQuestions:
    text = read_text(task.dataset.uri, credentials=credentials)
    questions = parse_questions(text.content, where=f"evaluation task {task.name!r} ({text.uri})")
    return TaskQuestions(task.name, text, tuple(questions[: task.limit]))


QUESTION_SHAPE = '{"context": "...", "choices": ["...", "..."], "answer": 0}'


def parse_questions(content: str, *, where: str) -> list[Question]:
    """Every question of a JSON lines task file; blank lines are skipped. Each mistake
    names its line and what to change."""
    return json_lines(content, _question, where=where, shape=QUESTION_SHAPE, items="questions")


def _question(item: dict[str, Any], bad: Problem) -> Question:
    context, choices, answer = item.get("context"), item.get("choices"), item.get("answer")
    if not isinstance(context, str) or not context.strip():
        raise bad("context must be a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2:
        raise bad("choices must be a list of at least two strings")
    if not all(isinstance(choice, str) and choice.strip() for choice in choices):
        raise bad("every choice must be a non-empty string")
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise bad("answer must be the index of the right choice (an integer)")
    if not 0 <= answer < len(choices):
        raise bad(f"answer {answer} is not the index of one of the {len(choices)} choices")
    return Question(context, tuple(choices), answer)


def cloze_questions(
    text: str, count: int, *, context_words: int = 24, answer_words: int = 4, choices: int = 4
) -> list[dict[str, Any]]:
    """A multiple-choice task made from held-out text, for when no task file exists: each
    question is a paragraph's first words, its next `answer_words` words the right
    choice, and the same span of other paragraphs the wrong ones. The right choice is at
    a position that cycles, so always answering the same position scores 1 / choices.
    Deterministic: the same text always gives the same questions."""
    span = context_words + answer_words
    paragraphs = [p.split() for p in text.split("\n\n")]
    usable = [words for words in paragraphs if len(words) >= span]
    if len(usable) < max(count, choices):
        raise CompressionError(
            f"the text has {len(usable)} paragraphs of at least {span} words; "
            f"{max(count, choices)} are needed for {count} questions",
            reason="DatasetTooSmall",
        )

    def tail(words: list[str]) -> str:
        return " " + " ".join(words[context_words:span])

    questions = []
    for index in range(count):
        words = usable[index]
        wrong = [tail(usable[(index + k) % len(usable)]) for k in range(1, len(usable))]
        distinct = list(dict.fromkeys(w for w in wrong if w != tail(words)))[: choices - 1]
        right_at = index % choices
        options = [*distinct[:right_at], tail(words), *distinct[right_at:]]
        context = " ".join(words[:context_words])
        questions.append({"context": context, "choices": options, "answer": right_at})
    return questions


def answers_key(base_identity: str, tasks: list[TaskQuestions]) -> str:
    """Names the base model's answers to exactly these questions."""
    return content_key(
        "task-answers",
        base_identity,
        ANSWERS_FORMAT,
        [(t.name, t.text.sha256, len(t.questions)) for t in tasks],
    )


def answer(model: torch.nn.Module, tokenizer: Any, task: TaskQuestions, *, what: str) -> list[int]:
    """The index of the choice `model` picks for every question of `task`."""
    import torch

    picked = []
    progress = Progress(f"task {task.name}: {what}", total=len(task.questions), unit="questions")
    model.eval()
    with torch.no_grad():
        for question in task.questions:
            scores = choice_scores(model, tokenizer, question)
            picked.append(max(range(len(scores)), key=scores.__getitem__))
            progress.advance(1)
    return picked


def choice_scores(model: torch.nn.Module, tokenizer: Any, question: Question) -> list[float]:
    """Log-likelihood of each choice after the context, per byte of the choice.

    The context is read once: the tokens every choice's row shares (all but the last)
    go through the model once, and the rest of every row, one row per choice, through
    one batched pass over that cache. Rows are right-padded, which a causal model never
    reads, so each score is what a pass over its own row alone would give."""
    import torch

    rows = choice_rows(tokenizer, question)
    shared = min(_shared_prefix(rows[0][0], prompt) for prompt, _ in rows)
    cached = max(shared - 1, 0)  # the last shared token's logits predict a choice
    cache = None
    if cached:
        prefix = torch.tensor([rows[0][0][:cached]])
        cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(rows))
    rests = [prompt[cached:] + continuation for prompt, continuation in rows]
    longest = max(len(rest) for rest in rests)
    tokens = torch.tensor([rest + [0] * (longest - len(rest)) for rest in rests])
    # where each row's first choice token is predicted; only the logits from there on
    starts = [len(prompt) - cached - 1 for prompt, _ in rows]
    kept_from = min(starts)
    logits = model(
        input_ids=tokens,
        past_key_values=cache,
        use_cache=cache is not None,
        logits_to_keep=longest - kept_from,
    ).logits
    scores = []
    for row, ((_, continuation), choice) in enumerate(zip(rows, question.choices, strict=True)):
        start = starts[row] - kept_from
        predicting = logits[row, start : start + len(continuation)].float()
        logprobs = torch.log_softmax(predicting, dim=-1)
        total = logprobs[torch.arange(len(continuation)), torch.tensor(continuation)].sum()
        scores.append(total.item() / max(len(choice.encode("utf-8")), 1))
    return scores


def choice_rows(tokenizer: Any, question: Question) -> list[tuple[list[int], list[int]]]:
    """(prompt, continuation) token ids per choice: the continuation is what tokenizing
    context + choice adds to the context's own tokens; the prompt is cut from the left
    to fit."""
    context = question.context.rstrip(" ")
    moved = question.context[len(context) :]  # trailing spaces belong to the choice
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    rows = []
    for choice in question.choices:
        whole = tokenizer.encode(context + moved + choice, add_special_tokens=False)
        shared = _shared_prefix(context_ids, whole)
        continuation = whole[shared:]
        if not shared or not continuation:  # the choice merged into the context's tokens
            shared = len(context_ids)
            continuation = tokenizer.encode(choice, add_special_tokens=False)
        room = MAX_TOKENS - len(continuation)  # for the context: at least one token
        if room < 1:
            raise CompressionError(
                f"a choice of {len(continuation)} tokens ({choice[:40]!r}...) leaves no room "
                f"for its context in the {MAX_TOKENS} tokens a question may take: keep every "
                f"choice under {MAX_TOKENS} tokens, or move its beginning into the context",
                reason="InvalidDataset",
            )
        rows.append((context_ids[:shared][-room:], continuation))
    return rows


def _shared_prefix(first: list[int], second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def accuracy(picked: list[int], task: TaskQuestions) -> float:
    right = sum(p == q.answer for p, q in zip(picked, task.questions, strict=True))
    return right / len(task.questions)


def task_scores(
    variant: list[list[int]], base: list[list[int]], tasks: list[TaskQuestions]
) -> list[dict[str, Any]]:
    """The status's `metrics.tasks`: accuracy, the base model's, and their ratio."""
    scores = []
    for picked, reference, task in zip(variant, base, tasks, strict=True):
        mine, theirs = accuracy(picked, task), accuracy(reference, task)
        scores.append(
            {
                "name": task.name,
                "accuracy": round(mine, 6),
                "baseAccuracy": round(theirs, 6),
                "recovery": round(mine / theirs, 6) if theirs > 0 else None,
                "questions": len(task.questions),
            }
        )
    return scores


def load_base_answers(
    place: Any, key: str, credentials: Credentials | None = None
) -> list[list[int]] | None:
    from modelpress.compress.references import load_file

    data = load_file(place, key, ANSWERS_FILE, credentials)
    return None if data is None else json.loads(data)["answers"]


def save_base_answers(
    place: Any, key: str, answers: list[list[int]], credentials: Credentials | None = None
) -> None:
    from modelpress.compress.references import save_file

    data = json.dumps({"format": ANSWERS_FORMAT, "answers": answers}).encode()
    metadata = {"kind": "task-answers", "format": ANSWERS_FORMAT}
    save_file(place, key, ANSWERS_FILE, data, metadata, credentials)
