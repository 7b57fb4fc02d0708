"""What the planner is told about the world: store contents and child objects.

The handlers fill these from the API server and the store; local mode fills them
from processes and a local directory. Each is small and immutable, so the
operator can keep thousands of them in memory (kopf indexes) cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelpress.api.artifact import VariantMetadata
from modelpress.api.reasons import Reason
from modelpress.api.status import Metrics
from modelpress.plan import names
from modelpress.plan.conditions import ending
from modelpress.plan.drift import projection

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """`sources/<source-key>.json`: a source resolved once."""

    id: str
    revision: str
    uri: str
    key: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceRecord:
        return cls(
            id=str(data["id"]),
            revision=str(data["revision"]),
            uri=str(data["uri"]),
            key=str(data["key"]),
        )


@dataclass(frozen=True, slots=True)
class Artifact:
    """A committed artifact (base model or variant): its manifest's numbers and metadata."""

    uri: str
    total_bytes: int
    weights_bytes: int
    metadata: VariantMetadata = field(default_factory=VariantMetadata)
    config: Mapping[str, Any] | None = None
    """The model's config.json: the file for a base model, metadata.modelConfig for a variant."""

    @classmethod
    def from_manifest(
        cls, uri: str, manifest: Any, config: Mapping[str, Any] | None = None
    ) -> Artifact:
        """From a `modelpress.storage.Manifest` (files, total_bytes, metadata)."""
        metadata = VariantMetadata.read(manifest.metadata)
        weights = sum(f.bytes for f in manifest.files if f.path.endswith(WEIGHT_SUFFIXES))
        if metadata.weights_bytes is not None and metadata.weights_bytes > 0:
            weights = metadata.weights_bytes
        if config is None:
            config = metadata.model_config_
        return cls(
            uri=uri,
            total_bytes=int(manifest.total_bytes),
            weights_bytes=weights or int(manifest.total_bytes),
            metadata=metadata,
            config=config,
        )

    @property
    def metrics(self) -> Metrics | None:
        return self.metadata.metrics


@dataclass(frozen=True, slots=True)
class JobState:
    """The parts of a Job the planner reads."""

    name: str
    owner_uid: str | None = None
    component: str | None = None
    variant: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failure_reason: str | None = None
    """The Failed condition's reason (BackoffLimitExceeded, DeadlineExceeded...), once failed."""
    failure_message: str | None = None
    backoff_limit: int | None = None
    spec_hash: str | None = None
    """Hash of the settings the Job was created with (names.ANNOTATION_SPEC_HASH)."""
    ready: int | None = None
    """Pods running and ready (None from API servers that do not count them)."""
    memory_limit: str | None = None
    """The memory limit of its container, for an out-of-memory message."""
    indexed: bool = False
    """A distillation over nodes: an indexed Job beside a headless Service, or a JobSet."""
    kind: str = "Job"

    @property
    def is_failed(self) -> bool:
        return self.failure_reason is not None

    @property
    def finished(self) -> bool:
        return self.complete or self.is_failed

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> JobState:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        status = obj.get("status") or {}
        complete, failure_reason, failure_message = ending(status, "Complete")
        return cls(
            name=metadata.get("name", ""),
            owner_uid=owner_uid(metadata),
            component=labels.get(names.LABEL_COMPONENT),
            variant=labels.get(names.LABEL_VARIANT),
            active=int(status.get("active") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            complete=complete,
            failure_reason=failure_reason,
            failure_message=failure_message,
            backoff_limit=(obj.get("spec") or {}).get("backoffLimit"),
            spec_hash=names.spec_hash(obj),
            ready=status.get("ready"),
            memory_limit=_memory_limit(obj),
            indexed=(obj.get("spec") or {}).get("completionMode") == "Indexed",
        )


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """The parts of the serving Deployment the planner reads."""

    name: str
    owner_uid: str | None = None
    spec_hash: str | None = None
    variant: str | None = None
    key: str | None = None
    strategy: str | None = None
    gpus: int | None = None
    replicas: int = 1
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    generation: int | None = None
    observed_generation: int | None = None
    stalled_message: str | None = None
    """Set when the rollout exceeded its progress deadline."""
    autoscaler: str | None = None
    """The kind of the autoscaler that scales it (names.ANNOTATION_AUTOSCALER), if any."""
    live: Mapping[str, Any] | None = field(default=None, compare=False)
    """What runs (replicas, containers' images, commands, env, resources): `plan.drift`."""

    @property
    def rolled_out(self) -> bool:
        """The latest template runs on every replica and all of them are ready."""
        caught_up = (
            self.generation is None
            or self.observed_generation is None
            or self.observed_generation >= self.generation
        )
        return (
            caught_up
            and self.updated_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
            and self.available_replicas >= self.replicas
        )

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> DeploymentState:
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        spec = obj.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = obj.get("status") or {}
        stalled = None
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Progressing" and condition.get("reason") == (
                "ProgressDeadlineExceeded"
            ):
                stalled = condition.get("message") or "progress deadline exceeded"
        gpus = annotations.get(f"{names.DOMAIN}/gpus")
        return cls(
            name=metadata.get("name", ""),
            owner_uid=owner_uid(metadata),
            spec_hash=annotations.get(names.ANNOTATION_SPEC_HASH),
            variant=template_labels.get(names.LABEL_VARIANT),
            key=template_labels.get(names.LABEL_KEY),
            strategy=(spec.get("strategy") or {}).get("type"),
            gpus=int(gpus) if gpus and gpus.isdigit() else None,
            replicas=int(spec.get("replicas", 1)),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            generation=metadata.get("generation"),
            observed_generation=status.get("observedGeneration"),
            stalled_message=stalled,
            autoscaler=annotations.get(names.ANNOTATION_AUTOSCALER),
            live=projection(obj),
        )


