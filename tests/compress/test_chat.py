"""Chat prompts (evaluation.chat): reading the file, the base model's greedy answers,
variants judged on them by KL divergence and agreement, the answers kept once per base,
and the requests refused before any weights are read."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from tests.compress.conftest import build_model, build_w8_and_w4

from modelpress.compress import CompressionError
from modelpress.compress.chat import (
    ChatPrompts,
    answer_prompts,
    chat_score,
    load_base_answers,
    prompt_ids,
    read_chat,
    save_base_answers,
    stop_tokens,
)
from modelpress.compress.checkpoint import load_model, load_tokenizer
from modelpress.compress.text import Text

TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)
PROMPTS = ["What does the licensee grant?", "Name a right.", "Who may distribute it?"]


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory, tiny_tokenizer) -> Path:
    """The tiny model with a chat template."""
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = TEMPLATE
    return build_model(tmp_path_factory.mktemp("chat") / "base", tokenizer)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory, tiny_tokenizer) -> Path:
    """Another random model on the same tokenizer: a variant that answers differently."""
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = TEMPLATE
    return build_model(tmp_path_factory.mktemp("chat") / "other", tokenizer, seed=1)


def prompts_file(path: Path, prompts: list[str] = PROMPTS) -> Path:
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in prompts) + "\n")
    return path


def chat(prompts: list[str] = PROMPTS, max_tokens: int = 6) -> ChatPrompts:
    return ChatPrompts(Text("file:///p.jsonl", "", "0" * 64), tuple(prompts), max_tokens)


def test_a_prompts_file_reads_line_by_line_and_limit_keeps_the_first(tmp_path):
    from modelpress.api.spec import Chat

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "one"}\n\n{"prompt": "two", "id": 2}\n{"prompt": "three"}\n')
    read = read_chat(Chat.model_validate({"prompts": {"uri": f"file://{path}"}, "limit": 2}))
    assert read.prompts == ("one", "two") and read.max_tokens == 64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1: not JSON"),
        ('"a prompt"', "line 1: not a JSON object"),
        ('{"prompt": "ok"}\n{"text": "x"}', "line 2: prompt must be a non-empty string"),
        ('{"prompt": "  "}', "line 1: prompt must be a non-empty string"),
        ("\n\n", "is empty: give a file with text"),
    ],
)
def test_every_mistake_in_a_prompts_file_names_its_line_and_the_expected_shape(
    tmp_path, content, message
):
    from modelpress.api.spec import Chat

    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(CompressionError, match=message) as caught:
        read_chat(Chat.model_validate({"prompts": {"uri": f"file://{path}"}}))
    assert caught.value.reason == "InvalidDataset"
    if "line" in message:
        assert "evaluation.chat.prompts" in str(caught.value)
        assert '{"prompt": "..."}' in str(caught.value)


def test_the_base_answers_greedily_through_its_chat_template(chat_base):
    model, tokenizer = load_model(chat_base), load_tokenizer(chat_base)
    ids = prompt_ids(tokenizer, "Name a right.")
    assert tokenizer.decode(ids) == "<s>user: Name a right.\n<s>assistant:"
    answers = answer_prompts(model, tokenizer, chat(max_tokens=6))
    assert [len(a) for a in answers.answer_ids] == [6, 6, 6]  # a random model never stops
    # The cached loop writes what greedy decoding without a cache writes.
    written = list(answers.prompt_ids[1].tolist())
    with torch.no_grad():
        for _ in range(6):
            written.append(int(model(input_ids=torch.tensor([written])).logits[0, -1].argmax()))
    assert written[len(ids) :] == answers.answer_ids[1].tolist()
    assert answers.top_ids[1].shape == (6, 64) and answers.top_logprobs[1].shape == (6, 64)


def test_an_answer_ends_at_the_stop_token_the_generation_config_names(chat_base):
    model, tokenizer = load_model(chat_base), load_tokenizer(chat_base)
    first = answer_prompts(model, tokenizer, chat(max_tokens=3)).answer_ids[0].tolist()
    stop = first[-1]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    assert stop_tokens(model, tokenizer) == {tokenizer.eos_token_id, stop}
    stopped = answer_prompts(model, tokenizer, chat(max_tokens=3)).answer_ids[0].tolist()
    assert stopped == first[: first.index(stop) + 1]  # the stop token ends it, judged too


def test_the_base_matches_itself_and_another_model_diverges(chat_base, other_model, tmp_path):
    base, tokenizer = load_model(chat_base), load_tokenizer(chat_base)
    answers = answer_prompts(base, tokenizer, chat())
    itself = chat_score(base, answers)
    assert itself["klDivergence"] < 1e-5 and itself["agreement"] == 1.0
    assert itself["prompts"] == 3 and itself["tokens"] == 18
    other = chat_score(load_model(other_model), answers)
    assert other["klDivergence"] > 1e-3 and other["agreement"] < 1.0
    assert other["klDivergenceP99"] >= other["klDivergence"]
    # Kept and read back, the answers judge a variant to the same numbers.
    save_base_answers(tmp_path, "k", answers)
    assert chat_score(load_model(other_model), load_base_answers(tmp_path, "k", 3)) == other
    assert load_base_answers(tmp_path, "missing", 3) is None


@pytest.mark.parametrize("damage", ["garbage", "fewer", "short"])
def test_kept_answers_that_do_not_fit_are_refused_with_what_to_do(chat_base, tmp_path, damage):
    base, tokenizer = load_model(chat_base), load_tokenizer(chat_base)
    answers = answer_prompts(base, tokenizer, chat(max_tokens=4))
    save_base_answers(tmp_path, "k", answers)
    kept = tmp_path / "k" / "chat-answers.pt"
    if damage == "garbage":
        kept.write_bytes(b"not a torch file")
    elif damage == "fewer":
        answers.answer_ids.pop()
        save_base_answers(tmp_path, "k", answers)
    else:
        answers.top_ids[0] = answers.top_ids[0][:2]
        save_base_answers(tmp_path, "k", answers)
    with pytest.raises(CompressionError, match="remove them, and the next Job writes them"):
        load_base_answers(tmp_path, "k", 3)


def test_variants_report_chat_scores_and_the_base_answers_once(
    chat_base, texts, store, tmp_path, loaded_models
):
    from modelpress.storage import publish

    publish(store + "models/tiny/", chat_base, {"source": {"huggingface": "org/tiny"}})
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 2, "sequenceLength": 64,
        "chat": {"prompts": {"uri": f"file://{prompts_file(tmp_path / 'p.jsonl')}"},
                 "maxTokens": 5},
    }  # fmt: skip
    built = build_w8_and_w4(store, evaluation, tmp_path)
    found = {name: metadata["metrics"]["chat"] for name, metadata in built.items()}
    assert built["w4"]["evaluation"]["chat"]["maxTokens"] == 5
    assert found["w8"]["prompts"] == found["w4"]["prompts"] == 3
    assert found["w8"]["tokens"] == found["w4"]["tokens"] == 15
    assert 0 <= found["w8"]["klDivergence"] < found["w4"]["klDivergence"]
    # The base answers once: the second Job loads only its chain's base and its variant.
    assert loaded_models == ["base", "base", "variant", "base", "variant"]


def test_a_base_without_a_chat_template_is_refused_before_its_weights(tiny_model, texts, tmp_path):
    from modelpress.compress import validate_variant

    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 2, "sequenceLength": 64,
        "chat": {"prompts": {"uri": f"file://{prompts_file(tmp_path / 'p.jsonl')}"}},
    }  # fmt: skip
    variant = {"name": "g", "quantize": {"scheme": "W4A16", "groupSize": 32}}
    with pytest.raises(CompressionError, match="needs a base model whose tokenizer has a chat"):
        validate_variant(str(tiny_model), variant, evaluation)


def test_prompts_that_are_also_calibration_text_are_refused(chat_base, texts, tmp_path):
    from modelpress.compress import validate_variant

    prompts = [f"Prompt number {i} about the licence and its terms." for i in range(200)]
    prompts_file(tmp_path / "calibration.txt", prompts)
    prompts_file(tmp_path / "prompts.jsonl", prompts)  # the same bytes under another name
    evaluation = {
        "dataset": {"uri": f"file://{texts['evaluation']}"}, "samples": 2, "sequenceLength": 64,
        "chat": {"prompts": {"uri": f"file://{tmp_path}/prompts.jsonl"}},
    }  # fmt: skip
    calibration = {"dataset": {"uri": f"file://{tmp_path}/calibration.txt"}, "samples": 4,
                   "sequenceLength": 64}  # fmt: skip
    variant = {"name": "g", "quantize": {"scheme": "W4A16", "groupSize": 32}}
    with pytest.raises(CompressionError, match="hold the same text") as caught:
        validate_variant(str(chat_base), variant, evaluation, calibration=calibration)
    assert caught.value.reason == "InvalidDataset"
