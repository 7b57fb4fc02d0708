"""Garbage collection of what publishing leaves behind: artifact prefixes that never got a
manifest, objects of committed artifacts their manifest does not list (a losing
writer's blobs, temp files), distillation checkpoints of committed artifacts, and
multipart uploads never completed.

A publish in progress keeps its prefix's newest object fresh (its lease is written
every minute, `artifacts.Lease`), so a threshold above a few minutes never takes
files from under a running publish, however long one file takes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelpress.storage.artifacts import read_manifest
from modelpress.storage.credentials import Credentials
from modelpress.storage.manifest import MANIFEST_NAME
from modelpress.storage.stores import open_store

log = logging.getLogger(__name__)

# Top-level folders whose children are artifact prefixes (see docs/architecture.md).
ARTIFACT_FOLDERS = ("models", "artifacts")
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class StagingPrefix:
    """An uncommitted prefix: where, how much, and how long since anything was written."""

    uri: str
    objects: int
    bytes: int
    newest: datetime
    age_seconds: float


@dataclass
class GcReport:
    store: str
    older_than_seconds: float
    dry_run: bool
    committed: int = 0
    removed: list[StagingPrefix] = field(default_factory=list)
    kept: list[StagingPrefix] = field(default_factory=list)
    unlisted: list[StagingPrefix] = field(default_factory=list)
    """Objects inside committed artifacts that their manifest does not list."""
    checkpoints: list[StagingPrefix] = field(default_factory=list)
    """Distillation checkpoints of artifacts now committed (no Job resumes from them)."""
    aborted_uploads: int = 0

    @property
    def removed_bytes(self) -> int:
        return sum(prefix.bytes for prefix in self.removed + self.unlisted + self.checkpoints)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for group in ("removed", "kept", "unlisted", "checkpoints"):
            for item in data[group]:
                item["newest"] = item["newest"].isoformat()
        data["removed_bytes"] = self.removed_bytes
        return data


def gc(
    store_uri: str,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    credentials: Credentials | None = None,
) -> GcReport:
    """Remove `models/*/` and `artifacts/*/` prefixes without a manifest whose newest
    object is older than `older_than`; younger ones may still be being published."""
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    store = open_store(store_uri, credentials)
    moment = now or datetime.now(UTC)
    report = GcReport(store.uri, older_than.total_seconds(), dry_run)
    for folder in ARTIFACT_FOLDERS:
        groups: dict[str, list[Any]] = {}
        for info in store.list(folder + "/"):
            parts = info.key.split("/", 2)
            if len(parts) < 3:
                continue  # a stray object directly under the folder; not an artifact
            groups.setdefault(f"{parts[0]}/{parts[1]}/", []).append(info)
        for prefix, objects in sorted(groups.items()):
            if any(info.key == prefix + MANIFEST_NAME for info in objects):
                report.committed += 1
                _collect_unlisted(store, prefix, objects, moment, older_than, dry_run, report)
                continue
            newest = max(info.modified for info in objects)
            staging = StagingPrefix(
                uri=store.uri_for(prefix),
                objects=len(objects),
                bytes=sum(info.size for info in objects),
                newest=newest,
                age_seconds=(moment - newest).total_seconds(),
            )
            if moment - newest < older_than:
                report.kept.append(staging)
                continue
            report.removed.append(staging)
            if not dry_run:
                # Re-check: a publisher may have committed since the listing.
                if store.get_bytes(prefix + MANIFEST_NAME) is not None:
                    report.removed.pop()
                    report.committed += 1
                    continue
                log.info("removing staging leftover %s (%d objects)", staging.uri, staging.objects)
                store.delete(info.key for info in objects)
    _collect_checkpoints(store, moment, older_than, dry_run, report)
    report.aborted_uploads = store.abort_stale_uploads(moment - older_than, dry_run=dry_run)
    return report


def _collect_checkpoints(
    store: Any, moment: datetime, older_than: timedelta, dry_run: bool, report: GcReport
) -> None:
    """`checkpoints/<key>/` once `artifacts/<key>/` is committed: training is over."""
    groups: dict[str, list[Any]] = {}
    for info in store.list(CHECKPOINTS + "/"):
        parts = info.key.split("/", 2)
        if len(parts) == 3:
            groups.setdefault(parts[1], []).append(info)
    for key, objects in sorted(groups.items()):
        newest = max(info.modified for info in objects)
        if moment - newest < older_than:
            continue
        if store.get_bytes(f"artifacts/{key}/{MANIFEST_NAME}") is None:
            continue  # still training, or failed: a rescheduled Job resumes from them
        report.checkpoints.append(
            StagingPrefix(
                uri=store.uri_for(f"{CHECKPOINTS}/{key}/"),
                objects=len(objects),
                bytes=sum(info.size for info in objects),
                newest=newest,
                age_seconds=(moment - newest).total_seconds(),
            )
        )
        if not dry_run:
            store.delete(info.key for info in objects)


def _collect_unlisted(
    store: Any,
    prefix: str,
    objects: list[Any],
    moment: datetime,
    older_than: timedelta,
    dry_run: bool,
    report: GcReport,
) -> None:
    """Old objects of a committed artifact that its manifest does not list."""
    manifest = read_manifest(store.uri_for(prefix))
    if manifest is None:
        return
    listed = {prefix + MANIFEST_NAME, *(prefix + entry.key for entry in manifest.files)}
    stale = [
        info for info in objects if info.key not in listed and moment - info.modified >= older_than
    ]
    if not stale:
        return
    newest = max(info.modified for info in stale)
    report.unlisted.append(
        StagingPrefix(
            uri=store.uri_for(prefix),
            objects=len(stale),
            bytes=sum(info.size for info in stale),
            newest=newest,
            age_seconds=(moment - newest).total_seconds(),
        )
    )
    if not dry_run:
        log.info("removing %d object(s) %s does not list", len(stale), store.uri_for(prefix))
        store.delete(info.key for info in stale)
