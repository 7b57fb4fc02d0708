"""What the base model scored, kept once for every variant of it.

A reference is a file named by a content key (what was measured, on which base) under
a place: a local directory (`<place>/<key>/<name>`) or a store prefix
(`<storage.uri>/evaluations/`), where it is published like any artifact, with every
file's sha256, and fetched with every sha256 checked. The first Job of a base writes
it; the others read it instead of scoring the base again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.compress.errors import CompressionError

if TYPE_CHECKING:
    from modelpress.storage import Credentials

log = logging.getLogger(__name__)


def _is_uri(place: str | Path) -> bool:
    return isinstance(place, str) and "://" in place


def load_file(
    place: str | Path | None, key: str, name: str, credentials: Credentials | None = None
) -> bytes | None:
    """The reference file's bytes, or None when none was kept yet."""
    if place is None:
        return None
    if not _is_uri(place):
        path = Path(place) / key / name
        if not path.is_file():
            return None
        log.info("reusing the base model's %s from %s", name, path)
        return path.read_bytes()
    from modelpress.storage import ArtifactNotFoundError, fetch

    uri = f"{str(place).rstrip('/')}/{key}/"
    with tempfile.TemporaryDirectory(prefix="modelpress-reference-") as temp:
        try:
            fetch(uri, temp, credentials=credentials)
        except ArtifactNotFoundError:
            return None  # the first Job of this base: it scores the base and publishes
        kept = Path(temp) / name
        if not kept.is_file():
            raise CompressionError(
                f"{uri} is published but holds no {name}: remove it, and the next Job "
                "writes it again",
                reason="InvalidDataset",
            )
        log.info("reusing the base model's %s from %s", name, uri)
        return kept.read_bytes()


def save_file(
    place: str | Path | None,
    key: str,
    name: str,
    data: bytes,
    metadata: dict[str, Any],
    credentials: Credentials | None = None,
) -> None:
    """Keep the reference file for the next variant (see `load_file`); a local file is
    written whole or not at all."""
    if place is None:
        return
    if not _is_uri(place):
        directory = Path(place) / key
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, directory / name)
        return
    from modelpress.storage import publish

    with tempfile.TemporaryDirectory(prefix="modelpress-reference-") as temp:
        (Path(temp) / name).write_bytes(data)
        publish(
            f"{str(place).rstrip('/')}/{key}/",
            temp,
            metadata | {"key": key},
            credentials=credentials,
        )
