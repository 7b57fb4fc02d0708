"""The `CompressedModel` spec: what the user asks for.

Cross-field rules live twice on purpose: as pydantic validators (precise
messages for `modelpress validate` and the operator) and as CEL rules or
`oneOf` in the generated CRD (so the API server rejects the same manifests).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from modelpress.api.base import DNS_LABEL, MEMORY_QUANTITY, ApiModel
from modelpress.api.inputs import (
    GENERATED_CALIBRATION,
    Calibration,
    Dataset,
    SecretKeyRef,
    Source,
    Storage,
)
from modelpress.api.steps import Step, Variant


class Task(ApiModel):
    """A multiple-choice task the variants are judged on, next to perplexity: a JSON
    lines file, one question per line, `{"context": "...", "choices": ["...", ...],
    "answer": 0}`. The model's answer is the choice it finds likeliest after the context,
    per byte of the choice (lm-evaluation-harness's acc_norm)."""

    name: str = Field(min_length=1, max_length=40, pattern=DNS_LABEL)
    """Names the task in the status and in the gate's messages."""

    dataset: Dataset
    """The JSON lines file; it must differ from every calibration dataset."""

    limit: int | None = Field(default=None, ge=1, le=100_000)
    """Judge on the first this many questions only (unset: all)."""


NO_CHAT = (
    "evaluation.maxChatKlDivergence needs evaluation.chat (the prompts to judge answers "
    "on): add evaluation.chat or remove the limit"
)


class Chat(ApiModel):
    """Prompts the base model answers through its chat template (greedy, once, kept in
    the store); every variant is then judged on the base model's own answers: the KL
    divergence of its next-token distribution from the base's at every answer token,
    and how often its greedy token is the base's. Text windows measure how a variant
    continues documents; this measures whether it still answers like the instruct
    model it came from, which tuning on documents can unlearn."""

    prompts: Dataset
    """A JSON lines file, one `{"prompt": "..."}` per line; it must differ from every
    calibration dataset."""

    max_tokens: int = Field(default=64, ge=1, le=4096)
    """The longest answer the base model writes (it may stop earlier at its end token)."""

    limit: int | None = Field(default=None, ge=1, le=100_000)
    """Judge on the first this many prompts only (unset: all)."""


class Evaluation(ApiModel):
    """How variants are measured and which ones may be served."""

    dataset: Dataset
    """Held-out text; must differ from the calibration dataset."""

    metric: Literal["perplexity"] = "perplexity"
    """Quality metric: perplexity on the dataset (sliding window), plus greedy-token
    agreement with the base model."""

    samples: int = Field(default=64, ge=1, le=100_000)
    """Number of windows evaluated."""

    sequence_length: int = Field(default=512, ge=16, le=131072)
    """Tokens per window."""

    max_perplexity_increase: float = Field(default=0.10, ge=0, le=100)
    """Quality gate: a variant whose perplexity exceeds the base's by more than this
    fraction (0.10 = 10 %) is never served."""

    min_agreement: float | None = Field(default=None, ge=0, le=1)
    """Optional gate on greedy-token agreement with the base model (0 to 1)."""

    max_kl_divergence: float | None = Field(default=None, ge=0, le=100)
    """Optional gate on the mean KL divergence of the variant's next-token distribution
    from the base model's, in nats per token (e.g. 0.05). It sees every change of the
    distribution, where perplexity sees only the probability of the text's own token."""

    tasks: list[Task] | None = Field(default=None, max_length=8)
    """Multiple-choice tasks scored on the base model and every variant; each variant's
    accuracy and its recovery (variant / base accuracy) are reported. No default on
    purpose: an empty list would change every variant's content key."""

    min_accuracy_recovery: float | None = Field(default=None, ge=0, le=2)
    """Optional gate: on every task the variant's accuracy must be at least this share of
    the base model's (0.95 = it keeps 95 % of the base's accuracy)."""

    chat: Chat | None = None
    """Chat prompts the variants are judged on, next to the text windows: the KL
    divergence from the base model on the base's own answers. Unset: no chat judgement."""

    max_chat_kl_divergence: float | None = Field(default=None, ge=0, le=100)
    """Optional gate on the mean KL divergence from the base model on its answers to
    evaluation.chat's prompts, in nats per token (e.g. 0.3)."""

    @model_validator(mode="after")
    def _tasks_coherent(self) -> Evaluation:
        names = [task.name for task in self.tasks or []]
        if len(set(names)) != len(names):
            raise ValueError("evaluation.tasks names must be unique")
        if self.min_accuracy_recovery is not None and not names:
            raise ValueError(
                "evaluation.minAccuracyRecovery needs evaluation.tasks to measure accuracy on: "
                "add a task or remove the limit"
            )
        if self.max_chat_kl_divergence is not None and self.chat is None:
            raise ValueError(NO_CHAT)
        return self

    def measurement(self) -> dict[str, Any]:
        """What is measured and how, in wire form: everything but the gate thresholds.

        This is what evaluation contributes to a variant's content key and what the
        compression Job receives; the thresholds only judge stored results, so
        tightening the gate re-judges variants instead of recomputing them.
        """
        return self.model_dump(
            by_alias=True,
            exclude_none=True,
            mode="json",
            exclude={
                "max_perplexity_increase",
                "min_agreement",
                "max_kl_divergence",
                "min_accuracy_recovery",
                "max_chat_kl_divergence",
            },
        )


class Gpu(ApiModel):
    """GPU type for serving."""

    product: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """A product from the operator's GPU catalog (Helm values), e.g. nvidia-l4, nvidia-h100-80gb."""

    count: Literal[1, 2, 4, 8] | None = None
    """Override the GPU count sizing would choose (within one node)."""


class Autoscaling(ApiModel):
    """Scale the vLLM replicas on what vLLM itself reports (docs/autoscaling.md).

    Rendered as a KEDA ScaledObject or, where the platform has no KEDA, an HPA on
    external metrics; the operator's configuration says which.
    """

    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas. 0 (scale to zero when idle) needs KEDA and a wakeQuery."""

    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas; capped at what the platform's GPUs of the product can hold."""

    metric: Literal["waitingRequests", "kvCacheUsage"] = "waitingRequests"
    """The vLLM signal: requests queued (vllm:num_requests_waiting, summed over the
    replicas) or KV-cache usage (vllm:kv_cache_usage_perc, averaged)."""

    target: float | None = Field(default=None, gt=0, le=10_000)
    """waitingRequests: queued requests per replica (default 4). kvCacheUsage: the
    usage to keep each replica under, as a fraction (default 0.8)."""

    wake_query: str | None = Field(default=None, min_length=1, max_length=2048)
    """A PromQL expression above 0 when clients want the model while no replica runs
    (e.g. a gateway's request rate for it). Needed with minReplicas 0: a model scaled
    to zero has no pod to report vLLM's own metrics."""

    @model_validator(mode="after")
    def _consistent(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed maxReplicas "
                f"({self.max_replicas})"
            )
        if self.min_replicas == 0 and self.wake_query is None:
            raise ValueError(
                "minReplicas 0 needs wakeQuery: with no replica running, vLLM reports nothing "
                "that could wake the model; set a PromQL query (e.g. your gateway's request "
                "rate for this model) or minReplicas 1"
            )
        if self.metric == "kvCacheUsage" and self.target is not None and self.target > 1:
            raise ValueError(
                f"target {self.target} is not a fraction: with metric kvCacheUsage give the "
                "usage to keep each replica under, from 0 to 1 (e.g. 0.8)"
            )
        return self

    @property
    def effective_target(self) -> float:
        if self.target is not None:
            return self.target
        return 0.8 if self.metric == "kvCacheUsage" else 4.0


class Serving(ApiModel):
    """How the chosen variant is served with vLLM."""

    variant: str = Field(default="auto", min_length=1, max_length=20)
    """A variant name, `auto` (the smallest variant that passes the quality gate and
    fits), or `none` (compress and evaluate only)."""

    replicas: int = Field(default=1, ge=0, le=1000)
    """vLLM server replicas (ignored with autoscaling, which decides them)."""

    autoscaling: Autoscaling | None = None
    """Scale replicas on vLLM's queue or KV-cache usage. Unset: `replicas` is fixed."""

    max_model_len: int = Field(default=4096, ge=1, le=10_485_760)
    """Longest sequence (prompt + output) a request may use."""

    max_num_seqs: int = Field(default=32, ge=1, le=4096)
    """Sequences served concurrently; with maxModelLen it sizes the KV cache."""

    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    """KV cache precision; fp8 halves its memory."""

    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=0.98)
    """Share of each GPU's memory vLLM may use."""

    gpu: Gpu | None = None
    """Serve on GPUs of this product. Unset: serve on CPU."""

    max_nodes: int = Field(default=1, ge=1, le=16)
    """Nodes one replica may span when it fits on no single node's GPUs: tensor parallel
    within each node, pipeline parallel across them, served as a LeaderWorkerSet
    (docs/scale.md). 1: one node only."""

    allow_cpu_offload: bool = False
    """When the weights do not fit in GPU memory, offload the rest to host memory
    (slower, but serves a model bigger than the GPUs)."""

    image: str | None = Field(default=None, max_length=512)
    """Override the vLLM image from the operator's Helm values."""

    api_key_secret_ref: SecretKeyRef | None = None
    """A Secret key holding the API key clients must send (`Authorization: Bearer <key>`)
    to the OpenAI endpoint. Unset: only the network policy guards the endpoint."""


