"""Datasets: reading from URIs, token windows, held-out checks."""

from __future__ import annotations

import pytest

from modelpress.compress.errors import CompressionError
from modelpress.compress.text import check_disjoint, read_text, window_starts, windows


def test_windows_are_spread_over_the_text_without_overlap():
    starts = window_starts(1000, 4, 100)
    assert starts == [0, 300, 600, 900]
    assert window_starts(1000, 1, 100) == [0]
    assert window_starts(250, 2, 100) == [0, 100]


def test_too_little_text_says_how_much_is_needed():
    with pytest.raises(
        CompressionError,
        match=r"needs 3 windows of 100 tokens \(300 tokens\) but the text has 250 tokens",
    ) as caught:
        window_starts(250, 3, 100)
    assert caught.value.reason == "DatasetTooSmall"


def test_windows_names_the_dataset_in_its_error():
    assert windows(list(range(10)), 2, 5, what="x").tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    with pytest.raises(CompressionError, match=r"^evaluation dataset s3://b/e\.txt: needs"):
        windows(list(range(10)), 3, 5, what="evaluation dataset s3://b/e.txt")


def test_read_text_from_file_uri_and_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Some text.\n\nMore text.\n")
    text = read_text(f"file://{good}")
    assert text.content.startswith("Some text.") and len(text.sha256) == 64
    assert read_text(str(good)).sha256 == text.sha256
    with pytest.raises(CompressionError, match="does not exist") as caught:
        read_text(f"file://{tmp_path}/missing.txt")
    assert caught.value.reason == "DatasetNotFound"
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CompressionError, match="not UTF-8"):
        read_text(str(binary))
    with pytest.raises(CompressionError, match="names a directory"):
        read_text(f"file://{tmp_path}/")


def test_same_text_under_two_names_is_not_held_out(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("identical")
    second.write_text("identical")
    with pytest.raises(CompressionError, match="hold the same text"):
        check_disjoint(read_text(str(first)), read_text(str(second)))