def leader_worker_set_state(obj: Mapping[str, Any]) -> DeploymentState:
    """A LeaderWorkerSet read as the planner reads a Deployment: its groups are replicas,
    ready when every pod of the group is."""
    state = DeploymentState.from_object(obj)
    status = obj.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    return replace(
        state,
        strategy="RollingUpdate",
        updated_replicas=int(status.get("updatedReplicas") or 0),
        available_replicas=ready,
        ready_replicas=ready,
        observed_generation=None,  # LWS reports none: its counts are per template hash
    )


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    owner_uid: str | None = None
    spec_hash: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ServiceState:
        metadata = obj.get("metadata") or {}
        return cls(
            name=metadata.get("name", ""),
            owner_uid=owner_uid(metadata),
            spec_hash=names.spec_hash(obj),
        )


@dataclass(frozen=True, slots=True)
class AutoscalerState:
    """The model's ScaledObject or HorizontalPodAutoscaler as seen."""

    kind: str
    name: str
    owner_uid: str | None = None
    spec_hash: str | None = None
    problem: str | None = None
    """Why it does not scale, as its own conditions say (KEDA's Ready, the HPA's
    AbleToScale and ScalingActive), or None."""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> AutoscalerState:
        metadata = obj.get("metadata") or {}
        problem = None
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition.get("type") in ("Ready", "AbleToScale", "ScalingActive") and (
                condition.get("status") == "False"
            ):
                problem = condition.get("message") or condition.get("reason") or "not ready"
                break
        return cls(
            kind=str(obj.get("kind", "")),
            name=metadata.get("name", ""),
            owner_uid=owner_uid(metadata),
            spec_hash=names.spec_hash(obj),
            problem=problem,
        )


