"""Serving across nodes: tensor parallel within a node, pipeline parallel across nodes.

When no tensor-parallel size within one node fits, vLLM's own recipe for multi-node
serving applies: tensor-parallel size = the node's GPUs (the fast NVLink domain),
pipeline-parallel size = the number of nodes (the layers split into consecutive
stages, so only one activation per token crosses the slower network between nodes).
The fewest nodes on which every GPU fits wins.

One GPU of a stage holds: its share (1/TP) of the stage's ⌈layers / PP⌉ decoder
layers and of one embedding matrix (the first stage holds embed_tokens, the last
lm_head), the KV cache of the stage's layers, activations as at that TP, and runtime
memory with the pipeline's communication buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelpress.sizing import memory
from modelpress.sizing.catalog import GpuType
from modelpress.sizing.fit import DeviceMemory, tensor_parallel_problem
from modelpress.sizing.settings import ServingSettings
from modelpress.sizing.shape import ModelShape

#: The most nodes one replica may span (vLLM's multi-node guidance stops well before).
MAX_NODES = 16
EMBEDDING_DTYPE_BYTES = 2


@dataclass(frozen=True)
class NodesPlan:
    """Tensor parallel x pipeline parallel, and one GPU's memory at the largest stage."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    per_gpu: DeviceMemory

    @property
    def nodes(self) -> int:
        return self.pipeline_parallel_size

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


def stage_memory(
    shape: ModelShape,
    weights_bytes: int,
    settings: ServingSettings,
    target: GpuType,
    tensor_parallel_size: int,
    pipeline_parallel_size: int,
) -> DeviceMemory:
    """One GPU of the largest pipeline stage."""
    tp, pp = tensor_parallel_size, pipeline_parallel_size
    layers = shape.num_hidden_layers
    stage_layers = math.ceil(layers / pp)
    embedding = shape.vocab_size * shape.hidden_size * EMBEDDING_DTYPE_BYTES
    embeddings = shape.embedding_parameters() * EMBEDDING_DTYPE_BYTES
    per_layer = max(weights_bytes - embeddings, 0) / layers
    stage_weights = stage_layers * per_layer + embedding
    kv = memory.kv_cache_bytes(shape, settings, tp) * stage_layers // layers
    return DeviceMemory(
        weights_bytes=math.ceil(stage_weights / tp),
        kv_cache_bytes=kv,
        activation_bytes=memory.activation_bytes(shape, settings, tp),
        cuda_graph_bytes=memory.cuda_graph_bytes(settings),
        runtime_bytes=memory.runtime_bytes(tp) + memory.TENSOR_PARALLEL_RUNTIME_BYTES,
        budget_bytes=int(target.memory_bytes * settings.gpu_memory_utilization),
    )


def node_tensor_parallel_size(shape: ModelShape, target: GpuType) -> int | None:
    """The largest tensor-parallel size within one node that vLLM can shard `shape` over."""
    sizes = [n for n in (8, 4, 2, 1) if n <= target.max_per_node]
    return next((n for n in sizes if tensor_parallel_problem(shape, n) is None), None)


def plan_nodes(
    shape: ModelShape,
    weights_bytes: int,
    settings: ServingSettings,
    target: GpuType,
    max_nodes: int = MAX_NODES,
) -> NodesPlan | None:
    """The fewest nodes (2 or more) on which every GPU fits, or None."""
    tp = node_tensor_parallel_size(shape, target)
    if tp is None:
        return None
    for pp in range(2, min(max_nodes, shape.num_hidden_layers) + 1):
        per_gpu = stage_memory(shape, weights_bytes, settings, target, tp, pp)
        if per_gpu.total_bytes <= per_gpu.budget_bytes:
            return NodesPlan(tp, pp, per_gpu)
    return None
