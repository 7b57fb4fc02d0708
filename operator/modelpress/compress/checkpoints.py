"""Resumable training checkpoints in a local directory or a store URI.

Layout under the root: `<fingerprint>/step-<N>/` holds one checkpoint and
`<fingerprint>/latest.json` names the newest complete one. The fingerprint is a
hash of everything that determines the training (base model, the steps up to and
including this one, their data), so a checkpoint is only ever resumed by the same
computation. A local root suits an emptyDir or volume that survives container
restarts; a store URI (`s3://…`) lets a rescheduled Job continue on another node.
Each checkpoint is written completely before `latest.json` points at it, and the
previous one is removed only afterwards, so a crash at any moment leaves one
usable checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LATEST = "latest.json"


def step_name(step: int) -> str:
    return f"step-{step:08d}"


class CheckpointStore:
    """Checkpoints of one computation (`fingerprint`) under `root` (a directory or URI)."""

    def __init__(
        self, root: str, fingerprint: str, *, scratch: Path, credentials: Any = None
    ) -> None:
        self.fingerprint = fingerprint
        self._remote = "://" in root
        self._credentials = credentials
        self._scratch = scratch / "checkpoints" / fingerprint
        if self._remote:
            from modelpress.storage import parse_uri

            self._uri = parse_uri(root).as_prefix().join(fingerprint + "/")
            self._local = self._scratch
        else:
            self._local = Path(root) / fingerprint

    def latest(self) -> tuple[int, Path] | None:
        """(step, local directory) of the newest complete checkpoint, or None."""
        record = self._read_latest()
        if record is None:
            return None
        step = int(record["step"])
        if not self._remote:
            return step, self._local / step_name(step)
        from modelpress.storage import fetch

        target = self._scratch / "resume" / step_name(step)
        fetch(str(self._uri.join(step_name(step) + "/")), target, credentials=self._credentials)
        return step, target

    def save(self, step: int, write: Callable[[Path], None]) -> None:
        """Write checkpoint `step` with `write(directory)`, then make it the latest."""
        previous = self._read_latest()
        if self._remote:
            self._save_remote(step, write)
        else:
            self._save_local(step, write)
        if previous is not None and int(previous["step"]) != step:
            self._remove(int(previous["step"]))
        log.info("checkpoint saved at step %d", step)

    def _save_local(self, step: int, write: Callable[[Path], None]) -> None:
        self._local.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self._local))
        try:
            write(staging)
            final = self._local / step_name(step)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        pointer = self._local / (LATEST + ".partial")
        pointer.write_text(json.dumps({"step": step}))
        os.replace(pointer, self._local / LATEST)

    def _save_remote(self, step: int, write: Callable[[Path], None]) -> None:
        from modelpress.storage import publish, write_json

        self._scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._scratch) as staging:
            write(Path(staging))
            publish(
                str(self._uri.join(step_name(step) + "/")),
                staging,
                {"kind": "checkpoint", "step": step},
                credentials=self._credentials,
            )
        write_json(str(self._uri.join(LATEST)), {"step": step}, credentials=self._credentials)

    def _read_latest(self) -> dict[str, Any] | None:
        if self._remote:
            from modelpress.storage import read_json

            record = read_json(str(self._uri.join(LATEST)), credentials=self._credentials)
        else:
            path = self._local / LATEST
            record = json.loads(path.read_text()) if path.is_file() else None
        return record if isinstance(record, dict) and "step" in record else None

    def _remove(self, step: int) -> None:
        if self._remote:
            from modelpress.storage import delete_artifact

            delete_artifact(
                str(self._uri.join(step_name(step) + "/")), credentials=self._credentials
            )
        else:
            shutil.rmtree(self._local / step_name(step), ignore_errors=True)
