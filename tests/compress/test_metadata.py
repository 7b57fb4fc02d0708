"""Manifest metadata figures and progress lines."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from modelpress.compress.checkpoint import weights_bytes
from modelpress.compress.metadata import bits_per_weight, source_of, tool_versions
from modelpress.compress.progress import Progress, format_seconds


def test_weights_bytes_counts_tensor_bytes_not_headers(tmp_path):
    save_file(
        {"a": torch.zeros(10, 3, dtype=torch.bfloat16), "b": torch.zeros(5, dtype=torch.int32)},
        tmp_path / "model-1.safetensors",
    )
    save_file(
        {"c": torch.zeros(7, dtype=torch.float32)},
        tmp_path / "model-2.safetensors",
        metadata={"format": "pt"},
    )
    assert weights_bytes(tmp_path) == 10 * 3 * 2 + 5 * 4 + 7 * 4
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) > weights_bytes(tmp_path)


def test_bits_per_weight_is_bytes_over_dense_parameters():
    assert bits_per_weight(200, 100) == 16.0
    assert bits_per_weight(53, 100) == pytest.approx(4.24)
    assert bits_per_weight(1, 0) == 0.0


def test_source_is_read_from_any_base_manifest_form():
    assert source_of({"source": {"huggingface": "org/m", "revision": "abc"}}, "x") == {
        "id": "org/m",
        "revision": "abc",
    }
    assert source_of({"source": {"uri": "s3://b/m/", "revision": "d1"}}, "x") == {
        "id": "s3://b/m/",
        "revision": "d1",
    }
    assert (
        source_of({"source": {"id": "gguf:pkg/f.gguf", "revision": "sha256:00"}}, "x")["id"]
        == "gguf:pkg/f.gguf"
    )
    assert source_of({}, "/local/dir") == {"id": "/local/dir", "revision": "unknown"}


def test_tool_versions_name_every_tool():
    versions = tool_versions()
    assert set(versions) == {
        "modelpress",
        "torch",
        "transformers",
        "llmcompressor",
        "compressed-tensors",
    }
    assert versions["torch"].startswith("2.")


def test_progress_reports_rate_and_eta_at_most_every_interval(caplog):
    now = [0.0]
    progress = Progress(
        "distill", total=10, unit="steps", start=2, interval=5, clock=lambda: now[0]
    )
    with caplog.at_level("INFO", logger="modelpress.compress.progress"):
        now[0] = 2.0
        progress.advance(1, loss="1.5")
        assert not caplog.records  # too soon
        now[0] = 6.0
        progress.advance(1, loss="1.2")
    assert progress.last_line == "distill: 4/10 steps, loss 1.2, elapsed 6s, ETA 18s"
    now[0] = 7.0
    progress.advance(6)
    assert progress.last_line.startswith("distill: 10/10 steps")  # the end is always reported
    assert format_seconds(3725) == "1h02m" and format_seconds(61) == "1m01s"
