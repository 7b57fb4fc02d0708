"""The quality gate: whether a variant's measured quality allows serving it, and why,
with the numbers. Pure: it judges stored metrics against the spec's thresholds, so
tightening a threshold re-judges variants instead of recomputing them.
"""

from __future__ import annotations

from modelpress.api.reasons import Reason
from modelpress.api.spec import Evaluation
from modelpress.api.status import ChatScore, Metrics
from modelpress.plan.progress import Verdict


def gate(evaluation: Evaluation, measured: Metrics | None) -> Verdict:
    """Whether a variant's measured quality allows serving it, and why, with the numbers.

    Missing measurements fail the gate: an unmeasured variant is never served.
    """

    def failed(message: str) -> Verdict:
        return Verdict(Reason.QUALITY_GATE_FAILED, message)

    if measured is None or measured.perplexity_increase is None:
        return failed("no perplexity was measured for this variant, so it cannot pass the gate")
    limit = evaluation.max_perplexity_increase
    increase = measured.perplexity_increase
    numbers = _perplexity_numbers(measured)
    if increase > limit:
        return failed(
            f"perplexity {numbers} is {increase:+.2%} over the base model; the gate allows "
            f"{limit:.2%} (evaluation.maxPerplexityIncrease): choose a milder recipe or raise "
            "the limit"
        )
    message = f"perplexity {numbers} is {increase:+.2%} over the base model, within {limit:.2%}"
    if evaluation.min_agreement is not None:
        if measured.agreement is None:
            return failed(
                "no token agreement was measured, but evaluation.minAgreement is set: "
                "it cannot pass the gate"
            )
        if measured.agreement < evaluation.min_agreement:
            return failed(
                f"greedy-token agreement with the base model is {measured.agreement:.2%}, below "
                f"evaluation.minAgreement {evaluation.min_agreement:.2%}: choose a milder recipe "
                "or lower the limit"
            )
        message += (
            f"; agreement {measured.agreement:.2%} is at least {evaluation.min_agreement:.2%}"
        )
    if evaluation.max_kl_divergence is not None:
        divergence = measured.kl_divergence
        if divergence is None:
            return failed(
                "no KL divergence was measured (the artifact was built before modelpress "
                "measured it), but evaluation.maxKlDivergence is set: it cannot pass the gate; "
                "unset the limit, or change the evaluation (e.g. its samples) to measure the "
                "variant again"
            )
        if divergence > evaluation.max_kl_divergence:
            return failed(
                f"KL divergence from the base model is {divergence:.4g} nats per token, above "
                f"evaluation.maxKlDivergence {evaluation.max_kl_divergence:g}: choose a milder "
                "recipe or raise the limit"
            )
        message += f"; KL divergence {divergence:.4g} is within {evaluation.max_kl_divergence:g}"
    if evaluation.min_accuracy_recovery is not None:
        problem = _accuracy_problem(evaluation, evaluation.min_accuracy_recovery, measured)
        if problem:
            return failed(problem)
        message += f"; accuracy recovery is at least {evaluation.min_accuracy_recovery:.2%}"
    if evaluation.max_chat_kl_divergence is not None:
        chat_limit, chat = evaluation.max_chat_kl_divergence, measured.chat
        if chat is None or chat.kl_divergence > chat_limit:
            return failed(_chat_problem(chat_limit, chat))
        message += (
            f"; on the chat prompts' answers, KL divergence {chat.kl_divergence:.4g} "
            f"is within {chat_limit:g}"
        )
    return Verdict(Reason.PASSED, message)


def _chat_problem(limit: float, chat: ChatScore | None) -> str:
    """Why the variant answers the chat prompts too unlike the base model."""
    if chat is None:
        return (
            "no chat answers were measured (evaluation.chat was added after this variant was "
            "built), but evaluation.maxChatKlDivergence is set: it cannot pass the gate; the "
            "variant is measured again when its evaluation changes"
        )
    return (
        f"on the base model's answers to the chat prompts, the variant's KL divergence is "
        f"{chat.kl_divergence:.4g} nats per token (greedy agreement {chat.agreement:.2%}), "
        f"above evaluation.maxChatKlDivergence {limit:g}: it answers less like the base "
        "model; choose a milder recipe, tune on text like the prompts, or raise the limit"
    )


def _accuracy_problem(evaluation: Evaluation, limit: float, measured: Metrics) -> str | None:
    """Why the variant keeps too little of the base model's accuracy on some task, or None."""
    scores = {score.name: score for score in measured.tasks or []}
    for task in evaluation.tasks or []:
        score = scores.get(task.name)
        if score is None:
            return (
                f"no accuracy was measured on task {task.name!r}, but "
                "evaluation.minAccuracyRecovery is set: it cannot pass the gate; the variant "
                "is measured again when its evaluation changes"
            )
        if score.recovery is None:
            return (
                f"the base model answers no question of task {task.name!r} right, so no "
                "recovery can be measured: use a task the base model can do, or remove "
                "evaluation.minAccuracyRecovery"
            )
        if score.recovery < limit:
            return (
                f"task {task.name!r}: accuracy {score.accuracy:.2%} keeps {score.recovery:.2%} "
                f"of the base model's {score.base_accuracy:.2%}, below "
                f"evaluation.minAccuracyRecovery {limit:.2%}: choose a milder recipe or lower "
                "the limit"
            )
    return None


def _perplexity_numbers(metrics: Metrics) -> str:
    if metrics.perplexity is not None and metrics.base_perplexity is not None:
        return f"{metrics.perplexity:.4g} (base {metrics.base_perplexity:.4g})"
    if metrics.perplexity is not None:
        return f"{metrics.perplexity:.4g}"
    return "increase"
