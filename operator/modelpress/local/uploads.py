"""Uploads a failed local Job left half done: artifact prefixes with files and no
manifest, found before the Job and removed after it, so the local store keeps no
prefix that nothing will ever publish."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path


def unpublished_prefixes(store: str) -> set[str]:
    """Artifact prefixes in the store that have files but no manifest."""
    from modelpress.storage import gc

    report = gc(store, timedelta(0), dry_run=True)
    return {prefix.uri for prefix in report.removed}


def remove_unpublished(store: str, before: set[str]) -> list[str]:
    """Delete prefixes left without a manifest since `before` was taken; their URIs."""
    from modelpress.storage import delete_artifact, parse_uri, read_manifest

    removed = []
    for uri in sorted(unpublished_prefixes(store) - before):
        if read_manifest(uri) is None:
            delete_artifact(uri)
            location = parse_uri(uri)
            if location.scheme == "file":
                with contextlib.suppress(OSError):
                    Path(location.path).rmdir()  # the now empty artifact directory
            removed.append(uri)
    return removed
