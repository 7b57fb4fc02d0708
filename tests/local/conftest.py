"""Fixtures for local mode: a fake vLLM environment, a store, small manifests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_ISOLATED_PREFIXES = ("AWS_", "MODELPRESS_", "HF_")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, Hub tokens or modelpress settings of the caller leak into a test."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """A virtual-environment-shaped directory whose python can import a (fake) `vllm`.

    Enough for discovery and argument checks; it cannot serve.
    """
    packages = tmp_path / "fake-vllm-site"
    (packages / "vllm").mkdir(parents=True)
    (packages / "vllm" / "__init__.py").write_text("__version__ = '0.0-fake'\n")
    venv = tmp_path / "fake-vllm-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{packages}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return venv


@pytest.fixture
def spec_file() -> Callable[..., Path]:
    """`spec_file(path, **overrides)` writes a small CompressedModel file."""
    return write_spec


def write_spec(path: Path, **overrides: str) -> Path:
    """A small CompressedModel file; `overrides` replace whole top-level YAML lines."""
    fields = {
        "source": "  source: {uri: file:///nonexistent/model/}",
        "storage": f"  storage: {{uri: file://{path.parent}/store/}}",
        "variants": "  variants:\n    - {name: w4, quantize: {scheme: W4A16, algorithm: rtn, groupSize: 64}}",
        "evaluation": f"  evaluation: {{dataset: {{uri: file://{path.parent}/eval.txt}}}}",
        "serving": "  serving: {variant: auto}",
    }
    fields.update(overrides)
    text = (
        "apiVersion: modelpress.dev/v1alpha1\nkind: CompressedModel\n"
        "metadata: {name: tiny}\nspec:\n" + "\n".join(fields.values()) + "\n"
    )
    path.write_text(text)
    return path
