"""The `CompressedModel` spec: what the user asks for.

Cross-field rules live twice on purpose: as pydantic validators (precise
messages for `modelpress validate` and the operator) and as CEL rules or
`oneOf` in the generated CRD (so the API server rejects the same manifests).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from modelpress.api.base import DNS_LABEL, ApiModel, VariantName, cel

_S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"
_FILE_URI = r"^file:///[^\s]*$"
STORE_URI_PATTERN = f"({_S3_URI})|({_FILE_URI})"
URI_CEL = [
    cel(
        "!self.contains('/../') && !self.endsWith('/..')",
        "must not contain '..' path segments: give the object's full path",
    ),
]


def _check_uri(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"{uri!r} is not a URI: use s3://bucket/path/ or file:///absolute/path/")
    if scheme not in ("s3", "file"):
        raise ValueError(
            f"unknown scheme {scheme!r} in {redact_uri(uri)}: use s3://bucket/path/ or file:///absolute/path/"
        )
    authority = rest.split("/", 1)[0]
    if "@" in rest:
        raise ValueError(
            f"credentials must not be embedded in URIs ({redact_uri(uri)}): "
            "put them in a Secret and name it in secretRef"
        )
    if ".." in rest.split("/"):
        raise ValueError(
            f"{redact_uri(uri)} contains a '..' path segment: give the object's full path"
        )
    if scheme == "file" and authority:
        raise ValueError(f"{uri!r} is not an absolute file URI: write file:///absolute/path/")
    if not re.fullmatch(STORE_URI_PATTERN, uri):
        raise ValueError(
            f"{redact_uri(uri)} is not a valid store URI: use s3://bucket/path/ "
            "(bucket: 3-63 lowercase letters, digits, dots, dashes) or file:///absolute/path/"
        )
    return uri


def redact_uri(uri: str) -> str:
    """Hide user:password@ in a URI before it reaches a message or a log.

    Everything up to the last `@` goes: secret keys may themselves contain `/`."""
    return re.sub(r"(://).*@", r"\1***@", uri)


StoreUri = Annotated[
    str,
    Field(
        max_length=1024,
        pattern=STORE_URI_PATTERN,
        json_schema_extra={"x-kubernetes-validations": URI_CEL},
    ),
    AfterValidator(_check_uri),
]
"""An object-store location: `s3://bucket/prefix/` or `file:///absolute/path/`."""


class SecretRef(ApiModel):
    """A Secret in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """Name of the Secret."""


