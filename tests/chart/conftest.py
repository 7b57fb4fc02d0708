"""Fixtures of the chart tests: the loaded chart and each value set's rendering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
from chart_render import CHART_DIR, VALUE_SETS, render_set, rendered_set


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(params=sorted(VALUE_SETS))
def value_set(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rendered(value_set: str) -> dict[str, str]:
    return render_set(value_set)


@pytest.fixture
def objects(value_set: str) -> list[dict[str, Any]]:
    return rendered_set(value_set)
