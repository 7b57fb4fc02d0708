"""The final report: one row per variant from the status, then where each artifact lives.

Rows are computed from the status alone (the one the operator would write), so
the table shows exactly what `kubectl get` and `status.variants[]` would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import ConditionType
from modelpress.api.status import CompressedModelStatus, Metrics, VariantStatus
from modelpress.plan.conditions import find
from modelpress.storage.progress import format_bytes

COLUMNS = (
    "variant", "recipe", "bytes", "ratio", "perplexity", "Δ", "tasks", "chat", "footprint",
    "gate", "run",
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    variant: str
    recipe: str
    bytes: str
    ratio: str
    perplexity: str
    delta: str
    tasks: str
    chat: str
    footprint: str
    gate: str
    run: str
    artifact: str
    served: bool

    def cells(self) -> tuple[str, ...]:
        name = f"{self.variant} *" if self.served else self.variant
        return (
            name,
            self.recipe,
            self.bytes,
            self.ratio,
            self.perplexity,
            self.delta,
            self.tasks,
            self.chat,
            self.footprint,
            self.gate,
            self.run,
        )


def _gate(entry: VariantStatus) -> str:
    condition = find(entry.conditions, ConditionType.QUALITY_GATE)
    return {"True": "pass", "False": "FAIL"}.get(condition.status if condition else "", "—")


def _run(entry: VariantStatus) -> str:
    compressed = find(entry.conditions, ConditionType.COMPRESSED)
    return compressed.reason if compressed else "—"


def variant_rows(
    status: CompressedModelStatus,
    recipes: Mapping[str, str],
    reused: Sequence[str],
    built: Sequence[str],
    failed: Sequence[str],
) -> list[Row]:
    served = status.serving.variant if status.serving else None
    rows = []
    for entry in status.variants:
        name = entry.name
        metrics = entry.metrics or Metrics()
        total = entry.footprint.total_bytes if entry.footprint else None
        if name in failed:
            run = "failed"
        elif name in built:
            run = "built"
        elif name in reused:
            run = "reused"
        else:
            run = _run(entry)
        rows.append(
            Row(
                variant=name,
                recipe=recipes.get(name, ""),
                bytes=_or_dash(entry.bytes, format_bytes),
                ratio=_or_dash(entry.size_ratio, lambda r: f"{r:.2f}x"),
                perplexity=_or_dash(metrics.perplexity, lambda p: f"{p:.3f}"),
                delta=_or_dash(metrics.perplexity_increase, lambda d: f"{d:+.1%}"),
                tasks=_tasks(metrics),
                chat=_or_dash(metrics.chat, lambda chat: f"{chat.kl_divergence:.3f}"),
                footprint=_or_dash(total, format_bytes),
                gate=_gate(entry),
                run=run,
                artifact=entry.artifact_uri or "—",
                served=name == served,
            )
        )
    return rows


def _tasks(metrics: Metrics) -> str:
    """Each task's recovery (accuracy as a share of the base model's)."""
    scores = [
        f"{score.name} {score.recovery:.0%}" if score.recovery is not None else f"{score.name} —"
        for score in metrics.tasks or []
    ]
    return ", ".join(scores) or "—"


def _or_dash(value: Any, show: Callable[[Any], str]) -> str:
    return "—" if value is None else show(value)


def base_line(status: CompressedModelStatus) -> str | None:
    source = status.source
    if source is None or not source.uri:
        return None
    base_ppl = next(
        (
            v.metrics.base_perplexity
            for v in status.variants
            if v.metrics is not None and v.metrics.base_perplexity is not None
        ),
        None,
    )
    parts = [f"base model {source.id}"]
    if source.bytes is not None:
        parts.append(format_bytes(source.bytes))
    if base_ppl is not None:
        parts.append(f"perplexity {base_ppl:.3f}")
    return ", ".join(parts) + f": {source.uri}"


def plain_table(rows: Sequence[Row]) -> str:
    """Aligned text columns, for logs and terminals alike."""
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def rich_table(rows: Sequence[Row]) -> Any:
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for column in COLUMNS:
        numeric = column in ("bytes", "ratio", "perplexity", "Δ", "footprint")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "recipe")
    for row in rows:
        style = "bold" if row.served else None
        table.add_row(*row.cells(), style=style)
    return table


def artifact_lines(rows: Sequence[Row]) -> list[str]:
    width = max((len(row.variant) for row in rows), default=0)
    return [f"  {row.variant.ljust(width)}  {row.artifact}" for row in rows]


def render(
    status: CompressedModelStatus,
    recipes: Mapping[str, str],
    reused: Sequence[str],
    built: Sequence[str],
    failed: Sequence[str],
    *,
    rich: bool,
    stream: Any,
) -> None:
    """Print the table, the base model, the artifacts and the conditions that matter."""
    rows = variant_rows(status, recipes, reused, built, failed)
    if rich:
        from rich.console import Console

        console = Console(file=stream, highlight=False)
        console.print(rich_table(rows))
    else:
        print(plain_table(rows), file=stream)
    print(
        "* served.  Δ: perplexity increase over the base model.  tasks: accuracy as a share "
        "of the base model's.  chat: KL divergence from the base model on its answers to "
        "the chat prompts (nats per token).",
        file=stream,
    )
    line = base_line(status)
    if line:
        print(line, file=stream)
    print("artifacts:", file=stream)
    for text in artifact_lines(rows):
        print(text, file=stream)
    for condition in status.conditions:
        # Reconciling and Stalled only mirror Ready for kstatus (True there is bad news).
        mirrors = (ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED)
        if condition.type not in mirrors:
            mark = "✓" if condition.status == "True" else "✗"
            print(f"{mark} {condition.type}: {condition.message}", file=stream)
