"""Memory a distillation's training needs on each process's device, and whether the
student is replicated in every process or sharded over them (FSDP).

Per parameter:
- of the student (the shape the chain's earlier steps leave): fp32 weights, gradients
  and two AdamW moments, 16 bytes;
- of the teacher (the base model), forward only: 2 bytes when the step trains in
  bf16, 4 in fp32; a step that leaves its `precision` unset counts 2 on a GPU and 4 on
  a CPU (the pod's CPU, which decides there, is not known when it is sized).
After quantization (scale tuning, `compress.scale_tuning`) the student's Linears hold
int8 codes and rebuild their fp32 weights for the backward pass, and only the scale
gains and norms train: 6 bytes per Linear parameter, 4 per (frozen, fp32) embedding
parameter. Such a student trains in one process (a gang ends at the quantize step),
so the planner sizes it with a world of one.
Replicated (DistributedDataParallel), every process holds all of it. Sharded (FSDP,
one unit per decoder block), each holds its 1/world share, plus one block gathered
whole for the student and one for the teacher while they compute.

Activations: each process's rows of a batch keep, per token, the inputs of every
block for the backward pass (ACTIVATION_WIDTHS x hidden size in bf16 per layer), and
the student's and teacher's logits and the gradient of the student's (LOGIT_COPIES x
vocabulary x 4 bytes; the loss itself works a slice of positions at a time,
`compress.kd_loss`).

Pure arithmetic: the operator sizes the pod and chooses the layout from it, and the
compressor carries out the layout it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelpress.sizing.shape import ModelShape

Sharding = Literal["replicate", "full"]
SHARDINGS: tuple[Sharding, ...] = ("replicate", "full")

STUDENT_BYTES_PER_PARAMETER = 16
QUANTIZED_STUDENT_BYTES_PER_PARAMETER = 6
FROZEN_BYTES_PER_PARAMETER = 4
TEACHER_BYTES: dict[str, int] = {"bf16": 2, "fp32": 4}
ACTIVATION_WIDTHS = 34
"""Hidden-size-wide bf16 tensors a decoder block keeps per token for its backward pass
(attention and MLP inputs, projections, norms): Korthikanti et al.'s 34 per layer."""
LOGIT_COPIES = 3
"""fp32 vocabulary-wide rows per token: student and teacher logits, and the gradient
of the student's logits."""
FRAGMENTATION = 1.1
"""Allocator slack over what the tensors themselves take."""


@dataclass(frozen=True)
class TrainingLayout:
    """How the training state is laid out, and what one process then needs."""

    sharding: Sharding
    bytes_per_process: int
    """On the process's device: its GPU's memory, or host memory when on CPU."""
    world_size: int
    quantized: bool = False
    """The student is quantized (scale tuning): it trains alone, more GPUs cannot help."""


def training_bytes(
    student: ModelShape,
    teacher: ModelShape,
    *,
    world_size: int,
    sharded: bool,
    rows_per_process: int,
    sequence_length: int,
    on_gpu: bool,
    quantized: bool = False,
    precision: str | None = None,
) -> int:
    """Bytes one training process holds on its device (see the module's docstring)."""
    teacher_bytes = TEACHER_BYTES[precision or ("bf16" if on_gpu else "fp32")]
    state = _student_bytes(student, quantized) + teacher.parameter_count() * teacher_bytes
    if sharded:  # each keeps its share, and gathers one block of each model at a time
        gathered = _block(student) * 4 + _block(teacher) * teacher_bytes
        state = state // world_size + gathered
    tokens = rows_per_process * sequence_length
    per_token = (
        student.num_hidden_layers * student.hidden_size * ACTIVATION_WIDTHS * 2
        + student.vocab_size * 4 * LOGIT_COPIES
    )
    return int((state + tokens * per_token) * FRAGMENTATION)


def _student_bytes(student: ModelShape, quantized: bool) -> int:
    if not quantized:
        return student.parameter_count() * STUDENT_BYTES_PER_PARAMETER
    embedding = student.embedding_parameters()
    return (student.parameter_count() - embedding) * QUANTIZED_STUDENT_BYTES_PER_PARAMETER + (
        embedding * FROZEN_BYTES_PER_PARAMETER
    )


def _block(shape: ModelShape) -> int:
    """Parameters of one decoder block."""
    return (shape.parameter_count() - shape.embedding_parameters()) // shape.num_hidden_layers


def choose_layout(
    student: ModelShape,
    teacher: ModelShape,
    *,
    world_size: int,
    batch_size: int,
    sequence_length: int,
    device_bytes: int | None,
    quantized: bool = False,
    precision: str | None = None,
) -> TrainingLayout:
    """Replicas while they fit the device (`device_bytes` of GPU memory; None: the CPU,
    whose host memory is requested to fit), else the student sharded over the ranks
    (never a `quantized` one)."""
    rows = max(1, batch_size // world_size)

    def layout(sharding: Sharding) -> TrainingLayout:
        needed = training_bytes(
            student,
            teacher,
            world_size=world_size,
            sharded=sharding == "full",
            rows_per_process=rows,
            sequence_length=sequence_length,
            on_gpu=device_bytes is not None,
            quantized=quantized,
            precision=precision,
        )
        return TrainingLayout(sharding, needed, world_size, quantized)

    replicated = layout("replicate")
    fits = device_bytes is None or replicated.bytes_per_process <= device_bytes
    if fits or world_size == 1 or quantized:
        return replicated
    return layout("full")
