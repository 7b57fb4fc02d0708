"""Training memory per process and the replicate-or-shard choice, with the reasoning
for each expected answer (bytes per parameter: 16 for the student, 2 for a bf16
teacher on a GPU, 4 for an fp32 one on a CPU)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.sizing.known_models import shape_of

from modelpress.sizing.training import choose_layout, training_bytes
from modelpress.sizing.units import GiB

H100 = int(79.11 * GiB)
LLAMA_70B = shape_of("Llama-3.1-70B")
SMOLLM2 = shape_of("SmolLM2-135M")


def test_a_70b_teacher_heals_a_20_layer_student_over_four_nodes_of_h100s() -> None:
    """The student keeps 20 of the 80 blocks: 19.2e9 parameters. With the 70.6e9-parameter
    teacher that is 19.2e9 x 16 + 70.6e9 x 2 bytes = 418 GiB of state, far over one GPU,
    so the gang shards. Its 32 rows of 2048 tokens cost 1.05 GiB of activations per row
    (20 blocks x 8192 x 34 x 2 bytes + 128256 x 16 bytes per token): eight GPUs (4 rows
    each) need 173 GiB, sixteen 89 GiB, still over 79 GiB; 32 GPUs (one row each) fit
    in 47 GiB."""
    student = LLAMA_70B.model_copy(update={"num_hidden_layers": 20})
    state = student.parameter_count() * 16 + LLAMA_70B.parameter_count() * 2
    assert 410 * GiB < state < 425 * GiB
    needed = {}
    for world in (8, 16, 32):
        layout = choose_layout(
            student, LLAMA_70B, world_size=world, batch_size=32, sequence_length=2048,
            device_bytes=H100,
        )  # fmt: skip
        assert layout.sharding == "full"
        needed[world] = layout.bytes_per_process
    assert needed[16] > H100 >= needed[32] > 40 * GiB


def test_replicas_that_fit_are_kept_and_cpus_always_replicate() -> None:
    """SmolLM2 (0.13e9 parameters, 2.3 GiB of state) fits any GPU whole; on a CPU the
    pod's host memory is sized to the replicas, so there is no device to overflow."""
    gpu = choose_layout(
        SMOLLM2, SMOLLM2, world_size=2, batch_size=4, sequence_length=256, device_bytes=H100
    )
    cpu = choose_layout(
        LLAMA_70B, LLAMA_70B, world_size=8, batch_size=8, sequence_length=256, device_bytes=None
    )
    assert gpu.sharding == "replicate" and cpu.sharding == "replicate"
    assert cpu.bytes_per_process > LLAMA_70B.parameter_count() * 20  # fp32 teacher on a CPU


def test_one_process_has_nothing_to_shard_over() -> None:
    """The 70B alone does not fit one H100; sharding over one process would not help, so
    the layout stays replicated and its bytes say by how much it is too large."""
    alone = choose_layout(
        LLAMA_70B, LLAMA_70B, world_size=1, batch_size=4, sequence_length=256, device_bytes=H100
    )
    assert alone.sharding == "replicate" and alone.bytes_per_process > 15 * H100


def test_sharding_divides_the_state_and_gathers_one_block_of_each_model() -> None:
    one = training_bytes(
        SMOLLM2, SMOLLM2, world_size=1, sharded=False, rows_per_process=0, sequence_length=1,
        on_gpu=True,
    )  # fmt: skip
    split = training_bytes(
        SMOLLM2, SMOLLM2, world_size=4, sharded=True, rows_per_process=0, sequence_length=1,
        on_gpu=True,
    )  # fmt: skip
    blocks = SMOLLM2.parameter_count() - SMOLLM2.embedding_parameters()
    block = blocks // SMOLLM2.num_hidden_layers
    # a quarter of the state, plus one gathered block: fp32 student (4) and bf16 teacher (2)
    assert split == pytest.approx(one / 4 + block * 6 * 1.1, rel=1e-6)


def test_a_quantized_student_tunes_its_scales_replicated() -> None:
    """Tuning a W4A16 70B's scales on 8 H100s: 6 bytes per Linear parameter (codes and
    the rebuilt fp32 weight) and 4 per frozen embedding parameter instead of 16, plus a
    bf16 teacher: over one GPU, and still replicated, since its scale gains cannot be
    sharded; the bytes say by how much it is too large."""
    args: dict[str, Any] = {
        "world_size": 8,
        "batch_size": 8,
        "sequence_length": 512,
        "device_bytes": H100,
    }
    tuned = choose_layout(LLAMA_70B, LLAMA_70B, quantized=True, **args)
    trained = choose_layout(LLAMA_70B, LLAMA_70B, **args)
    assert tuned.sharding == "replicate" and trained.sharding == "full"
    linear = LLAMA_70B.parameter_count() - LLAMA_70B.embedding_parameters()
    state = linear * 6 + LLAMA_70B.embedding_parameters() * 4 + LLAMA_70B.parameter_count() * 2
    assert state < tuned.bytes_per_process < 1.3 * state
    small = choose_layout(SMOLLM2, SMOLLM2, quantized=True, **args)
    assert small.sharding == "replicate" and small.bytes_per_process < H100


def test_a_steps_precision_sizes_its_teacher_wherever_it_trains() -> None:
    """An fp32 step holds a 4-byte teacher even on a GPU, a bf16 one a 2-byte teacher even
    on a CPU; unset, the GPU's 2 and the CPU's 4 (the CPU's own choice is not known yet)."""
    sizes = {
        (on_gpu, precision): training_bytes(
            LLAMA_70B,
            LLAMA_70B,
            world_size=1,
            sharded=False,
            rows_per_process=0,
            sequence_length=1,
            on_gpu=on_gpu,
            precision=precision,
        )
        for on_gpu in (True, False)
        for precision in (None, "fp32", "bf16")
    }
    teacher_byte = LLAMA_70B.parameter_count() * 1.1
    assert sizes[True, "fp32"] - sizes[True, None] == pytest.approx(2 * teacher_byte, rel=1e-6)
    assert sizes[False, None] - sizes[False, "bf16"] == pytest.approx(2 * teacher_byte, rel=1e-6)
    assert sizes[True, "fp32"] == sizes[False, "fp32"] == sizes[False, None]
    assert sizes[True, "bf16"] == sizes[False, "bf16"] == sizes[True, None]
