"""Hugging Face Hub sources through huggingface_hub.

The Hub client is injected (anything with `model_info` and `hf_hub_download`
like `huggingface_hub.HfApi`), so tests and air-gapped runs never reach the
Hub. The token is passed to the client and scrubbed from every error.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from modelpress.sources.errors import SourceError
from modelpress.sources.policy import select_files
from modelpress.sources.spec import HuggingFaceSource
from modelpress.sources.token import scrub
from modelpress.storage.progress import ProgressCallback, ProgressTracker

log = logging.getLogger(__name__)


class HubApi(Protocol):
    """The slice of `huggingface_hub.HfApi` this module uses."""

    def model_info(self, repo_id: str, **kwargs: Any) -> Any: ...

    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: Any) -> str: ...


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int | None
    sha256: str | None  # the LFS sha256 when the Hub publishes one


@dataclass(frozen=True)
class HubRevision:
    """A repository pinned to a commit, with the files the policy selected."""

    repo: str
    commit: str
    files: tuple[HubFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size or 0 for entry in self.files)

    @property
    def expected_sha256(self) -> dict[str, str]:
        return {entry.path: entry.sha256 for entry in self.files if entry.sha256}


def default_api(token: str | None) -> HubApi:
    """The real client (imported lazily)."""
    from huggingface_hub import HfApi

    return cast(HubApi, HfApi(token=token))


@contextlib.contextmanager
def hub_errors(what: str, token: str | None) -> Iterator[None]:
    """Turn any Hub failure into a SourceError that never contains the token."""
    try:
        yield
    except SourceError:
        raise
    except Exception as error:
        detail = scrub(f"{type(error).__name__}: {error}", token)
        hint = ""
        name = type(error).__name__
        permanent = True
        if name in ("RepositoryNotFoundError", "GatedRepoError") or "401" in detail:
            hint = (
                "; check spec.source.huggingface.repo and that the token "
                "(spec.source.huggingface.tokenSecretRef) grants access"
            )
        elif name in ("RevisionNotFoundError", "EntryNotFoundError"):
            hint = "; check spec.source.huggingface.revision"
        else:
            permanent = False  # the network, the Hub's own trouble: worth another try
        raise SourceError(
            f"{what}: {detail.splitlines()[0] if detail else name}{hint}", permanent=permanent
        ) from None


def _lfs_sha256(sibling: Any) -> str | None:
    lfs = getattr(sibling, "lfs", None)
    if lfs is None:
        return None
    value = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    return str(value) if value else None


def resolve_revision(
    api: HubApi,
    source: HuggingFaceSource,
    token: str | None,
    revision: str | None = None,
    allow_patterns: Sequence[str] | None = None,
) -> HubRevision:
    """Pin `revision` (default: the spec's) to a commit sha and pick the files to import."""
    wanted = revision or source.revision
    with hub_errors(f"huggingface {source.repo}@{wanted}", token):
        info = api.model_info(source.repo, revision=wanted, files_metadata=True, token=token)
    commit = getattr(info, "sha", None)
    if not commit:
        raise SourceError(f"huggingface {source.repo}@{wanted}: the Hub returned no commit sha")
    siblings = {sibling.rfilename: sibling for sibling in (getattr(info, "siblings", None) or [])}
    selected = select_files(
        siblings,
        allow_patterns,
        allow_pickle=source.allow_pickle,
        source=f"huggingface {source.repo}@{commit[:12]}",
    )
    files = tuple(
        HubFile(path, getattr(siblings[path], "size", None), _lfs_sha256(siblings[path]))
        for path in selected
    )
    log.info("resolved %s@%s to commit %s (%d files)", source.repo, wanted, commit, len(files))
    return HubRevision(source.repo, commit, files)


def download_revision(
    api: HubApi,
    revision: HubRevision,
    staging: Path,
    token: str | None,
    progress: ProgressCallback | None = None,
) -> None:
    """Download the selected files of a pinned commit into `staging` (plain files, no cache)."""
    cache = staging.parent / (staging.name + ".hub-cache")
    tracker = ProgressTracker(
        "download",
        f"huggingface {revision.repo}@{revision.commit[:12]}",
        revision.total_bytes,
        progress,
    )
    for entry in revision.files:
        tracker.start_file(entry.path)
        with hub_errors(f"downloading {entry.path} from {revision.repo}", token):
            cached = api.hf_hub_download(
                revision.repo,
                entry.path,
                revision=revision.commit,
                cache_dir=str(cache),
                token=token,
            )
        target = staging / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(os.path.realpath(cached), target)
        tracker.advance(target.stat().st_size)
    tracker.finish()