@dataclass(frozen=True, slots=True)
class PodTiming:
    """When a serving pod was created, pulled its artifact, started vLLM and became ready."""

    name: str
    key: str | None = None
    created: str | None = None
    pull_started: str | None = None
    pull_finished: str | None = None
    server_started: str | None = None
    ready_at: str | None = None

    @classmethod
    def from_object(cls, pod: Mapping[str, Any]) -> PodTiming:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}

        def state(kind: str, container: str, phase: str) -> Mapping[str, Any]:
            for entry in status.get(kind) or []:
                if entry.get("name") == container:
                    return ((entry.get("state") or {}).get(phase)) or {}
            return {}

        pull = state("initContainerStatuses", "pull", "terminated")
        ready_at = next(
            (
                c.get("lastTransitionTime")
                for c in status.get("conditions") or []
                if c.get("type") == "Ready" and c.get("status") == "True"
            ),
            None,
        )
        return cls(
            name=metadata.get("name", ""),
            key=(metadata.get("labels") or {}).get(names.LABEL_KEY),
            created=metadata.get("creationTimestamp"),
            pull_started=pull.get("startedAt"),
            pull_finished=pull.get("finishedAt"),
            server_started=state("containerStatuses", "vllm", "running").get("startedAt"),
            ready_at=ready_at,
        )


def _memory_limit(job: Mapping[str, Any]) -> str | None:
    pod = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    for container in pod.get("containers") or []:
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            return str(limit)
    return None


def owner_uid(metadata: Mapping[str, Any]) -> str | None:
    """The uid of the controlling owner, if the object has one."""
    for reference in metadata.get("ownerReferences") or []:
        if reference.get("controller"):
            return reference.get("uid")
    return None


@dataclass(frozen=True)
class Owner:
    """The CompressedModel being reconciled."""

    name: str
    namespace: str
    uid: str | None = None
    generation: int | None = None
    retry: str | None = None
    """The modelpress.dev/retry annotation: changing it runs failed Jobs again."""


@dataclass(frozen=True)
class Blocker:
    """A prerequisite that is missing (a Secret, a reachable store): reason and message."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class Observed:
    """Everything the planner knows about the world for one CompressedModel."""

    source: SourceRecord | None = None
    base: Artifact | None = None
    artifacts: Mapping[str, Artifact] = field(default_factory=dict)
    """Committed variant artifacts by content key (only keys the spec asks for need be here)."""
    corrupt_artifacts: Mapping[str, str] = field(default_factory=dict)
    """Variant keys whose committed manifest cannot be read, and why."""
    jobs: tuple[JobState, ...] = ()
    job_messages: Mapping[str, str] = field(default_factory=dict)
    """Termination messages of failed pods, by Job name."""
    deployment: DeploymentState | None = None
    service: ServiceState | None = None
    store_blocker: Blocker | None = None
    """The store cannot be read (missing or bad Secret, unreachable): nothing is known."""
    source_blocker: Blocker | None = None
    """The fetch Job cannot run (e.g. the Hub token Secret is missing)."""
    network_policies: Mapping[str, ServiceState] = field(default_factory=dict)
    """The model's NetworkPolicies by name (the same few fields as a Service's)."""
    serving_blocker: Blocker | None = None
    """The serving pods could not start (e.g. the API key Secret is missing)."""
    name_conflicts: frozenset[tuple[str, str]] = frozenset()
    """(kind, name) of objects that have a child's name but were not created for this model:
    never adopted, never changed."""
    autoscaler: AutoscalerState | None = None
    """The model's autoscaler, looked up when one is wanted or the Deployment names one."""
    leader_worker_set: DeploymentState | None = None
    """The model's LeaderWorkerSet (serving across nodes), looked up when one may exist."""
    missing_kinds: frozenset[str] = frozenset()
    """Kinds whose API the cluster does not serve (no KEDA, JobSet...): not retried in a loop."""
    gang_services: frozenset[str] = frozenset()
    """Names of the headless Services of indexed Jobs (distillations over nodes)."""
    keda_served: bool = False
    """The cluster serves KEDA's API (keda.sh/v1alpha1): autoscaling engine auto uses it."""
    serving_pods: tuple[PodTiming, ...] = ()
    """The serving pods' timings, read when autoscaling (for the cold start)."""
