"""The picture drawn with matplotlib: perplexity increase and agreement against size.

Left: perplexity increase over the base model (lower is better) against bytes, the
frontier as a step line through the points nothing smaller beats, the gate as a
horizontal line, the served variant ringed. Right: greedy-token agreement with the
base model (higher is better) against the same bytes.
"""

from __future__ import annotations

import io
from typing import Any

from modelpress.report.points import Picture, Point

WIDTH_INCHES, HEIGHT_INCHES, DPI = 12.0, 5.0, 100
SYMLOG_ABOVE = 60.0
PASSED, FAILED, UNJUDGED, BASE = "#1b9e77", "#d95f02", "#7570b3", "#222222"


class PlottingUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams["svg.hashsalt"] = "modelpress"  # stable ids: same picture, same SVG
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlottingUnavailable(
            "the report draws with matplotlib: pip install 'modelpress[report]'"
        ) from None
    return plt


def _colour(point: Point) -> str:
    if point.base:
        return BASE
    return {True: PASSED, False: FAILED, None: UNJUDGED}[point.passed]


def _scatter(axis: Any, points: list[Point], value: Any) -> None:
    for point in points:
        y = value(point)
        if y is None:
            continue
        x = point.bytes / 1e6
        axis.scatter(
            [x],
            [y],
            s=90 if point.served else 45,
            marker="D" if point.base else "o",
            color=_colour(point),
            edgecolors="#000000" if point.frontier else "none",
            linewidths=1.2,
            zorder=3,
        )
        if point.served:
            axis.scatter([x], [y], s=420, facecolors="none", edgecolors="#e6ab02", linewidths=2.5)
        label = point.name + (" (served)" if point.served else "")
        axis.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)


def figure(picture: Picture) -> Any:
    plt = _pyplot()
    points = list(picture.points)
    fig, (quality, agreement) = plt.subplots(
        1, 2, figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, constrained_layout=True
    )
    title = picture.title + (
        f" — quality on {picture.evaluated_on}" if picture.evaluated_on else ""
    )
    fig.suptitle(title, fontsize=11)

    def increase(point: Point) -> float | None:
        return None if point.perplexity_increase is None else point.perplexity_increase * 100

    _scatter(quality, points, increase)
    front = [p for p in points if p.frontier]
    if len(front) > 1:
        quality.step(
            [p.bytes / 1e6 for p in front],
            [increase(p) for p in front],
            where="post",
            linestyle="--",
            color="#666666",
            linewidth=1,
            label="Pareto frontier",
            zorder=2,
        )
    if picture.gate is not None:
        quality.axhline(
            picture.gate * 100, color=FAILED, linestyle=":", label=f"gate {picture.gate:+.0%}"
        )
    worst = max((p.perplexity_increase or 0.0) for p in points) * 100
    if worst > SYMLOG_ABOVE:
        # One broken variant (+300 %) would flatten the ones that matter (a few %):
        # linear up to 10 %, logarithmic beyond.
        quality.set_yscale("symlog", linthresh=10)
    quality.margins(x=0.1, y=0.1)
    quality.set_xlabel("size (MB)")
    quality.set_ylabel("perplexity increase over the base (%)  ↓ better")
    quality.grid(alpha=0.3)

    _scatter(agreement, points, lambda p: p.agreement)
    if picture.min_agreement is not None:
        agreement.axhline(
            picture.min_agreement,
            color=FAILED,
            linestyle=":",
            label=f"gate {picture.min_agreement:.2f}",
        )
    agreement.margins(x=0.1, y=0.1)
    agreement.set_xlabel("size (MB)")
    agreement.set_ylabel("greedy-token agreement with the base  ↑ better")
    agreement.grid(alpha=0.3)

    from matplotlib.lines import Line2D

    legend = [
        Line2D([], [], marker="D", linestyle="", color=BASE, label="base model"),
        Line2D([], [], marker="o", linestyle="", color=PASSED, label="passes the gate"),
        Line2D([], [], marker="o", linestyle="", color=FAILED, label="fails the gate"),
        Line2D([], [], marker="o", linestyle="", color=UNJUDGED, label="not judged"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgecolor="#e6ab02",
            markersize=12,
            label="served",
        ),
    ]
    handles, _ = quality.get_legend_handles_labels()
    quality.legend(handles=legend + handles, fontsize=8, loc="upper right")
    return fig


def render(picture: Picture, form: str) -> bytes:
    """The figure as PNG or SVG bytes."""
    plt = _pyplot()
    fig = figure(picture)
    buffer = io.BytesIO()
    # No creation date in the SVG: the same picture gives the same bytes.
    metadata = {"Date": None} if form == "svg" else None
    fig.savefig(buffer, format=form, metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()
