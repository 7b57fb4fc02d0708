"""What the planner decided about one variant: shared by the modules that decide it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpress.api.reasons import Reason
from modelpress.api.status import FailedJob
from modelpress.api.steps import Variant
from modelpress.plan.fit import Fit
from modelpress.plan.observed import Artifact
from modelpress.plan.progress import Verdict


@dataclass(frozen=True)
class VariantPlan:
    """What the planner decided about one variant."""

    variant: Variant
    compressed: Verdict
    """Published once the artifact exists; else why not yet (or why never)."""
    key: str | None = None
    uri: str | None = None
    artifact: Artifact | None = None
    job_name: str | None = None
    """The variant's Job, to keep (and to create when `job` is set)."""
    job: dict[str, Any] | None = None
    """The Job to create: not seen yet and the artifact is missing."""
    stale_job: str | None = None
    """A failed Job of this variant with other settings, to delete so it runs again."""
    failed_job: FailedJob | None = None
    """The failure to remember once the Job is gone (see `api.status.FailedJob`)."""
    fit: Fit | None = None
    gate: Verdict | None = None

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def blocked(self) -> bool:
        """The variant cannot be built as specified (a failed Job, a GPU that cannot hold it)."""
        return self.artifact is None and self.compressed.failed

    @property
    def passed(self) -> bool:
        return self.gate is not None and self.gate.reason is Reason.PASSED
