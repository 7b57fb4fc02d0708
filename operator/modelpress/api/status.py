"""The `CompressedModel` status: what the operator observed. Written only by the operator.

Conditions follow the Kubernetes API conventions (type/status/reason/message/
lastTransitionTime/observedGeneration); there is no phase state machine. The
`summary` fields exist only to feed `kubectl get` printer columns.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelpress.api.base import REASON, ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of the resource's state."""

    type: str = Field(max_length=316)
    """Ready, SourceReady, VariantsReady, Serving (resource); Compressed, QualityGate,
    Fits, Ready (variant)."""

    status: ConditionStatus
    """True, False or Unknown."""

    reason: str = Field(max_length=1024, pattern=REASON)
    """A CamelCase word a program can match on."""

    message: str = Field(default="", max_length=32768)
    """What happened and, for a failure, what to change."""

    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation this condition was computed from."""


class TaskScore(ApiModel):
    """Accuracy on one multiple-choice task of spec.evaluation.tasks."""

    name: str
    """The task's name in spec.evaluation.tasks."""
    accuracy: float
    """Share of questions the variant answers right."""
    base_accuracy: float
    """The base model's, on the same questions."""
    recovery: float | None = None
    """accuracy / baseAccuracy (unset when the base answers none right)."""
    questions: int
    """Questions asked."""


class ChatScore(ApiModel):
    """How the variant answers spec.evaluation.chat's prompts, judged on the base model's
    own answers."""

    kl_divergence: float
    """Mean KL divergence from the base model's next-token distribution over the answers'
    tokens (nats per token)."""
    kl_divergence_p99: float
    """Its 99th percentile: the answer tokens the variant gets most wrong."""
    agreement: float
    """Share of answer tokens where the variant's greedy token is the base model's."""
    prompts: int
    """Prompts answered."""
    tokens: int
    """Answer tokens judged."""


class Metrics(ApiModel):
    """Quality measured on the evaluation dataset."""

    perplexity: float | None = None
    """Perplexity of the variant."""
    base_perplexity: float | None = None
    """Perplexity of the base model on the same windows."""
    perplexity_increase: float | None = None
    """variant / base - 1 (0.05 = 5 % worse)."""
    agreement: float | None = None
    """Share of positions where the variant's greedy token equals the base model's."""
    kl_divergence: float | None = None
    """Mean KL divergence of the variant's next-token distribution from the base model's
    (nats per token; over the base's 64 likeliest tokens plus the rest as one)."""
    kl_divergence_p99: float | None = None
    """Its 99th percentile over the evaluated positions: the worst tokens, not the mean."""
    tasks: list[TaskScore] | None = None
    """Accuracy on each task of spec.evaluation.tasks, with the base model's."""
    chat: ChatScore | None = None
    """How the variant answers spec.evaluation.chat's prompts."""


class Footprint(ApiModel):
    """Predicted serving memory for the variant with the spec's serving settings."""

    weights_bytes: int | None = None
    """Tensor bytes of the weights as vLLM loads them."""
    kv_cache_bytes: int | None = None
    """KV cache for maxNumSeqs sequences of maxModelLen tokens."""
    overhead_bytes: int | None = None
    """Activations, CUDA graphs and runtime context."""
    total_bytes: int | None = None
    """Everything one replica needs."""
    gpus: int | None = None
    """GPUs one replica needs (0 when serving on CPU)."""
    fits: bool | None = None
    """Whether the variant fits the serving GPUs (or host memory on CPU)."""
    cpu_offload_gb: float | None = None
    """Weights vLLM keeps in host memory (allowCpuOffload)."""


class FailedJob(ApiModel):
    """A compression Job that failed, remembered after the Job itself is removed (its TTL),
    so that it is not run again, on a GPU, for nothing."""

    name: str
    """The Job's name (it hashes what determines the output)."""
    settings: str | None = None
    """Hash of its settings: new settings run it again."""
    retry: str | None = None
    """The model's modelpress.dev/retry annotation when it failed: a new value runs it again."""
    reason: str = Field(default="JobFailed", max_length=1024, pattern=REASON)
    """The failure's reason, as its condition said."""
    message: str = Field(default="", max_length=32768)
    """The failure's message, as its condition said."""


