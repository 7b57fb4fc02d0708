"""What the picture shows, read from a CompressedModel (spec and status), a local run's
status, or the compression benchmark's JSON; and which points are on the frontier.

Pure: no plotting here, so the reading and the frontier are tested without a figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelpress.api.reasons import ConditionType
from modelpress.api.spec import CompressedModelSpec
from modelpress.api.status import CompressedModelStatus, VariantStatus

BASE = "base"


class ReportError(ValueError):
    """An input the report cannot read; the message says what it expected."""


@dataclass(frozen=True)
class Point:
    """One model: the base or a variant."""

    name: str
    bytes: int
    perplexity_increase: float | None
    agreement: float | None = None
    kl_divergence: float | None = None
    gpus: int | None = None
    recipe: str = ""
    passed: bool | None = None
    """The quality gate's verdict (None: not judged, e.g. the base model)."""
    served: bool = False
    base: bool = False
    frontier: bool = False


@dataclass(frozen=True)
class Picture:
    title: str
    points: tuple[Point, ...]
    gate: float | None = None
    """The gate's largest perplexity increase (0.10 = 10 %), drawn as a line."""
    min_agreement: float | None = None
    evaluated_on: str = ""
    """Which text the quality was measured on (it should differ from calibration's)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def served(self) -> Point | None:
        return next((p for p in self.points if p.served), None)

    @property
    def base_bytes(self) -> int | None:
        return next((p.bytes for p in self.points if p.base), None)


def on_frontier(points: Sequence[Point]) -> set[str]:
    """Names of the points no other point beats: none is both no larger and no worse,
    and strictly one of the two. Points without a measured quality take no part."""
    measured = [p for p in points if p.perplexity_increase is not None]
    names = set()
    for point in measured:
        assert point.perplexity_increase is not None
        dominated = any(
            other.bytes <= point.bytes
            and (other.perplexity_increase or 0.0) <= point.perplexity_increase
            and (
                other.bytes < point.bytes
                or (other.perplexity_increase or 0.0) < point.perplexity_increase
            )
            for other in measured
            if other is not point
        )
        if not dominated:
            names.add(point.name)
    return names


def with_frontier(picture: Picture) -> Picture:
    front = on_frontier(picture.points)
    points = tuple(
        replace(p, frontier=p.name in front) for p in sorted(picture.points, key=lambda p: p.bytes)
    )
    return replace(picture, points=points)


def _gate_verdict(entry: VariantStatus) -> bool | None:
    for condition in entry.conditions:
        if condition.type == ConditionType.QUALITY_GATE:
            return {"True": True, "False": False}.get(condition.status)
    return None


def from_status(
    status: CompressedModelStatus,
    title: str,
    recipes: Mapping[str, str] | None = None,
    gate: float | None = None,
    min_agreement: float | None = None,
    evaluated_on: str = "",
) -> Picture:
    """The picture of one CompressedModel's status (variants without an artifact yet are
    left out, and said so)."""
    served = status.serving.variant if status.serving else None
    points = []
    if status.source is not None and status.source.bytes:
        points.append(Point(BASE, status.source.bytes, 0.0, 1.0, recipe="bf16", base=True))
    waiting = []
    for entry in status.variants:
        if not entry.bytes:
            waiting.append(entry.name)
            continue
        metrics = entry.metrics
        points.append(
            Point(
                name=entry.name,
                bytes=entry.bytes,
                perplexity_increase=metrics.perplexity_increase if metrics else None,
                agreement=metrics.agreement if metrics else None,
                kl_divergence=metrics.kl_divergence if metrics else None,
                gpus=entry.footprint.gpus if entry.footprint else None,
                recipe=(recipes or {}).get(entry.name, ""),
                passed=_gate_verdict(entry),
                served=entry.name == served,
            )
        )
    notes = (f"not built yet: {', '.join(waiting)}",) if waiting else ()
    return with_frontier(
        Picture(title, tuple(points), gate, min_agreement, evaluated_on, notes=notes)
    )


def from_document(document: Mapping[str, Any]) -> Picture:
    """A CompressedModel as `kubectl get -o yaml` prints it: spec for the recipes and the
    gate, status for the measurements."""
    metadata = document.get("metadata") or {}
    name = f"{metadata.get('namespace', 'default')}/{metadata.get('name', '?')}"
    try:
        spec = CompressedModelSpec.model_validate(document.get("spec") or {})
        status = CompressedModelStatus.model_validate(document.get("status") or {})
    except ValueError as error:
        raise ReportError(f"{name} cannot be read: {error}") from None
    if not status.variants:
        raise ReportError(f"{name} has no status yet: the operator has not reported on it")
    return from_model(spec, status, name)


def from_model(spec: CompressedModelSpec, status: CompressedModelStatus, title: str) -> Picture:
    """The picture of a model whose spec is at hand: its recipes and its gate."""
    evaluation = spec.evaluation
    return from_status(
        status,
        title=title,
        recipes={v.name: v.describe() for v in spec.variants},
        gate=evaluation.max_perplexity_increase,
        min_agreement=evaluation.min_agreement,
        evaluated_on=evaluation.dataset.uri,
    )


def from_benchmark(document: Mapping[str, Any], gate: float | None = None) -> Picture:
    """`benchmarks/compression.py --json`: one row per variant, weights bytes against
    the base model's."""
    try:
        base_bytes = int(document["baseBytes"])
        rows = list(document["rows"])
        points = [Point(BASE, base_bytes, 0.0, 1.0, recipe="bf16", base=True)]
        for row in rows:
            increase = row.get("deltaPerplexity")
            points.append(
                Point(
                    name=str(row["name"]),
                    bytes=int(row["bytes"]),
                    perplexity_increase=increase,
                    agreement=row.get("agreement"),
                    kl_divergence=row.get("klDivergence"),
                    recipe=_recipe_text(row.get("recipe")),
                    passed=None if gate is None or increase is None else increase <= gate,
                )
            )
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ReportError(
            f"not a compression benchmark result (benchmarks/compression.py --json): {error}"
        ) from None
    evaluation = (document.get("evaluation") or {}).get("dataset", {}).get("uri", "")
    return with_frontier(
        Picture(str(document.get("model", "benchmark")), tuple(points), gate, None, evaluation)
    )


