"""What a variant does: quantize, prune or distill, alone or as a chain of steps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field, model_validator

from modelpress.api.base import MAX_CHAIN_STEPS, ApiModel, VariantName, cel
from modelpress.api.inputs import Calibration

QuantScheme = Literal["W8A16", "W4A16", "W8A8", "FP8_DYNAMIC"]
WEIGHT_ONLY = ("W4A16", "W8A16")
QuantAlgorithm = Literal["rtn", "gptq", "awq"]
TrainingPrecision = Literal["fp32", "bf16"]

DEFAULT_GROUP_SIZES = (128, 64, 32)
"""W4A16's group sizes when groupSize is unset, in order of preference: llmcompressor's
128, then the smaller sizes vLLM's int4 GPU kernels also take."""


def default_group_size(in_features: int) -> int | None:
    """W4A16's group size for a Linear with `in_features` inputs when groupSize is unset:
    the first of DEFAULT_GROUP_SIZES that divides them, else one scale per output channel
    (None). A model whose widths 128 does not divide (SmolLM2's 576) keeps 128 where it
    can (its 1,536-wide MLP input) and 64 elsewhere, rather than being refused."""
    return next((size for size in DEFAULT_GROUP_SIZES if in_features % size == 0), None)


class MixedPrecision(ApiModel):
    """Keep the layers that quantization hurts most at a higher precision, within a size
    budget. Each attention and MLP block's sensitivity is measured on the step's
    calibration text (the KL divergence from the unquantized model when that block alone
    is rounded to `scheme`); the blocks that buy the most quality per byte are kept
    precise until the budget is spent. vLLM serves the result as one checkpoint."""

    budget: float = Field(gt=0, lt=1)
    """The artifact's size as a share of the base model's weights at 16 bits (e.g. 0.5:
    at most half of the bf16 checkpoint). It must lie above the size with every block
    at `scheme`."""

    sensitive_scheme: Literal["W8A16", "none"] | None = None
    """How the sensitive blocks are kept: W8A16 (int8 weights, one scale per output
    channel) or none (left unquantized). Unset: W8A16 after W4A16, none after W8A16; no
    schema default on purpose, which W8A16 steps would then refuse."""

    def sensitive_for(self, scheme: str) -> Literal["W8A16", "none"]:
        """The sensitive blocks' scheme under a step of `scheme`."""
        if self.sensitive_scheme is not None:
            return self.sensitive_scheme
        return "W8A16" if scheme == "W4A16" else "none"


