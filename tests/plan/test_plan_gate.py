"""The quality gate: each threshold judged on stored metrics, with the numbers and the
remedy in its message; an unmeasured variant never passes."""

from __future__ import annotations

import pytest

from modelpress.api.artifact import VariantMetadata
from modelpress.api.reasons import Reason
from modelpress.api.spec import Evaluation
from modelpress.plan.gate import gate


def evaluation(**changes: object) -> Evaluation:
    return Evaluation.model_validate({"dataset": {"uri": "s3://data/e.txt"}, **changes})


def judge(evaluation: Evaluation, metrics: dict | None) -> tuple[bool, str]:
    """The gate on metrics as a manifest stores them."""
    measured = VariantMetadata.read({"metrics": metrics}).metrics
    verdict = gate(evaluation, measured)
    return verdict.reason is Reason.PASSED, verdict.message


def test_the_gate_passes_within_the_limit_and_says_by_how_much() -> None:
    passed, message = judge(
        evaluation(), {"perplexity": 10.5, "basePerplexity": 10.0, "perplexityIncrease": 0.05}
    )
    assert passed and "+5.00%" in message and "10.5 (base 10)" in message


def test_the_gate_fails_beyond_the_limit_with_the_numbers_and_the_remedy() -> None:
    passed, message = judge(
        evaluation(), {"perplexity": 12.0, "basePerplexity": 10.0, "perplexityIncrease": 0.2}
    )
    assert not passed
    assert (
        "+20.00%" in message and "allows 10.00%" in message and "maxPerplexityIncrease" in message
    )


def test_exactly_at_the_limit_passes() -> None:
    assert judge(evaluation(maxPerplexityIncrease=0.2), {"perplexityIncrease": 0.2})[0]


@pytest.mark.parametrize("metrics", [None, {}, {"perplexity": 3.0}])
def test_an_unmeasured_variant_never_passes(metrics: dict | None) -> None:
    passed, message = judge(evaluation(), metrics)
    assert not passed and "no perplexity" in message


def test_the_agreement_judge() -> None:
    strict = evaluation(minAgreement=0.9)
    assert judge(strict, {"perplexityIncrease": 0.01, "agreement": 0.95})[0]
    passed, message = judge(strict, {"perplexityIncrease": 0.01, "agreement": 0.8})
    assert not passed and "80.00%" in message and "minAgreement" in message
    passed, message = judge(strict, {"perplexityIncrease": 0.01})
    assert not passed and "agreement" in message


def test_the_kl_divergence_judge() -> None:
    strict = evaluation(maxKlDivergence=0.05)
    assert judge(strict, {"perplexityIncrease": 0.01, "klDivergence": 0.02})[0]
    passed, message = judge(strict, {"perplexityIncrease": 0.01, "klDivergence": 0.2})
    assert not passed and "0.2 nats per token" in message and "maxKlDivergence 0.05" in message
    passed, message = judge(strict, {"perplexityIncrease": 0.01})
    assert not passed and "built before modelpress measured it" in message
    assert judge(evaluation(), {"perplexityIncrease": 0.01})[0], "no limit, no judgement"


def test_the_accuracy_recovery_judge_holds_every_task() -> None:
    tasks = [
        {"name": name, "dataset": {"uri": f"s3://data/{name}.jsonl"}} for name in ("qa", "cloze")
    ]
    strict = evaluation(tasks=tasks, minAccuracyRecovery=0.95)

    def scores(qa: float, cloze: float | None) -> dict:
        found = [{"name": "qa", "accuracy": 0.5 * qa, "baseAccuracy": 0.5, "recovery": qa,
                  "questions": 200}]  # fmt: skip
        if cloze is not None:
            found.append({"name": "cloze", "accuracy": 0.8 * cloze, "baseAccuracy": 0.8,
                          "recovery": cloze, "questions": 100})  # fmt: skip
        return {"perplexityIncrease": 0.01, "tasks": found}

    passed, message = judge(strict, scores(0.99, 0.96))
    assert passed and "accuracy recovery is at least 95.00%" in message
    passed, message = judge(strict, scores(0.99, 0.9))
    assert not passed
    assert "task 'cloze': accuracy 72.00% keeps 90.00% of the base model's 80.00%" in message
    passed, message = judge(strict, scores(0.99, None))
    assert not passed and "no accuracy was measured on task 'cloze'" in message
    assert judge(evaluation(tasks=tasks), scores(0.5, 0.5))[0], "no limit, no judgement"


def test_a_recovery_limit_without_tasks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"minAccuracyRecovery needs evaluation\.tasks"):
        evaluation(minAccuracyRecovery=0.9)


def test_the_gate_ignores_unknown_metrics() -> None:
    assert judge(evaluation(), {"perplexityIncrease": 0.0, "bleu": 3})[0]


def test_the_chat_judge() -> None:
    prompts = {"prompts": {"uri": "s3://data/prompts.jsonl"}}
    strict = evaluation(chat=prompts, maxChatKlDivergence=0.3)

    def scores(divergence: float) -> dict:
        chat = {"klDivergence": divergence, "klDivergenceP99": 2.0, "agreement": 0.62,
                "prompts": 24, "tokens": 1100}  # fmt: skip
        return {"perplexityIncrease": 0.01, "chat": chat}

    passed, message = judge(strict, scores(0.29))
    assert passed and "on the chat prompts' answers, KL divergence 0.29 is within 0.3" in message
    passed, message = judge(strict, scores(0.45))
    assert not passed
    assert "KL divergence is 0.45 nats per token (greedy agreement 62.00%)" in message
    assert "maxChatKlDivergence 0.3" in message and "tune on text like the prompts" in message
    passed, message = judge(strict, {"perplexityIncrease": 0.01})
    assert not passed and "no chat answers were measured" in message
    assert judge(evaluation(chat=prompts), scores(5.0))[0], "no limit, no judgement"


def test_a_chat_limit_without_prompts_is_refused() -> None:
    with pytest.raises(ValueError, match=r"maxChatKlDivergence needs evaluation\.chat"):
        evaluation(maxChatKlDivergence=0.3)
