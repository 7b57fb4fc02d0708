"""Multiple-choice tasks: reading the file (every mistake named by its line), scoring
choices per byte as the harness does, and accuracy with its recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.compress.conftest import build_w8_and_w4

from modelpress.compress import CompressionError
from modelpress.compress.checkpoint import load_model, load_tokenizer
from modelpress.compress.tasks import (
    Question,
    TaskQuestions,
    answer,
    choice_rows,
    choice_scores,
    cloze_questions,
    parse_questions,
    task_scores,
)
from modelpress.compress.text import Text


def line(**item) -> str:
    return json.dumps({"context": "The sky is", "choices": [" blue", " loud"], "answer": 0} | item)


def test_a_task_file_reads_question_by_question_skipping_blank_lines():
    content = line() + "\n\n" + line(answer=1, id="q2", extra=[1]) + "\n"
    questions = parse_questions(content, where="task t")
    assert questions == [
        Question("The sky is", (" blue", " loud"), 0),
        Question("The sky is", (" blue", " loud"), 1),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1: not JSON"),
        ("[1, 2]", "line 1: not a JSON object"),
        (line() + "\n" + line(context=""), "line 2: context must be a non-empty string"),
        (line(choices=[" one"]), "choices must be a list of at least two strings"),
        (line(choices=[" a", ""]), "every choice must be a non-empty string"),
        (line(answer="0"), "answer must be the index of the right choice"),
        (line(answer=True), "answer must be the index of the right choice"),
        (line(answer=2), "answer 2 is not the index of one of the 2 choices"),
        ("\n\n", "has no questions"),
    ],
)
def test_every_mistake_in_a_task_file_names_its_line_and_the_expected_shape(content, message):
    with pytest.raises(CompressionError, match=message) as caught:
        parse_questions(content, where="evaluation task 'docs'")
    assert caught.value.reason == "InvalidDataset"
    assert "evaluation task 'docs'" in str(caught.value)


def test_choice_scores_are_the_log_likelihood_of_the_choice_tokens_per_byte(tiny_model):
    """Computed by hand from one full forward pass over context + choice."""
    model, tokenizer = load_model(tiny_model), load_tokenizer(tiny_model)
    question = Question("The licensee shall", (" not", " always distribute"), 0)
    scores = choice_scores(model, tokenizer, question)
    context = tokenizer.encode("The licensee shall", add_special_tokens=False)
    for choice, score in zip(question.choices, scores, strict=True):
        whole = tokenizer.encode("The licensee shall" + choice, add_special_tokens=False)
        assert whole[: len(context)] == context
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0], -1)
        expected = sum(logprobs[p - 1, whole[p]].item() for p in range(len(context), len(whole)))
        assert score == pytest.approx(expected / len(choice.encode()), rel=1e-4)


@pytest.mark.parametrize("max_tokens", [2048, 26])
def test_choice_scores_read_the_context_once_and_equal_one_pass_per_choice(
    tiny_model, monkeypatch, max_tokens
):
    """The shared context is read once and the choices batched, right-padded; each score
    is still what one pass over that choice's own row gives, also when a long context is
    cut from the left to fit and the rows share no prefix to read once."""
    monkeypatch.setattr("modelpress.compress.tasks.MAX_TOKENS", max_tokens)
    model, tokenizer = load_model(tiny_model), load_tokenizer(tiny_model)
    question = Question(
        "The licensee shall keep every notice of this license intact",
        (" and", " not distribute it", " always, without exception, keep them"),
        1,
    )
    scores = choice_scores(model, tokenizer, question)
    rows = choice_rows(tokenizer, question)
    assert (len({tuple(p) for p, _ in rows}) > 1) == (max_tokens < 2048)  # cut differently
    for choice, score, (prompt, continuation) in zip(question.choices, scores, rows, strict=True):
        assert len(prompt) + len(continuation) <= max_tokens
        row = torch.tensor([prompt + continuation])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=row).logits[0], -1)
        expected = sum(
            logprobs[len(prompt) + k - 1, token].item() for k, token in enumerate(continuation)
        )
        assert score == pytest.approx(expected / len(choice.encode()), rel=1e-4)


def test_a_choice_that_merges_with_the_context_is_scored_after_the_whole_context(tiny_model):
    """ "di" + "stribute" tokenizes into tokens that share none with "di"'s own: the choice
    is then its own tokens, read after the whole context, and scored like any other."""
    model, tokenizer = load_model(tiny_model), load_tokenizer(tiny_model)
    context_ids = tokenizer.encode("di", add_special_tokens=False)
    whole = tokenizer.encode("distribute", add_special_tokens=False)
    assert whole[: len(context_ids)] != context_ids, "the case this test is about"
    question = Question("di", ("stribute", " the"), 0)
    prompt, continuation = choice_rows(tokenizer, question)[0]
    assert prompt == context_ids
    assert continuation == tokenizer.encode("stribute", add_special_tokens=False)
    score = choice_scores(model, tokenizer, question)[0]
    with torch.no_grad():
        logprobs = torch.log_softmax(
            model(input_ids=torch.tensor([prompt + continuation])).logits[0], -1
        )
    expected = sum(logprobs[len(prompt) + k - 1, t].item() for k, t in enumerate(continuation))
    assert score == pytest.approx(expected / len(b"stribute"), rel=1e-4)


def test_a_choice_as_long_as_a_question_may_be_is_refused_and_one_token_shorter_fits(
    tiny_model, monkeypatch
):
    """A choice fills the row but for one context token at most; a longer one names the
    limit instead of being scored on a cut that makes no sense."""
    tokenizer = load_tokenizer(tiny_model)
    context = "The licensee shall keep every notice"
    choice = " of this license intact and distribute it"
    whole = tokenizer.encode(context + choice, add_special_tokens=False)
    length = len(whole) - len(tokenizer.encode(context, add_special_tokens=False))
    question = Question(context, (" not", choice), 0)
    monkeypatch.setattr("modelpress.compress.tasks.MAX_TOKENS", length + 1)
    prompt, continuation = choice_rows(tokenizer, question)[1]
    assert len(continuation) == length and prompt == whole[-length - 1 : -length]
    monkeypatch.setattr("modelpress.compress.tasks.MAX_TOKENS", length)
    with pytest.raises(CompressionError, match=f"a choice of {length} tokens") as refused:
        choice_rows(tokenizer, question)
    assert f"keep every choice under {length} tokens" in str(refused.value)
    assert refused.value.reason == "InvalidDataset"


def test_a_model_that_knows_the_answers_gets_them_and_recovery_compares_it_with_the_base(
    tiny_model,
):
    model, tokenizer = load_model(tiny_model), load_tokenizer(tiny_model)
    questions = [Question("x" * (i + 1), (" a", " b", " c"), 0) for i in range(4)]
    task = TaskQuestions("t", Text("file:///t.jsonl", "", "0" * 64), tuple(questions))
    picked = answer(model, tokenizer, task, what="tiny")
    assert len(picked) == 4 and all(0 <= p < 3 for p in picked)
    # A model's own picks are, by definition, the right answers to a task built from them.
    own = TaskQuestions("own", task.text, tuple(
        Question(q.context, q.choices, p) for q, p in zip(questions, picked, strict=True)
    ))  # fmt: skip
    assert answer(model, tokenizer, own, what="tiny") == picked
    (scores,) = task_scores([[0, 0, 1, 1]], [[0, 0, 0, 0]], [task])
    assert scores == {"name": "t", "accuracy": 0.5, "baseAccuracy": 1.0, "recovery": 0.5,
                      "questions": 4}  # fmt: skip
    (none_right,) = task_scores([[1, 1, 1, 1]], [[1, 1, 1, 1]], [task])
    assert none_right["baseAccuracy"] == 0.0 and none_right["recovery"] is None


def cloze(text: str, count: int) -> str:
    return "\n".join(json.dumps(q) for q in cloze_questions(text, count, context_words=8,
                                                            answer_words=3)) + "\n"  # fmt: skip


def test_a_cloze_task_from_held_out_text_is_deterministic_and_balanced():
    paragraphs = [f"paragraph {i} " + " ".join(f"w{i}x{j}" for j in range(30)) for i in range(9)]
    text = "\n\n".join(paragraphs)
    questions = cloze_questions(text, 8)
    assert questions == cloze_questions(text, 8)
    assert [q["answer"] for q in questions] == [0, 1, 2, 3, 0, 1, 2, 3]
    first = questions[1]
    assert first["context"] == " ".join(paragraphs[1].split()[:24])
    assert first["choices"][1] == " " + " ".join(paragraphs[1].split()[24:28])
    assert len(set(first["choices"])) == 4
    parse_questions("\n".join(json.dumps(q) for q in questions), where="cloze")
    with pytest.raises(CompressionError, match="9 paragraphs of at least 28 words; 20 are needed"):
        cloze_questions(text, 20)


def test_variants_report_accuracy_and_recovery_and_the_base_answers_once(
    tiny_model, texts, store, tmp_path, loaded_models
):
    from modelpress.storage import publish

    publish(store + "models/tiny/", tiny_model, {"source": {"huggingface": "org/tiny"}})
    task_file = tmp_path / "docs-cloze.jsonl"
    task_file.write_text(cloze(Path(texts["evaluation"]).read_text(), 6))
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 2, "sequenceLength": 64,
        "tasks": [{"name": "docs-cloze", "dataset": {"uri": f"file://{task_file}"}, "limit": 5}],
    }  # fmt: skip
    built = build_w8_and_w4(store, evaluation, tmp_path)
    found = [metadata["metrics"]["tasks"] for metadata in built.values()]
    for (score,) in found:
        assert score["name"] == "docs-cloze" and score["questions"] == 5
        assert 0 <= score["accuracy"] <= 1 and 0 <= score["baseAccuracy"] <= 1
        if score["baseAccuracy"]:
            assert score["recovery"] == pytest.approx(score["accuracy"] / score["baseAccuracy"])
    assert found[0][0]["baseAccuracy"] == found[1][0]["baseAccuracy"]
    # The base model answers once: the second Job loads only its chain's base and its variant.
    assert loaded_models == ["base", "base", "variant", "base", "variant"]


def test_a_task_that_is_also_calibration_text_is_refused(tiny_model, texts, tmp_path):
    from modelpress.compress import validate_variant

    questions = cloze(Path(texts["calibration"]).read_text(), 40)
    (tmp_path / "calibration.jsonl").write_text(questions)
    (tmp_path / "task.jsonl").write_text(questions)  # the same bytes under another name
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 2, "sequenceLength": 64,
        "tasks": [{"name": "leak", "dataset": {"uri": f"file://{tmp_path}/task.jsonl"}}],
    }  # fmt: skip
    calibration = {"dataset": {"uri": f"file://{tmp_path}/calibration.jsonl"}, "samples": 4,
                   "sequenceLength": 64}  # fmt: skip
    variant = {"name": "g", "quantize": {"scheme": "W4A16", "groupSize": 32}}
    with pytest.raises(CompressionError, match="hold the same text") as caught:
        validate_variant(str(tiny_model), variant, evaluation, calibration=calibration)
    assert caught.value.reason == "InvalidDataset"


def test_the_cloze_command_writes_a_task_file_the_jobs_read(tmp_path, texts, capsys):
    from modelpress.cli import main

    out = tmp_path / "docs-cloze.jsonl"
    assert main(["cloze", texts["evaluation"], "--questions", "5", "--out", str(out)]) == 0
    questions = parse_questions(out.read_text(), where="cloze")
    assert len(questions) == 5 and not list(tmp_path.glob("*.partial"))
    assert main(["cloze", texts["evaluation"], "--questions", "100000"]) == 2
    assert "use fewer --questions or a longer text" in capsys.readouterr().err
    assert main(["cloze", str(tmp_path / "absent.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err