class Compression(ApiModel):
    """Resources and limits of the compression Jobs."""

    image: str | None = Field(default=None, max_length=512)
    """Override the compressor image from the operator's Helm values."""

    gpu: Gpu | None = None
    """Run compression on a GPU of this product (recommended beyond ~3B parameters)."""

    memory: str | None = Field(default=None, pattern=MEMORY_QUANTITY)
    """Override the host memory request (Kubernetes quantity); sized from the model if unset."""

    active_deadline_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)
    """A Job running longer than this is stopped and reported."""

    backoff_limit: int = Field(default=2, ge=0, le=10)
    """Retries of a failed Job before the variant is reported failed."""

    nodes: int = Field(default=1, ge=1, le=16)
    """Nodes a distillation trains on with PyTorch's distributed data parallelism, each
    running one process per GPU of `gpu.count` (docs/scale.md). Variants without a
    distill step run on one node whatever this says."""

    @property
    def processes_per_node(self) -> int:
        """Training processes on each node: torchrun starts one per GPU requested."""
        return (self.gpu.count or 1) if self.gpu is not None else 1


class CompressedModelSpec(ApiModel):
    """A base model, the compressed variants to build from it, and how to serve them."""

    source: Source
    storage: Storage
    variants: list[Variant] = Field(min_length=1, max_length=16)
    """Compressed variants; names must be unique."""

    calibration: Calibration | None = None
    """Default text for steps that need data (gptq, awq, pruning, distillation); unset,
    they learn from text the base model generates (`calibration.generated`)."""

    evaluation: Evaluation
    serving: Serving = Field(default_factory=Serving)
    compression: Compression = Field(default_factory=Compression)
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What happens to stored artifacts when the resource is deleted."""

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
        return variants

    @field_validator("evaluation")
    @classmethod
    def _held_out(cls, evaluation: Evaluation, info: ValidationInfo) -> Evaluation:
        calibrations = _calibrations(info.data.get("calibration"), info.data.get("variants") or [])
        learned = {c.dataset.uri for c in calibrations if c.dataset is not None}
        if evaluation.dataset.uri in learned:
            raise ValueError(
                "evaluation.dataset must differ from every calibration dataset: quality "
                "measured on training text would look better than it is"
            )
        for task in evaluation.tasks or []:
            if task.dataset.uri in learned:
                raise ValueError(
                    f"evaluation task {task.name!r} must not be a calibration dataset: "
                    "accuracy on questions the model learned from would flatter it"
                )
        if evaluation.chat is not None and evaluation.chat.prompts.uri in learned:
            raise ValueError(
                "evaluation.chat.prompts must not be a calibration dataset: answers to "
                "prompts the model learned from would flatter it"
            )
        return evaluation

    @field_validator("serving")
    @classmethod
    def _served_variant_exists(cls, serving: Serving, info: ValidationInfo) -> Serving:
        names = [v.name for v in info.data.get("variants") or []]
        if names and serving.variant not in ("auto", "none", *names):
            raise ValueError(
                f"serving.variant {serving.variant!r} names no variant: use one of "
                f"{', '.join(names)}, auto or none"
            )
        return serving

    @model_validator(mode="after")
    def _awq_on_a_gpu(self) -> CompressedModelSpec:
        if self.compression.gpu is not None:
            return self
        for variant in self.variants:
            if any(s.quantize is not None and s.quantize.algorithm == "awq" for s in variant.chain):
                raise ValueError(
                    f"variant {variant.name!r}: algorithm awq runs on a GPU only (llmcompressor "
                    "keeps its calibration cache in page-locked memory, which needs CUDA): set "
                    "spec.compression.gpu, or use algorithm gptq"
                )
        return self

    @model_validator(mode="after")
    def _batches_split_over_processes(self) -> CompressedModelSpec:
        processes = self.compression.nodes * self.compression.processes_per_node
        for variant in self.variants:
            for distill in variant.gang_distills:  # after quantize, one process: no split
                if distill.batch_size % processes:
                    raise ValueError(
                        f"variant {variant.name!r}: distill batchSize {distill.batch_size} "
                        f"does not split over the {processes} processes of spec.compression "
                        f"(nodes x gpu.count): use a multiple of {processes}"
                    )
        return self


def _calibrations(default: Calibration | None, variants: list[Variant]) -> list[Calibration]:
    found = [default] if default else []
    for variant in variants:
        found += [s.action.calibration for s in variant.chain if s.action.calibration]
    return found


def step_calibration(spec: CompressedModelSpec, step: Step) -> Calibration | None:
    """The text a step learns from: its own calibration, else the spec's default, else
    (when it needs text) text the base model generates."""
    own = step.action.calibration or spec.calibration
    return own or (GENERATED_CALIBRATION if step.needs_data else None)