def _recipe_text(recipe: Any) -> str:
    """A benchmark row's recipe (a variant as the spec writes it) in the report's words."""
    from modelpress.api.steps import Variant

    if not isinstance(recipe, Mapping):
        return ""
    try:
        return Variant.model_validate({"name": "v", **recipe}).describe()
    except ValueError:
        return ""


def read(document: Any, gate: float | None = None) -> Picture:
    """Whichever of the three forms `document` is."""
    if not isinstance(document, Mapping):
        raise ReportError("expected a mapping (a CompressedModel, a status or a benchmark result)")
    if document.get("kind") == "CompressedModel":
        picture = from_document(document)
        return replace(picture, gate=gate) if gate is not None else picture
    if "rows" in document and "baseBytes" in document:
        return from_benchmark(document, gate)
    if "variants" in document and "conditions" in document:
        status = CompressedModelStatus.model_validate(document)
        return from_status(status, title="status", gate=gate)
    raise ReportError(
        "expected a CompressedModel (kubectl get -o yaml), a local run's status.json or "
        "the compression benchmark's JSON (benchmarks/compression.py --json)"
    )


def summary(picture: Picture) -> str:
    """The picture in words: one line per point, the frontier and the served variant."""
    base = picture.base_bytes
    lines = [f"{picture.title}: size vs quality"]
    if picture.evaluated_on:
        lines.append(f"quality measured on {picture.evaluated_on}")
    width = max([14, *(len(p.name) + 1 for p in picture.points)])
    header = (
        f"  {'':2}{'model':<{width}}{'bytes':>10}{'ratio':>8}{'Δppl':>9}{'agree':>8}{'KLD':>9}"
        "  gate"
    )
    lines.append(header)
    for point in picture.points:
        mark = ("*" if point.frontier else " ") + ("S" if point.served else " ")
        ratio = f"{point.bytes / base:.2f}x" if base else "-"
        delta = _percent(point.perplexity_increase)
        agreement = f"{point.agreement:.3f}" if point.agreement is not None else "-"
        divergence = f"{point.kl_divergence:.4f}" if point.kl_divergence is not None else "-"
        verdict = {True: "pass", False: "fail", None: "-"}[point.passed]
        lines.append(
            f"  {mark}{point.name:<{width}}{point.bytes / 1e6:>8.1f}MB{ratio:>8}{delta:>9}"
            f"{agreement:>8}{divergence:>9}  {verdict}"
        )
    if any(p.kl_divergence is not None for p in picture.points):
        lines.append("KLD: KL divergence from the base model, nats per token")
    front = [p.name for p in picture.points if p.frontier]
    lines.append("* on the frontier (nothing smaller is better): " + " → ".join(front))
    if picture.gate is not None:
        lines.append(f"gate: perplexity at most {picture.gate:+.0%} over the base model")
    served = picture.served
    if served is not None:
        lines.append(
            f"S served: {served.name}"
            + (f" ({served.bytes / base:.2f}x the base" if base else " (")
            + f", {_percent(served.perplexity_increase)} perplexity)"
        )
    lines += list(picture.notes)
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"