class VariantStatus(ApiModel):
    """What is known about one variant."""

    name: str
    """The variant's name in the spec."""
    key: str | None = None
    """Content hash of (base model, recipe, evaluation, compressor version)."""
    job: str | None = None
    """Name of the compression Job."""
    artifact_uri: str | None = None
    """Where the artifact is stored; its manifest.json lists every file with sha256."""
    bytes: int | None = None
    """Total bytes of the stored artifact."""
    size_ratio: float | None = None
    """Artifact bytes / base model bytes."""
    parameters: int | None = None
    """Parameter count of the compressed model."""
    bits_per_weight: float | None = None
    """Weight bytes x 8 / parameters, scales and packing included."""
    metrics: Metrics | None = None
    footprint: Footprint | None = None
    failed_job: FailedJob | None = None
    conditions: list[Condition] = Field(default_factory=list)
    """Compressed, QualityGate, Fits and Ready."""


class SourceStatus(ApiModel):
    """The base model as resolved."""

    id: str | None = None
    """hf://organization/name or the store URI."""
    revision: str | None = None
    """Resolved commit (Hub) or content digest (store URI)."""
    uri: str | None = None
    """Where the base model is stored."""
    bytes: int | None = None
    """Total bytes of the base model's files."""
    job: str | None = None
    """Name of the Job that fetched it."""


class ColdStart(ApiModel):
    """What starting one more replica cost, measured on the newest ready one: the price
    of scaling up, and of waking a model scaled to zero."""

    seconds: float | None = None
    """From the pod's creation to ready (scheduling, image, pull and load)."""
    pull_seconds: float | None = None
    """Downloading and verifying the artifact."""
    load_seconds: float | None = None
    """vLLM's start until it answers its health check."""
    pod: str | None = None
    """The pod measured."""
    measured_at: str | None = None
    """When it became ready (RFC 3339)."""


class AutoscalingStatus(ApiModel):
    """The autoscaler the operator keeps for the Deployment."""

    kind: Literal["ScaledObject", "HorizontalPodAutoscaler"] | None = None
    """KEDA's ScaledObject, or an autoscaling/v2 HorizontalPodAutoscaler."""
    name: str | None = None
    """Its name (the Deployment's)."""
    min_replicas: int | None = None
    """Fewest replicas it keeps."""
    max_replicas: int | None = None
    """Most replicas it asks for, after the cap of the GPUs the platform has for serving."""
    cold_start: ColdStart | None = None
    """What the newest replica took to start; kept while the model is scaled to zero."""


class ServingStatus(ApiModel):
    """The vLLM deployment."""

    variant: str | None = None
    """The variant being served."""
    deployment: str | None = None
    """Name of the vLLM Deployment."""
    artifact_uri: str | None = None
    """The artifact the Deployment serves: in use, so never deleted while it serves."""
    endpoint: str | None = None
    """OpenAI-compatible base URL inside the cluster."""
    gpus: int | None = None
    """GPUs per replica."""
    strategy: Literal["RollingUpdate", "Recreate"] | None = None
    """RollingUpdate when a spare replica's GPUs can be had, else Recreate."""
    ready_replicas: int | None = None
    """Replicas answering requests."""
    replicas: int | None = None
    """Replicas asked for (by the autoscaler, when there is one)."""
    nodes: int | None = None
    """Nodes one replica spans; above 1 the workload is a LeaderWorkerSet."""
    autoscaling: AutoscalingStatus | None = None
    """The autoscaler and the cold start it costs, when spec.serving.autoscaling is set."""


class Summary(ApiModel):
    """Flattened numbers for `kubectl get` columns, derived from the conditions."""

    phase: str | None = None
    """A one-word digest of the conditions (Pending, Compressing, Serving, Ready, Failed);
    for display only: programs should read the conditions."""

    variants: str | None = None
    """Ready variants / all variants, e.g. 2/3."""
    size_ratio: float | None = None
    """Served variant's size relative to the base model."""
    perplexity_increase: float | None = None
    """Served variant's perplexity increase over the base model."""
    gpus: int | None = None
    """GPUs per replica of the served variant."""


class CompressedModelStatus(ApiModel):
    """What the operator observed; written only by the operator."""

    observed_generation: int | None = None
    """The spec generation the status describes."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, SourceReady, VariantsReady and Serving."""
    source: SourceStatus | None = None
    variants: list[VariantStatus] = Field(default_factory=list)
    """One entry per variant in the spec."""
    serving: ServingStatus | None = None
    summary: Summary | None = None
