"""What the planner is told in local mode: the store as it is, and the local stand-ins
for Jobs and the serving Deployment.

The store is read with the operator's own reader, so both see the same source
record, base model and artifacts. Jobs that ran here become `JobState`s with the
same conditions a cluster would report (Complete, or Failed with a reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.local.jobs import JobResult
from modelpress.plan import names
from modelpress.plan.observed import DeploymentState, JobState, Observed, ServiceState
from modelpress.plan.recipes import variant_locations

#: Lines of a failed container's log quoted in the status, as a pod's
#: terminationMessagePolicy FallbackToLogsOnError would quote them.
FAILURE_LINES = 3


def job_state(job: Mapping[str, Any], result: JobResult) -> JobState:
    """The state a cluster would report for `job` after this local attempt."""
    metadata = job.get("metadata") or {}
    labels = metadata.get("labels") or {}
    failed = result.failed
    reason = message = None
    if failed is not None:
        if failed.timed_out:
            reason = "DeadlineExceeded"
            message = "Job was active longer than specified deadline"
        else:
            reason = "ProcessFailed"
            message = f"exited with code {failed.exit_code}; log: {failed.log_path}"
    return JobState(
        name=metadata.get("name", ""),
        component=labels.get(names.LABEL_COMPONENT),
        variant=labels.get(names.LABEL_VARIANT),
        succeeded=1 if result.ok else 0,
        failed=0 if result.ok else 1,
        complete=result.ok,
        failure_reason=reason,
        failure_message=message,
        backoff_limit=0,
    )


def failure_lines(result: JobResult) -> str | None:
    failed = result.failed
    if failed is None:
        return None
    return " | ".join(failed.tail[-FAILURE_LINES:]) or None


def deployment_state(deployment: Mapping[str, Any], ready: bool) -> DeploymentState:
    """A local server for `deployment`: one replica, ready or not."""
    metadata = deployment.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    spec = deployment.get("spec") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    gpus = annotations.get(f"{names.DOMAIN}/gpus")
    count = 1 if ready else 0
    return DeploymentState(
        name=metadata.get("name", ""),
        spec_hash=annotations.get(names.ANNOTATION_SPEC_HASH),
        variant=labels.get(names.LABEL_VARIANT),
        key=labels.get(names.LABEL_KEY),
        strategy=(spec.get("strategy") or {}).get("type"),
        gpus=int(gpus) if gpus and gpus.isdigit() else None,
        replicas=1,
        ready_replicas=count,
        updated_replicas=count,
        available_replicas=count,
    )


def service_state(service: Mapping[str, Any]) -> ServiceState:
    metadata = service.get("metadata") or {}
    return ServiceState(
        name=metadata.get("name", ""),
        spec_hash=names.spec_hash(service),
    )


@dataclass
class LocalWorld:
    """Everything observed so far in this run, besides the store."""

    spec: CompressedModelSpec
    config: OperatorConfig
    jobs: dict[str, JobState] = field(default_factory=dict)
    job_messages: dict[str, str] = field(default_factory=dict)
    deployment: DeploymentState | None = None
    service: ServiceState | None = None
    _reader: Any = None

    def __post_init__(self) -> None:
        from modelpress.storeview import StoreReader

        # Committed manifests never change; what is missing is read again every time.
        self._reader = StoreReader(cache_seconds=24 * 3600)

    def record_job(self, job: Mapping[str, Any], result: JobResult) -> JobState:
        state = job_state(job, result)
        self.jobs[state.name] = state
        lines = failure_lines(result)
        if lines:
            self.job_messages[state.name] = lines
        return state

    def observe(self) -> Observed:
        extra = [self.deployment.key] if self.deployment and self.deployment.key else []
        view = self._reader.view(
            self.spec,
            None,
            lambda record: variant_locations(self.spec, record, self.config),
            extra,
        )
        return Observed(
            source=view.source,
            base=view.base,
            artifacts=view.artifacts,
            corrupt_artifacts=view.corrupt,
            jobs=tuple(self.jobs.values()),
            job_messages=dict(self.job_messages),
            deployment=self.deployment,
            service=self.service,
        )