class SecretKeyRef(SecretRef):
    """One key of a Secret in the resource's namespace."""

    key: str = Field(default="token", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key within the Secret that holds the value."""


# --- where the base model comes from ---------------------------------------------


class HuggingFaceSource(ApiModel):
    """A model repository on the Hugging Face Hub."""

    repo: str = Field(
        min_length=3,
        max_length=200,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$",
    )
    """Repository id, `organization/name`."""

    revision: str = Field(default="main", min_length=1, max_length=255, pattern=r"^[^\s]+$")
    """Branch, tag or commit. It is resolved to a commit once and recorded in status."""

    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a Hub token, for gated or private repositories."""

    allow_pickle: bool = False
    """Allow pickled `.bin` weights. Off by default: pickles can run code when loaded."""


class Source(ApiModel):
    """The base model. Exactly one of `huggingface` or `uri`."""

    huggingface: HuggingFaceSource | None = None
    """Fetch from the Hugging Face Hub (once per commit, then reused from the store)."""

    uri: StoreUri | None = None
    """A Hugging Face checkpoint directory already in object storage."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.huggingface is None) == (self.uri is None):
            raise ValueError("set exactly one of source.huggingface or source.uri")
        return self


class Storage(ApiModel):
    """Where artifacts are stored, content-addressed."""

    uri: StoreUri
    """Root of the artifact store, `s3://bucket/prefix/` or `file:///path/` (local mode)."""

    secret_ref: SecretRef | None = None
    """Secret with keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
    AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION. Never put credentials in the URI."""


class Dataset(ApiModel):
    """A UTF-8 text file in object storage (documents separated by blank lines)."""

    uri: StoreUri
    """Location of the text file."""


class Calibration(ApiModel):
    """Text the compression steps learn from (calibration, importance, distillation)."""

    dataset: Dataset
    """Must differ from the evaluation dataset, so quality is measured on unseen text."""

    samples: int = Field(default=256, ge=1, le=65536)
    """Number of text sequences to use."""

    sequence_length: int = Field(default=512, ge=16, le=131072)
    """Tokens per sequence."""


# --- compression actions -----------------------------------------------------------

QuantScheme = Literal["W8A16", "W4A16", "W8A8", "FP8_DYNAMIC"]
QuantAlgorithm = Literal["rtn", "gptq", "awq"]


class QuantizeStep(ApiModel):
    """Quantize weights (and for W8A8 / FP8 activations) with llmcompressor.
    The result is a compressed-tensors checkpoint that vLLM loads natively."""

    scheme: QuantScheme
    """W8A16 and W4A16: integer weights, 16-bit activations. W8A8: int8 weights and
    activations (SmoothQuant + GPTQ). FP8_DYNAMIC: fp8 weights, dynamic fp8 activations."""

    algorithm: QuantAlgorithm = "gptq"
    """rtn: round to nearest, no data. gptq: error-compensating, needs calibration text.
    awq: activation-aware (W4A16 only), needs calibration text. FP8_DYNAMIC uses rtn."""

    group_size: int | None = Field(default=None, ge=16, le=1024)
    """Weights per scale. Unset: 128 for W4A16, per output channel otherwise. Must divide
    the hidden and intermediate sizes (e.g. 64 for hidden size 576)."""

    kv_cache_scheme: Literal["fp8"] | None = None
    """Also calibrate an fp8 KV cache (serve with kvCacheDtype fp8)."""

    ignore: list[str] = Field(default_factory=lambda: ["lm_head"], max_length=64)
    """Modules left unquantized (names or `re:` patterns)."""

    calibration: Calibration | None = None
    """Overrides spec.calibration for this step."""

    @model_validator(mode="after")
    def _coherent(self) -> QuantizeStep:
        if self.algorithm == "awq" and self.scheme != "W4A16":
            raise ValueError("algorithm awq applies to scheme W4A16 only: use gptq or rtn")
        if (
            self.scheme == "FP8_DYNAMIC"
            and self.algorithm == "gptq"
            and "algorithm" in self.model_fields_set
        ):
            raise ValueError(
                "scheme FP8_DYNAMIC needs no calibration: set algorithm rtn or leave it unset"
            )
        return self

    @property
    def effective_algorithm(self) -> QuantAlgorithm:
        return "rtn" if self.scheme == "FP8_DYNAMIC" else self.algorithm

    @property
    def effective_group_size(self) -> int | None:
        if self.group_size is not None:
            return self.group_size
        return 128 if self.scheme == "W4A16" else None

    @property
    def needs_data(self) -> bool:
        return self.effective_algorithm != "rtn" or self.kv_cache_scheme is not None


PruneMethod = Literal["layer-drop", "ffn-width"]
SPARSE_METHODS = ("2:4", "unstructured", "sparsegpt", "wanda")


class PruneStep(ApiModel):
    """Structured pruning that really shrinks the checkpoint."""

    method: str = Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self in ['layer-drop', 'ffn-width']",
                    "method must be layer-drop or ffn-width; 2:4 and unstructured sparsity "
                    "are not offered because vLLM no longer saves memory from them",
                )
            ]
        }
    )
    """layer-drop: remove whole decoder blocks, those whose output changes the hidden
    state least on calibration text (angular distance). ffn-width: remove MLP channels
    with the lowest activation importance (Minitron-style)."""

    fraction: float = Field(gt=0, lt=1)
    """Share of layers (layer-drop) or MLP channels (ffn-width) to remove."""

    calibration: Calibration | None = None
    """Overrides spec.calibration for this step."""

    @model_validator(mode="after")
    def _structured_only(self) -> PruneStep:
        if self.method in SPARSE_METHODS:
            raise ValueError(
                f"prune method {self.method!r} is not offered: vLLM no longer gains memory or "
                "speed from 2:4 or unstructured sparsity; use layer-drop or ffn-width"
            )
        if self.method not in ("layer-drop", "ffn-width"):
            raise ValueError(f"unknown prune method {self.method!r}: use layer-drop or ffn-width")
        return self


class DistillStep(ApiModel):
    """Logit knowledge distillation from the base model (the teacher) into the model
    produced by the previous steps (the student)."""

    steps: int = Field(default=400, ge=1, le=1_000_000)
    """Optimizer steps."""

    temperature: float = Field(default=2.0, gt=0, le=100)
    """Softens both distributions; the loss is scaled by temperature squared."""

    learning_rate: float = Field(default=5e-5, gt=0, le=1)
    """AdamW learning rate."""

    batch_size: int = Field(default=4, ge=1, le=1024)
    """Sequences per optimizer step."""

    checkpoint_every: int = Field(default=100, ge=1, le=1_000_000)
    """Save a resumable checkpoint every this many steps."""

    student_layers: int | None = Field(default=None, ge=1, le=1024)
    """When distill is the first step: build the student from the teacher's evenly spaced
    layers, keeping this many. Must be fewer than the teacher's."""

    calibration: Calibration | None = None
    """Training text; overrides spec.calibration for this step."""


_ONE_ACTION = ["quantize", "prune", "distill"]


class Step(ApiModel):
    """One action of a chain. Exactly one of `quantize`, `prune` or `distill`."""

    quantize: QuantizeStep | None = None
    prune: PruneStep | None = None
    distill: DistillStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        chosen = [name for name in _ONE_ACTION if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "a step needs exactly one of quantize, prune or distill"
                + (f"; this one sets {', '.join(chosen)}" if chosen else "")
            )
        return self

    @property
    def action(self) -> QuantizeStep | PruneStep | DistillStep:
        return self.quantize or self.prune or self.distill  # type: ignore[return-value]

    @property
    def kind(self) -> str:
        return next(name for name in _ONE_ACTION if getattr(self, name) is not None)


class Variant(ApiModel):
    """One compressed version of the base model. Exactly one of `quantize`, `prune`,
    `distill` or `steps`."""

    name: VariantName
    """Unique within the resource; a DNS label of at most 20 characters."""

    quantize: QuantizeStep | None = None
    prune: PruneStep | None = None
    distill: DistillStep | None = None
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=8)
    """An ordered chain, each step feeding the next (e.g. prune, distill, quantize)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Variant:
        chosen = [n for n in [*_ONE_ACTION, "steps"] if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"variant {self.name!r} needs exactly one of quantize, prune, distill or steps"
                + (f"; it sets {', '.join(chosen)}" if chosen else "")
            )
        chain = self.chain
        quant_positions = [i for i, s in enumerate(chain) if s.quantize is not None]
        if len(quant_positions) > 1 or (quant_positions and quant_positions[0] != len(chain) - 1):
            raise ValueError(
                f"variant {self.name!r}: quantize must be the last step, and only once "
                "(a quantized model cannot be pruned or trained further)"
            )
        return self

    @property
    def chain(self) -> list[Step]:
        """The variant as a chain, whether written as one action or as steps."""
        if self.steps is not None:
            return list(self.steps)
        return [Step(quantize=self.quantize, prune=self.prune, distill=self.distill)]


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


class Gpu(ApiModel):
    """GPU type for serving."""

    product: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """A product from the operator's GPU catalog (Helm values), e.g. nvidia-l4, nvidia-h100-80gb."""

    count: Literal[1, 2, 4, 8] | None = None
    """Override the GPU count sizing would choose."""