class QuantizeStep(ApiModel):
    """Quantize weights (and for W8A8 / FP8 activations) with llmcompressor.
    The result is a compressed-tensors checkpoint that vLLM loads natively."""

    scheme: QuantScheme
    """W8A16 and W4A16: integer weights, 16-bit activations. W8A8: int8 weights and
    activations (SmoothQuant + GPTQ). FP8_DYNAMIC: fp8 weights, dynamic fp8 activations."""

    algorithm: QuantAlgorithm | None = None
    """rtn: round to nearest, no data. gptq: error-compensating, needs calibration text.
    awq: activation-aware (W4A16 only, on a compression GPU), needs calibration text.
    Unset: gptq, and rtn for FP8_DYNAMIC (which takes nothing else). No schema default on purpose: the API server
    would store it, and FP8_DYNAMIC would then read as a request for gptq."""

    group_size: int | None = Field(default=None, ge=16, le=1024)
    """Weights per scale, for every quantized layer; it must divide each one's input
    width (e.g. 64 for hidden size 576). Unset: for W4A16, per layer, 128 where it divides
    the layer's input width, else 64, else 32, else one scale per output channel; per
    output channel for W8A16."""

    symmetric: bool | None = None
    """false: each group of W4A16 weights also gets a zero point, so its 16 levels span
    the group's own minimum to maximum instead of a range centred on zero (W4A16_ASYM;
    half a byte more per group). Unset: symmetric. No schema default on purpose: the API
    server would store it, and every variant written before would get a new key."""

    kv_cache_scheme: Literal["fp8"] | None = None
    """Also calibrate an fp8 KV cache (serve with kvCacheDtype fp8)."""

    ignore: list[str] = Field(default_factory=lambda: ["lm_head"], max_length=64)
    """Modules left unquantized (names or `re:` patterns)."""

    mixed_precision: MixedPrecision | None = None
    """Keep the blocks most sensitive to quantization at a higher precision, within a
    size budget (weight-only schemes; needs calibration text)."""

    calibration: Calibration | None = None
    """Overrides spec.calibration for this step."""

    @model_validator(mode="after")
    def _coherent(self) -> QuantizeStep:
        mixed = self.mixed_precision
        if mixed is not None and self.scheme not in ("W4A16", "W8A16"):
            raise ValueError(
                f"mixedPrecision applies to the weight-only schemes W4A16 and W8A16, not "
                f"{self.scheme}: change the scheme or remove mixedPrecision"
            )
        if mixed is not None and mixed.sensitive_scheme == self.scheme:
            raise ValueError(
                f"mixedPrecision.sensitiveScheme {mixed.sensitive_scheme} is the step's own "
                "scheme; it must be more precise than the step's scheme (W8A16 after W4A16, "
                "or none)"
            )
        if self.algorithm == "awq" and self.scheme != "W4A16":
            raise ValueError("algorithm awq applies to scheme W4A16 only: use gptq or rtn")
        if self.symmetric is False and self.scheme != "W4A16":
            raise ValueError(
                f"symmetric: false (zero points) applies to scheme W4A16 only, not "
                f"{self.scheme}: remove symmetric or use W4A16"
            )
        if self.scheme == "FP8_DYNAMIC" and self.algorithm not in (None, "rtn"):
            raise ValueError(
                f"scheme FP8_DYNAMIC needs no calibration, so algorithm {self.algorithm} does "
                "not apply: set algorithm rtn or leave it unset"
            )
        return self

    @property
    def stored_scheme(self) -> str:
        """The scheme as compressed-tensors stores it, the name sizing knows it by."""
        return "W4A16_ASYM" if self.symmetric is False else self.scheme

    @property
    def effective_algorithm(self) -> QuantAlgorithm:
        if self.scheme == "FP8_DYNAMIC":
            return "rtn"
        return self.algorithm or "gptq"

    def group_size_for(self, in_features: int) -> int | None:
        """Weights per scale in a Linear with `in_features` inputs; None: one scale per
        output channel (and for W8A8 and FP8_DYNAMIC, which take no group size)."""
        if self.scheme not in WEIGHT_ONLY:
            return None
        if self.group_size is not None:
            return self.group_size
        return default_group_size(in_features) if self.scheme == "W4A16" else None

    @property
    def needs_data(self) -> bool:
        return (
            self.effective_algorithm != "rtn"
            or self.kv_cache_scheme is not None
            or self.mixed_precision is not None
        )


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
    produced by the previous steps (the student). After a quantize step it tunes only
    what the quantized checkpoint can change: each group's scale and the norm weights,
    every integer weight kept, so the artifact's size and format stay the same."""

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

    precision: TrainingPrecision | None = None
    """fp32, or bf16: fp32 weights under bf16 autocast with a bf16 teacher (about twice
    as fast where the device multiplies bf16 natively, half the teacher's memory).
    Unset, each Job chooses bf16 where its device multiplies bf16 natively (most GPUs,
    CPUs with AVX512-BF16 or AMX) and fp32 elsewhere, so the result depends on the node;
    set it for the same result on every node. The lineage records which ran."""

    calibration: Calibration | None = None
    """Training text; overrides spec.calibration for this step."""


_ONE_ACTION = ["quantize", "prune", "distill"]


