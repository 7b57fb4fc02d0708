"""Write the picture next to each other: PREFIX.png and PREFIX.html."""

from __future__ import annotations

from pathlib import Path

from modelpress.report.chart import render
from modelpress.report.page import html
from modelpress.report.points import Picture


def write_report(picture: Picture, prefix: Path) -> tuple[Path, Path]:
    """The PNG and the self-contained HTML page; returns their paths."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png = prefix.with_name(prefix.name + ".png")
    page = prefix.with_name(prefix.name + ".html")
    png.write_bytes(render(picture, "png"))
    page.write_text(html(picture, render(picture, "svg")), encoding="utf-8")
    return png, page
