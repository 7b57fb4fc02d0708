"""Calibration text the base model writes itself: sampled correctly (the KV cache changes
nothing), seeded, written once per base and kept in the store, used by every step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelpress.compress.generated as generated_module
from modelpress.api.inputs import Calibration
from modelpress.compress import compress_variant
from modelpress.compress.checkpoint import load_model, load_tokenizer
from modelpress.compress.errors import CompressionError
from modelpress.compress.generated import generated_key, sample, start_token
from modelpress.storage import fetch

EVALUATION = {"samples": 4, "sequenceLength": 64}


def generated(seed: int = 0, samples: int = 3, length: int = 16) -> Calibration:
    return Calibration.model_validate(
        {"generated": {"seed": seed}, "samples": samples, "sequenceLength": length}
    )


def sample_without_cache(model, start: int, calibration: Calibration):
    """The same sampling by recomputing the whole prefix at every position."""
    import torch

    generator = torch.Generator().manual_seed(calibration.generated.seed)
    ids = torch.full((calibration.samples, 1), start, dtype=torch.long)
    with torch.inference_mode():
        for _ in range(calibration.sequence_length):
            logits = model(input_ids=ids).logits[:, -1, :].float()
            chosen = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            ids = torch.cat([ids, chosen], dim=1)
    return ids[:, 1:]


def test_sampling_with_the_cache_equals_recomputing_every_prefix(tiny_model):
    import torch

    model = load_model(tiny_model)
    start = start_token(load_tokenizer(tiny_model))
    calibration = generated(samples=3, length=16)
    tokens = sample(model, start, calibration, what="test")
    assert tokens.shape == (3, 16)
    assert torch.equal(tokens, sample_without_cache(model, start, calibration))


def test_the_seed_decides_the_text_and_batches_change_nothing(tiny_model, monkeypatch):
    import torch

    model = load_model(tiny_model)
    start = start_token(load_tokenizer(tiny_model))
    first = sample(model, start, generated(seed=0, samples=5), what="test")
    assert torch.equal(first, sample(model, start, generated(seed=0, samples=5), what="test"))
    assert not torch.equal(first, sample(model, start, generated(seed=1, samples=5), what="test"))
    monkeypatch.setattr(generated_module, "BATCH", 2)  # three batches: 2, 2, 1
    batched = sample(model, start, generated(seed=0, samples=5), what="test")
    assert batched.shape == first.shape
    assert len({tuple(row) for row in batched.tolist()}) == 5, "every sample is its own text"


def test_the_key_names_base_seed_and_size():
    keys = {
        generated_key("base-a", generated()),
        generated_key("base-b", generated()),
        generated_key("base-a", generated(seed=1)),
        generated_key("base-a", generated(samples=4)),
        generated_key("base-a", generated(length=20)),
    }
    assert len(keys) == 5
    assert generated_key("base-a", generated()) == generated_key("base-a", generated())


def test_a_tokenizer_without_start_or_end_token_says_to_give_a_dataset():
    class Bare:
        bos_token_id = None
        eos_token_id = None

    with pytest.raises(CompressionError, match=r"give calibration\.dataset") as caught:
        start_token(Bare())
    assert caught.value.reason == "InvalidBaseModel"


def test_variants_without_calibration_learn_from_text_the_base_wrote_once(
    published_base, store, texts, tmp_path, monkeypatch
):
    """Two variants that need text and are given none: the first Job writes the text and
    keeps it in the store, the second reads it; both record what they learned from."""
    calls = []
    original = generated_module.sample

    def counting(*args, **kwargs):
        calls.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(generated_module, "sample", counting)
    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, **EVALUATION}
    calibration = {"generated": {}, "samples": 4, "sequenceLength": 32}
    references = store + "evaluations/"
    variants = [
        {"name": "gptq", "quantize": {"scheme": "W4A16", "groupSize": 64}},
        {"name": "slim", "prune": {"method": "layer-drop", "fraction": 0.25}},
    ]
    results = []
    for variant in variants:
        (tmp_path / variant["name"]).mkdir()
        results.append(
            compress_variant(
                published_base,
                variant,
                evaluation,
                f"{store}artifacts/{variant['name']}/",
                calibration=calibration,
                work_dir=tmp_path / variant["name"],
                cache_dir=references,
            )
        )
    assert len(calls) == 1, "the second Job reads the text the first one wrote"
    for result in results:
        used = result.metadata["lineage"][0]["params"]["calibration"]
        assert used == {"generated": {"seed": 0}, "samples": 4, "sequenceLength": 32}
    root = Path(references.removeprefix("file://"))
    kept = [p.parent.name for p in root.glob("*/manifest.json")]
    assert len(kept) == 2, "the base model's scores and the generated text"
    for key in kept:
        fetch(f"{references}{key}/", tmp_path / "kept" / key)  # every sha256 checked
    (written,) = list((tmp_path / "kept").glob("*/calibration.json"))
    document = json.loads(written.read_text())
    assert len(document["tokens"]) == 4 and {len(row) for row in document["tokens"]} == {32}
    assert len(document["text"]) == 4 and all(isinstance(t, str) for t in document["text"])


def test_a_step_given_no_calibration_at_all_learns_from_generated_text(
    published_base, store, texts, tmp_path, monkeypatch
):
    import modelpress.compress.preflight as preflight_module

    # The default's size (256 x 512 tokens) is the spec's; a smaller one keeps this fast.
    monkeypatch.setattr(preflight_module, "GENERATED_CALIBRATION", generated(samples=4))
    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, **EVALUATION}
    variant = {"name": "slim", "prune": {"method": "layer-drop", "fraction": 0.25}}
    result = compress_variant(
        published_base, variant, evaluation, f"{store}artifacts/slim/", work_dir=tmp_path
    )
    used = result.metadata["lineage"][0]["params"]["calibration"]
    assert used == {"generated": {"seed": 0}, "samples": 4, "sequenceLength": 16}


def test_alternate_takes_rows_in_turn_and_the_longer_one_s_rest_last():
    import torch

    first, second = torch.arange(3).unsqueeze(1), 10 + torch.arange(2).unsqueeze(1)
    assert generated_module.alternate(first, second).flatten().tolist() == [0, 10, 1, 11, 2]


def test_a_step_given_a_dataset_and_generated_text_learns_from_both_in_turn(
    published_base, tiny_model, store, texts, tmp_path, monkeypatch
):
    """Half the windows from each, alternating; the generated half is the text a
    generated-only calibration of that size names, so it is written once for both."""
    import modelpress.compress.prune as prune_module
    from modelpress.compress.text import read_text, tokenize, windows

    seen = []
    original = prune_module.prune
    monkeypatch.setattr(prune_module, "prune", lambda m, s, w: seen.append(w) or original(m, s, w))
    evaluation = {"dataset": {"uri": f"file://{texts['evaluation']}"}, **EVALUATION}
    calibration = {
        "dataset": {"uri": f"file://{texts['calibration']}"},
        "generated": {},
        "samples": 5,
        "sequenceLength": 32,
    }
    variant = {"name": "slim", "prune": {"method": "layer-drop", "fraction": 0.25}}
    result = compress_variant(
        published_base,
        variant,
        evaluation,
        f"{store}artifacts/slim/",
        calibration=calibration,
        work_dir=tmp_path,
        cache_dir=store + "evaluations/",
    )
    (learned,) = seen
    tokenizer = load_tokenizer(tiny_model)
    own = windows(tokenize(tokenizer, read_text(f"file://{texts['calibration']}")), 3, 32,
                  what="test")  # fmt: skip
    for manifest in Path(store.removeprefix("file://")).glob("evaluations/*/manifest.json"):
        key = manifest.parent.name
        fetch(f"{store}evaluations/{key}/", tmp_path / "kept" / key)
    (kept,) = (tmp_path / "kept").glob("*/calibration.json")
    assert learned.shape == (5, 32)
    assert learned[0::2].tolist() == own.tolist()
    assert learned[1::2].tolist() == json.loads(kept.read_text())["tokens"]
    assert result.metadata["lineage"][0]["params"]["calibration"] == calibration | {
        "generated": {"seed": 0}
    }


def test_kept_text_that_is_not_what_its_key_names_is_refused(tiny_model, tmp_path):
    import json as json_module

    model = load_model(tiny_model)
    tokenizer = load_tokenizer(tiny_model)
    calibration = generated(samples=2, length=16)
    key = generated_key("base", calibration)
    place = tmp_path / "references"
    (place / key).mkdir(parents=True)
    for tokens in ([[1] * 16], [[1] * 16, [10**6] * 16], "not tokens"):
        (place / key / "calibration.json").write_text(json_module.dumps({"tokens": tokens}))
        with pytest.raises(CompressionError, match="remove it, and the next Job writes it again"):
            generated_module.generated_windows(model, tokenizer, calibration, "base", place)
    (place / key / "calibration.json").write_text(json_module.dumps({"tokens": [[3] * 16] * 2}))
    kept = generated_module.generated_windows(model, tokenizer, calibration, "base", place)
    assert kept.tolist() == [[3] * 16] * 2, "what is kept is what every variant learns from"


def test_two_jobs_writing_at_once_both_learn_from_the_text_kept_first(
    tiny_model, store, monkeypatch
):
    """The other Job published between this Job's look and its own publish: the store
    keeps the first text, and this Job learns from that one, not from its own."""
    import json as json_module

    import modelpress.compress.references as references_module
    from modelpress.compress.references import save_file

    model = load_model(tiny_model)
    tokenizer = load_tokenizer(tiny_model)
    calibration = generated(samples=2, length=16)
    place = store + "evaluations/"
    key = generated_key("base", calibration)
    first = {"tokens": [[5] * 16, [6] * 16]}
    original = references_module.load_file
    looks = []

    def racing(*args, **kwargs):
        looks.append(args)
        if len(looks) == 1:  # this Job looks: nothing yet; then the other Job publishes
            save_file(place, key, "calibration.json", json_module.dumps(first).encode(), {})
            return None
        return original(*args, **kwargs)

    monkeypatch.setattr(references_module, "load_file", racing)
    kept = generated_module.generated_windows(model, tokenizer, calibration, "base", place)
    assert kept.tolist() == first["tokens"]


def test_a_reference_published_without_the_text_is_refused_not_a_crash(tiny_model, store):
    from modelpress.compress.references import save_file

    model = load_model(tiny_model)
    calibration = generated(samples=2, length=16)
    place = store + "evaluations/"
    key = generated_key("base", calibration)
    save_file(place, key, "something-else.json", b"{}", {})
    with pytest.raises(CompressionError, match=r"holds no calibration\.json: remove it"):
        generated_module.generated_windows(
            model, load_tokenizer(tiny_model), calibration, "base", place
        )