class Serving(ApiModel):
    """How the chosen variant is served with vLLM."""

    variant: str = Field(default="auto", min_length=1, max_length=20)
    """A variant name, `auto` (the smallest variant that passes the quality gate and
    fits), or `none` (compress and evaluate only)."""

    replicas: int = Field(default=1, ge=0, le=1000)
    """vLLM server replicas."""

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

    allow_cpu_offload: bool = False
    """When the weights do not fit in GPU memory, offload the rest to host memory
    (slower, but serves a model bigger than the GPUs)."""

    image: str | None = Field(default=None, max_length=512)
    """Override the vLLM image from the operator's Helm values."""


class Compression(ApiModel):
    """Resources and limits of the compression Jobs."""

    image: str | None = Field(default=None, max_length=512)
    """Override the compressor image from the operator's Helm values."""

    gpu: Gpu | None = None
    """Run compression on a GPU of this product (recommended beyond ~3B parameters)."""

    memory: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
    """Override the host memory request (Kubernetes quantity); sized from the model if unset."""

    active_deadline_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)
    """A Job running longer than this is stopped and reported."""

    backoff_limit: int = Field(default=2, ge=0, le=10)
    """Retries of a failed Job before the variant is reported failed."""


class CompressedModelSpec(ApiModel):
    """A base model, the compressed variants to build from it, and how to serve them."""

    source: Source
    storage: Storage
    variants: list[Variant] = Field(min_length=1, max_length=16)
    """Compressed variants; names must be unique."""

    calibration: Calibration | None = None
    """Default text for steps that need data (gptq, awq, pruning, distillation)."""

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
        if any(c.dataset.uri == evaluation.dataset.uri for c in calibrations):
            raise ValueError(
                "evaluation.dataset must differ from every calibration dataset: quality "
                "measured on training text would look better than it is"
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
    def _data_for_learning_steps(self) -> CompressedModelSpec:
        for variant in self.variants:
            for index, step in enumerate(variant.chain):
                if step_calibration(self, step) is None and _needs_data(step):
                    where = f"variant {variant.name!r}" + (
                        f" step {index}" if variant.steps else ""
                    )
                    raise ValueError(
                        f"{where} ({step.kind}) needs text to learn from: set spec.calibration "
                        "or the step's own calibration"
                    )
        return self


def _calibrations(default: Calibration | None, variants: list[Variant]) -> list[Calibration]:
    found = [default] if default else []
    for variant in variants:
        found += [s.action.calibration for s in variant.chain if s.action.calibration]
    return found


def _needs_data(step: Step) -> bool:
    if step.quantize is not None:
        return step.quantize.needs_data
    return True


def step_calibration(spec: CompressedModelSpec, step: Step) -> Calibration | None:
    """The text a step learns from: its own calibration, else the spec's default."""
    return step.action.calibration or spec.calibration
