"""Reading manifests from files: every YAML document of a file, as mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DocumentError(ValueError):
    """A file that cannot be read as YAML manifests; the message names the file."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a file; a clear error when it cannot be read."""
    import yaml

    try:
        text = path.read_text()
    except OSError as error:
        raise DocumentError(f"cannot read {path}: {error.strerror}") from error
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise DocumentError(f"{path} is not valid YAML: {error}") from error
    for document in documents:
        if not isinstance(document, dict):
            raise DocumentError(f"{path}: every YAML document must be a mapping (an object)")
    return documents
