"""Text datasets: read a UTF-8 file from a store URI (or a local path) and cut it into
token windows.

The whole file is treated as one stream of tokens (no special tokens added), cut
into non-overlapping windows of `sequence_length` tokens. When the file holds more
windows than asked for, the chosen ones are spread evenly over it, so a sample
covers the whole text rather than its beginning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelpress.compress.errors import CompressionError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Text:
    """A dataset's content and where it came from."""

    uri: str
    content: str
    sha256: str


def read_text(uri: str, *, credentials: Any = None) -> Text:
    """The UTF-8 text at `uri` (`s3://…`, `file:///…`, or a plain local path)."""
    data = _read_bytes(uri, credentials)
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CompressionError(
            f"dataset {uri} is not UTF-8 text (byte {error.start}): convert it to UTF-8",
            reason="InvalidDataset",
        ) from None
    if not content.strip():
        raise CompressionError(
            f"dataset {uri} is empty: give a file with text", reason="InvalidDataset"
        )
    return Text(uri=uri, content=content, sha256=hashlib.sha256(data).hexdigest())


def _read_bytes(uri: str, credentials: Any) -> bytes:
    if "://" not in uri:
        path = Path(uri)
        if not path.is_file():
            raise CompressionError(
                f"dataset {uri} does not exist: give an existing text file",
                reason="DatasetNotFound",
            )
        return path.read_bytes()
    from modelpress.storage import InvalidURIError, open_store, parse_uri

    try:
        location = parse_uri(uri)
    except InvalidURIError as error:
        raise CompressionError(str(error), reason="InvalidDataset") from None
    if uri.endswith("/") or not location.name:
        raise CompressionError(
            f"dataset {location} names a directory: give the text file's full URI",
            reason="InvalidDataset",
        )
    data = open_store(str(location.parent()), credentials).get_bytes(location.name)
    if data is None:
        raise CompressionError(
            f"dataset {location} does not exist: upload it or fix the URI", reason="DatasetNotFound"
        )
    return data


Problem = Callable[[str], CompressionError]
"""Makes the error for one line's problem, naming the line and the expected shape."""
T = TypeVar("T")


def json_lines(
    content: str,
    parse: Callable[[dict[str, Any], Problem], T],
    *,
    where: str,
    shape: str,
    items: str,
) -> list[T]:
    """Every line of a JSON lines file, each object parsed by `parse(object, problem)`;
    blank lines are skipped. Every mistake names its line and the shape a line must have."""
    found = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue

        def problem(what: str, number: int = number) -> CompressionError:
            return CompressionError(
                f"{where} line {number}: {what}; each line must be {shape}",
                reason="InvalidDataset",
            )

        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise problem(f"not JSON ({error.msg})") from None
        if not isinstance(item, dict):
            raise problem("not a JSON object")
        found.append(parse(item, problem))
    if not found:
        raise CompressionError(f"{where} has no {items}", reason="InvalidDataset")
    return found


def check_disjoint(calibration: Text, evaluation: Text) -> None:
    """Quality measured on training text would look better than it is."""
    if calibration.sha256 == evaluation.sha256:
        raise CompressionError(
            f"calibration dataset {calibration.uri} and evaluation dataset {evaluation.uri} "
            "hold the same text: evaluate on held-out text",
            reason="InvalidDataset",
        )


def tokenize(tokenizer: Any, text: Text) -> list[int]:
    """The text as one stream of token ids, without special tokens."""
    return list(tokenizer(text.content, add_special_tokens=False)["input_ids"])


def window_starts(available_tokens: int, samples: int, sequence_length: int) -> list[int]:
    """Start offsets of `samples` non-overlapping windows spread evenly over the stream.

    Raises `CompressionError` when the stream holds fewer than `samples` windows.
    """
    capacity = available_tokens // sequence_length
    if capacity < samples:
        raise CompressionError(
            f"needs {samples} windows of {sequence_length} tokens "
            f"({samples * sequence_length} tokens) but the text has {available_tokens} tokens "
            f"({capacity} windows): lower samples or sequenceLength, or give more text",
            reason="DatasetTooSmall",
        )
    if samples == 1:
        return [0]
    step = (capacity - 1) / (samples - 1)
    return [round(index * step) * sequence_length for index in range(samples)]


def windows(tokens: list[int], samples: int, sequence_length: int, *, what: str) -> torch.Tensor:
    """A [samples, sequence_length] tensor of token windows; `what` names the dataset in errors."""
    import torch

    try:
        starts = window_starts(len(tokens), samples, sequence_length)
    except CompressionError as error:
        raise CompressionError(f"{what}: {error}", reason=error.reason) from None
    ids = torch.tensor(tokens, dtype=torch.long)
    return torch.stack([ids[start : start + sequence_length] for start in starts])
