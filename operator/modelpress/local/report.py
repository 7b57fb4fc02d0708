"""The final report: one row per variant from the status, then where each artifact lives.

Rows are computed from the status alone (the one the operator would write), so
the table shows exactly what `kubectl get` and `status.variants[]` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpress.storage.progress import format_bytes

COLUMNS = ("variant", "recipe", "bytes", "ratio", "perplexity", "Δ", "footprint", "gate", "run")


@dataclass(frozen=True)
class Row:
    variant: str
    recipe: str
    bytes: str
    ratio: str
    perplexity: str
    delta: str
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
            self.footprint,
            self.gate,
            self.run,
        )


def _condition(entry: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in entry.get("conditions") or [] if c.get("type") == type_), {})


def _gate(entry: Mapping[str, Any]) -> str:
    condition = _condition(entry, "QualityGate")
    return {"True": "pass", "False": "FAIL"}.get(condition.get("status", ""), "—")


def variant_rows(
    status: Mapping[str, Any],
    recipes: Mapping[str, str],
    reused: Sequence[str],
    built: Sequence[str],
    failed: Sequence[str],
) -> list[Row]:
    served = (status.get("serving") or {}).get("variant")
    rows = []
    for entry in status.get("variants") or []:
        name = entry["name"]
        metrics = entry.get("metrics") or {}
        footprint = entry.get("footprint") or {}
        size = entry.get("bytes")
        ratio = entry.get("sizeRatio")
        perplexity = metrics.get("perplexity")
        increase = metrics.get("perplexityIncrease")
        total = footprint.get("totalBytes")
        if name in failed:
            run = "failed"
        elif name in built:
            run = "built"
        elif name in reused:
            run = "reused"
        else:
            run = _condition(entry, "Compressed").get("reason", "—")
        rows.append(
            Row(
                variant=name,
                recipe=recipes.get(name, ""),
                bytes=format_bytes(size) if isinstance(size, int) else "—",
                ratio=f"{ratio:.2f}x" if isinstance(ratio, int | float) else "—",
                perplexity=f"{perplexity:.3f}" if isinstance(perplexity, int | float) else "—",
                delta=f"{increase:+.1%}" if isinstance(increase, int | float) else "—",
                footprint=format_bytes(total) if isinstance(total, int) else "—",
                gate=_gate(entry),
                run=run,
                artifact=entry.get("artifactUri", "—"),
                served=name == served,
            )
        )
    return rows


def base_line(status: Mapping[str, Any]) -> str | None:
    source = status.get("source") or {}
    if not source.get("uri"):
        return None
    variants = status.get("variants") or []
    base_ppl = next(
        (
            v["metrics"]["basePerplexity"]
            for v in variants
            if isinstance((v.get("metrics") or {}).get("basePerplexity"), int | float)
        ),
        None,
    )
    size = source.get("bytes")
    parts = [f"base model {source.get('id')}"]
    if isinstance(size, int):
        parts.append(format_bytes(size))
    if base_ppl is not None:
        parts.append(f"perplexity {base_ppl:.3f}")
    return ", ".join(parts) + f": {source['uri']}"


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
    status: Mapping[str, Any],
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
    print("* served.  Δ: perplexity increase over the base model.", file=stream)
    line = base_line(status)
    if line:
        print(line, file=stream)
    print("artifacts:", file=stream)
    for text in artifact_lines(rows):
        print(text, file=stream)
    for condition in status.get("conditions") or []:
        if condition.get("type") != "Ready":
            mark = "✓" if condition.get("status") == "True" else "✗"
            print(f"{mark} {condition['type']}: {condition.get('message', '')}", file=stream)
