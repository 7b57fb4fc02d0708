"""KL divergence from the base model: exact where the base's top tokens hold the mass, a
lower bound otherwise; the base model's reference kept in the store for every Job."""

from __future__ import annotations

import torch

from modelpress.compress.evaluate import (
    TOP_K,
    Scores,
    kl_to_reference,
    load_reference,
    metrics,
    reference_key,
    save_reference,
    score,
)
from modelpress.storage import read_manifest


def full_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    p = torch.log_softmax(p_logits, -1)
    q = torch.log_softmax(q_logits, -1)
    return (p.exp() * (p - q)).sum(-1)


def test_over_the_whole_vocabulary_it_is_the_exact_divergence() -> None:
    torch.manual_seed(0)
    p_logits, q_logits = torch.randn(20, 300) * 3, torch.randn(20, 300) * 3
    p = torch.log_softmax(p_logits, -1)
    values, ids = p.topk(300, -1)
    approx = kl_to_reference(torch.log_softmax(q_logits, -1), ids, values)
    assert torch.allclose(approx, full_kl(p_logits, q_logits), atol=1e-5)


def test_over_the_top_tokens_it_is_a_close_lower_bound_for_peaked_distributions() -> None:
    torch.manual_seed(1)
    vocabulary = 5000
    p_logits = torch.randn(50, vocabulary) * 4  # peaked, as a trained model's are
    q_logits = p_logits + torch.randn(50, vocabulary) * 0.5  # a perturbed (quantized) copy
    p = torch.log_softmax(p_logits, -1)
    values, ids = p.topk(TOP_K, -1)
    approx = kl_to_reference(torch.log_softmax(q_logits, -1), ids, values)
    exact = full_kl(p_logits, q_logits)
    assert torch.all(approx <= exact + 1e-6), "merging tokens never adds divergence"
    assert approx.mean() > 0.8 * exact.mean()


def test_identical_models_diverge_by_nothing(tiny_model, tiny_tokenizer) -> None:
    from modelpress.compress.checkpoint import load_model

    model = load_model(tiny_model)
    windows = torch.randint(3, len(tiny_tokenizer), (2, 33))
    base = score(model, windows, what="base", keep_top=True)
    assert base.top_ids is not None and base.top_ids.shape == (2, 32, TOP_K)
    same = score(model, windows, what="same", reference=base)
    measured = metrics(same, base)
    assert measured["klDivergence"] < 1e-4 and measured["agreement"] == 1.0
    assert measured["klDivergenceP99"] >= measured["klDivergence"]


def test_the_reference_is_published_in_the_store_and_read_back(store) -> None:
    windows = torch.arange(20).reshape(2, 10)
    scores = Scores(
        nll_sum=12.5,
        tokens=18,
        argmax=torch.zeros(2, 9, dtype=torch.int32),
        top_ids=torch.zeros(2, 9, TOP_K, dtype=torch.int32),
        top_logprobs=torch.full((2, 9, TOP_K), -4.0),
    )
    key = reference_key("base-identity", windows)
    place = store + "evaluations/"
    assert load_reference(place, key) is None
    save_reference(place, key, scores)
    manifest = read_manifest(f"{place}{key}/")
    assert manifest is not None and manifest.metadata["kind"] == "evaluation-reference"
    loaded = load_reference(place, key)
    assert loaded is not None and loaded.nll_sum == 12.5 and loaded.tokens == 18
    assert torch.equal(loaded.top_logprobs, scores.top_logprobs)
    assert reference_key("base-identity", windows + 1) != key, "other windows, other key"