def distills_before_quantize(actions: Iterable[object]) -> list[DistillStep]:
    """The distill actions of a chain that come before its quantize step: those a Job's
    processes train together. Once quantized, the student tunes on one process with the
    whole batch (`compress.distributed.going_on`), so only these use more than one GPU."""
    gang = []
    for action in actions:
        if isinstance(action, QuantizeStep):
            break
        if isinstance(action, DistillStep):
            gang.append(action)
    return gang


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

    @property
    def needs_data(self) -> bool:
        """Whether the step learns from calibration text (pruning and distillation always;
        quantization unless it is plain rounding)."""
        return self.quantize.needs_data if self.quantize is not None else True


class Variant(ApiModel):
    """One compressed version of the base model. Exactly one of `quantize`, `prune`,
    `distill` or `steps`."""

    name: VariantName
    """Unique within the resource; a DNS label of at most 20 characters."""

    quantize: QuantizeStep | None = None
    prune: PruneStep | None = None
    distill: DistillStep | None = None
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=MAX_CHAIN_STEPS)
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
        after = chain[quant_positions[0] + 1 :] if quant_positions else []
        if len(quant_positions) > 1 or any(s.distill is None for s in after):
            raise ValueError(
                f"variant {self.name!r}: quantize may come once, and only distill may follow "
                "it (distillation then tunes the quantization scales; a quantized model "
                "cannot be pruned)"
            )
        tuned = chain[quant_positions[0]].quantize if after else None
        if tuned is not None and (tuned.scheme not in WEIGHT_ONLY or tuned.kv_cache_scheme):
            raise ValueError(
                f"variant {self.name!r}: distill after quantize tunes weight scales only, "
                f"so the quantize step must be weight-only (W4A16 or W8A16) without "
                f"kvCacheScheme; it is {tuned.scheme}"
                + (" with kvCacheScheme" if tuned.kv_cache_scheme else "")
                + ": change the scheme or drop the distill step after it"
            )
        first = chain[0].distill
        if first is not None and first.student_layers is None:
            raise ValueError(
                f"variant {self.name!r}: distill as the first step needs studentLayers, the "
                "number of teacher layers the student keeps (a student as large as the "
                "teacher gains nothing); or put a prune step before it"
            )
        if any(s.distill is not None and s.distill.student_layers for s in chain[1:]):
            raise ValueError(
                f"variant {self.name!r}: studentLayers applies only when distill is the first "
                "step (after another step the student is that step's result): remove it"
            )
        return self

    @property
    def chain(self) -> list[Step]:
        """The variant as a chain, whether written as one action or as steps."""
        if self.steps is not None:
            return list(self.steps)
        return [Step(quantize=self.quantize, prune=self.prune, distill=self.distill)]

    @property
    def gang_distills(self) -> list[DistillStep]:
        """The distill steps a Job's processes train together (`distills_before_quantize`)."""
        return distills_before_quantize(step.action for step in self.chain)

    @property
    def quantized_by(self) -> QuantizeStep | None:
        """The chain's one quantize step, last or followed only by scale-tuning distills:
        it decides the artifact's format."""
        return next((s.quantize for s in self.chain if s.quantize is not None), None)

    def describe(self) -> str:
        """A short recipe: 'layer-drop 25% → distill 40 steps → W4A16 gptq g64'."""
        parts = []
        for step in self.chain:
            if step.quantize is not None:
                q = step.quantize
                parts.append(
                    f"{q.scheme} {q.effective_algorithm}"
                    + (f" g{q.group_size}" if q.group_size else "")
                    + (f" mixed ≤{q.mixed_precision.budget:.2f}x" if q.mixed_precision else "")
                )
            elif step.prune is not None:
                parts.append(f"{step.prune.method} {step.prune.fraction:.0%}")
            elif step.distill is not None:
                parts.append(f"distill {step.distill.steps} steps")
        return " → ".join(parts)
