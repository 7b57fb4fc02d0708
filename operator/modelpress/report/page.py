"""The picture as one self-contained HTML page: the chart inline (SVG), a table of every
point and the summary. No script, no stylesheet or font fetched from anywhere."""

from __future__ import annotations

from html import escape

from modelpress.report.points import Picture, summary

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.recipe { text-align: left; }
tr.frontier td:first-child { font-weight: bold; }
tr.served { background: #fff4d6; }
pre { background: #f6f6f6; padding: 1em; }
figure { margin: 0; }
svg { max-width: 100%; height: auto; }
"""


HEADERS = (
    "model", "recipe", "size", "vs base", "perplexity", "agreement", "KL divergence",
    "frontier", "gate",
)  # fmt: skip


def _cell(value: float | None, form: str) -> str:
    return f"<td>{'-' if value is None else form.format(value)}</td>"


def _cells(values: list[str], css: str = "") -> str:
    return "<tr" + (f' class="{css}"' if css else "") + ">" + "".join(values) + "</tr>"


def html(picture: Picture, svg: bytes) -> str:
    base = picture.base_bytes
    rows = []
    for point in picture.points:
        css = " ".join(
            c for c, on in (("frontier", point.frontier), ("served", point.served)) if on
        )
        cells = [
            f"<td>{escape(point.name)}{' (served)' if point.served else ''}</td>",
            f'<td class="recipe">{escape(point.recipe)}</td>',
            f"<td>{point.bytes / 1e6:.1f} MB</td>",
            _cell(point.bytes / base if base else None, "{:.2f}x"),
            _cell(point.perplexity_increase, "{:+.1%}"),
            _cell(point.agreement, "{:.3f}"),
            _cell(point.kl_divergence, "{:.4f}"),
            f"<td>{'yes' if point.frontier else ''}</td>",
            f"<td>{ {True: 'pass', False: 'fail', None: '-'}[point.passed] }</td>",
        ]
        rows.append(_cells(cells, css))
    chart = svg.decode()
    chart = chart[chart.index("<svg") :]  # drop the XML prologue and DOCTYPE
    header = "".join(f"<th>{h}</th>" for h in HEADERS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(picture.title)}: size vs quality</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(picture.title)}: size vs quality</h1>
<figure id="chart">{chart}</figure>
<table id="points">
<thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<pre id="summary">{escape(summary(picture))}</pre>
</body>
</html>
"""
