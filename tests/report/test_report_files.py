"""The PNG and the HTML page: the expected size and not blank; the page opens in headless
Chromium without an error, fetches nothing, and shows every point."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy
from PIL import Image
from tests.report.pictures import benchmark, model_document

from modelpress.report.chart import DPI, HEIGHT_INCHES, WIDTH_INCHES, render
from modelpress.report.points import from_benchmark, from_document
from modelpress.report.write import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_the_png_has_the_expected_size_and_is_not_blank(tmp_path: Path) -> None:
    png, _ = write_report(from_document(model_document()), tmp_path / "tiny")
    image = Image.open(png).convert("RGB")
    assert image.size == (int(WIDTH_INCHES * DPI), int(HEIGHT_INCHES * DPI))
    pixels = numpy.asarray(image).reshape(-1, 3)
    drawn = numpy.any(pixels != 255, axis=1).mean()
    assert drawn > 0.03, "more than the frame: axes, points, text"
    colours = {tuple(int(c) for c in p) for p in numpy.unique(pixels, axis=0)}
    assert len(colours) > 100, "colours of the points, lines and anti-aliased text"
    # Points passing the gate (green) and failing it (orange) are both drawn.
    assert (27, 158, 119) in colours and (217, 95, 2) in colours


def test_the_same_picture_gives_the_same_svg() -> None:
    picture = from_benchmark(benchmark(), gate=0.1)
    assert render(picture, "svg") == render(picture, "svg")


def _open(page_path: Path) -> tuple[dict[str, object], list[str], list[str]]:
    """Open the page in Chromium: (what the page shows, errors, URLs it requested)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/bootstrap --browser"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            shown = page.evaluate(
                """() => {
                    const svg = document.querySelector('#chart svg').getBoundingClientRect();
                    return {
                        svgWidth: svg.width, svgHeight: svg.height,
                        rows: document.querySelectorAll('#points tbody tr').length,
                        served: [...document.querySelectorAll('#points tr.served td')]
                            .map(td => td.textContent)[0],
                        scripts: document.querySelectorAll('script').length,
                        title: document.title,
                    };
                }"""
            )
        finally:
            browser.close()
    return shown, errors, requests


def test_the_page_loads_in_chromium_without_errors_and_fetches_nothing(tmp_path: Path) -> None:
    _, page = write_report(from_document(model_document()), tmp_path / "tiny")
    shown, errors, requests = _open(page)
    assert errors == []
    assert requests == [page.as_uri()], "self-contained: nothing but the page itself"
    assert shown["svgWidth"] > 400 and shown["svgHeight"] > 150
    assert shown["rows"] == 4  # the base and three variants
    assert shown["served"] == "w4 (served)"
    assert shown["scripts"] == 0


def test_text_from_the_input_is_shown_never_run(tmp_path: Path) -> None:
    document = benchmark() | {"model": "<script>alert('x')</script><img src=x onerror=alert(1)>"}
    _, page = write_report(from_benchmark(document), tmp_path / "hostile")
    shown, errors, requests = _open(page)
    assert errors == [] and shown["scripts"] == 0
    assert requests == [page.as_uri()]
    assert shown["title"].startswith("<script>")
