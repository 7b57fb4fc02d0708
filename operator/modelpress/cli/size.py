"""`modelpress size`: how many GPUs, what pod and which vLLM arguments a variant needs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from modelpress.cli import UsageError

KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "size",
        help="predict serving memory, GPU count, pod resources and vLLM arguments",
        description=(
            "Size a vLLM server for a compressed artifact (--manifest) or, before "
            "compressing, for a model config and a scheme (--config --scheme). Exits 0 when "
            "the variant fits the target, 1 when it does not."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help="artifact manifest.json whose metadata holds weightsBytes and modelConfig",
    )
    source.add_argument(
        "--config", type=Path, metavar="FILE", help="the model's Hugging Face config.json"
    )
    parser.add_argument(
        "--scheme", help="with --config: W4A16, W8A16, W8A8, FP8_DYNAMIC, BF16, ..."
    )
    parser.add_argument(
        "--group-size",
        type=int,
        metavar="N",
        help="W4A16/W8A16 group size (default: W4A16 128 where it divides a layer's "
        "inputs, else 64, else 32; W8A16 per output channel; -1: per output channel)",
    )
    parser.add_argument(
        "--gpu", required=True, metavar="PRODUCT", help="GPU product (e.g. nvidia-l4) or cpu"
    )
    parser.add_argument("--max-model-len", type=int, required=True, metavar="N")
    parser.add_argument("--max-num-seqs", type=int, required=True, metavar="N")
    parser.add_argument("--kv-cache-dtype", default="auto", metavar="D", help="auto or fp8")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, metavar="F")
    parser.add_argument("--max-num-batched-tokens", type=int, metavar="N")
    parser.add_argument("--gpu-count", type=int, metavar="N", help="use exactly N GPUs")
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=1,
        metavar="N",
        help="let one replica span up to N nodes (pipeline parallel across them) when no "
        "single node fits (spec.serving.maxNodes)",
    )
    parser.add_argument(
        "--allow-cpu-offload",
        action="store_true",
        help="offload weights to host memory when they do not fit the GPUs",
    )
    parser.add_argument(
        "--gpu-catalog",
        type=Path,
        metavar="FILE",
        help="YAML/JSON overriding the GPU catalog (a gpuCatalog map, or Helm values holding one)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelpress.sizing import SizingError

    try:
        return _run(args)
    except SizingError as error:
        raise UsageError(str(error)) from None


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from modelpress.problems import describe
    from modelpress.sizing import (
        GPU_CATALOG,
        ModelShape,
        ServingSettings,
        catalog_with_overrides,
        find_gpu,
        predict_weights_bytes,
        size_variant,
    )

    if args.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise UsageError(
            f"unknown --kv-cache-dtype {args.kv_cache_dtype!r}; use one of {', '.join(KV_CACHE_DTYPES)}"
        )
    catalog = GPU_CATALOG
    if args.gpu_catalog:
        catalog = catalog_with_overrides(_catalog_overrides(args.gpu_catalog))
    target = find_gpu(args.gpu, catalog)
    try:
        settings = ServingSettings(
            max_model_len=args.max_model_len,
            max_num_seqs=args.max_num_seqs,
            kv_cache_dtype=args.kv_cache_dtype,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_num_batched_tokens=args.max_num_batched_tokens,
        )
    except ValidationError as error:
        raise UsageError(_flag_message(describe(error, limit=1))) from None

    if args.manifest:
        if args.scheme or args.group_size:
            raise UsageError(
                "--scheme and --group-size go with --config; drop them with --manifest"
            )
        config, weights_bytes = _read_manifest(args.manifest)
        shape = ModelShape.from_config(config)
        weights_from = f"manifest {args.manifest}"
    else:
        if not args.scheme:
            raise UsageError("--config needs --scheme (e.g. W4A16, W8A16, BF16) to predict weights")
        shape = ModelShape.from_config(_read_json(args.config, "model config"))
        weights_bytes = predict_weights_bytes(shape, args.scheme, args.group_size)
        from modelpress.sizing.schemes import resolve_scheme, weight_group_sizes

        groups = weight_group_sizes(shape, resolve_scheme(args.scheme), args.group_size)
        grouped = {width: group for width, group in groups.items() if group}
        shape = shape.model_copy(update={"weight_group_sizes": grouped})  # as it will be stored
        weights_from = f"predicted for {resolve_scheme(args.scheme).name}"

    result = size_variant(
        shape,
        weights_bytes,
        settings,
        target,
        catalog=catalog,
        allow_cpu_offload=args.allow_cpu_offload,
        gpu_count=args.gpu_count,
        max_nodes=args.max_nodes,
    )
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        print(_breakdown(result, shape, target, weights_from))
    return 0 if result.fits else 1


def _flag_message(message: str) -> str:
    """Name the command-line flag rather than the settings field."""
    field, _, rest = message.partition(": ")
    return f"--{field.replace('_', '-')}: {rest}" if rest else message


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{what} {path} is not valid JSON: {error}") from None


def _read_manifest(path: Path) -> tuple[dict[str, Any], int]:
    if path.is_dir():
        path = path / "manifest.json"
    manifest = _read_json(path, "manifest")
    metadata = manifest.get("metadata") if isinstance(manifest, dict) else None
    if not isinstance(metadata, dict):
        raise UsageError(f"manifest {path} has no metadata object; give --config and --scheme")
    weights = metadata.get("weightsBytes")
    config = metadata.get("modelConfig")
    if not isinstance(weights, int) or isinstance(weights, bool) or weights <= 0:
        raise UsageError(
            f"manifest {path} lacks a positive metadata.weightsBytes; give --config and --scheme"
        )
    if not isinstance(config, dict):
        raise UsageError(f"manifest {path} lacks metadata.modelConfig; give --config and --scheme")
    return config, weights


def _catalog_overrides(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read GPU catalog {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"GPU catalog {path} is not valid YAML or JSON: {error}") from None
    if isinstance(data, dict) and "gpuCatalog" in data:
        data = data["gpuCatalog"]
    if not isinstance(data, dict):
        raise UsageError(f"GPU catalog {path} must map product names to settings")
    return data


def _breakdown(result: Any, shape: Any, target: Any, weights_from: str) -> str:
    from modelpress.sizing.units import GiB, KiB

    def g(num_bytes: int) -> str:
        return f"{num_bytes / GiB:8.2f}"

    device = result.per_device
    where = "host" if result.device == "cpu" else "per GPU"
    params = shape.parameter_count() / 1e9
    if result.device == "cpu":
        target_line = f"cpu (host RAM {target.memory_bytes / GiB:.1f} GiB)"
    else:
        target_line = (
            f"{target.name} ({target.memory_bytes / GiB:.2f} GiB; x {result.gpu_memory_utilization:g}"
            f" = {device.budget_bytes / GiB:.2f} GiB usable per GPU)"
        )
    kv_note = (
        f"{result.max_num_seqs} seqs x {result.max_model_len} tokens, "
        f"{result.kv_cache_bytes_per_token / KiB:.1f} KiB/token, {result.kv_cache_dtype}"
    )
    if shape.sliding_window_layers:
        kv_note += f", window {shape.sliding_window} on {shape.sliding_window_layers} layers"
    lines = [
        f"model        {shape.model_type}, {params:.2f}B parameters, {shape.num_hidden_layers} layers, "
        f"{shape.num_attention_heads} heads / {shape.num_key_value_heads} KV heads",
        f"weights      {result.weights_bytes / GiB:.2f} GiB ({weights_from})",
        f"target       {target_line}",
        f"fits         {'yes' if result.fits else 'NO'}: {result.reason}",
    ]
    if result.device == "gpu" and result.nodes > 1:
        lines.append(
            f"GPUs         {result.gpus} on {result.nodes} nodes: tensor-parallel size "
            f"{result.tensor_parallel_size} in each node x pipeline-parallel size "
            f"{result.pipeline_parallel_size} across them (one pod per node)"
        )
        where = "per GPU, largest stage"
    elif result.device == "gpu":
        lines.append(
            f"GPUs         {result.gpus} (tensor-parallel size {result.tensor_parallel_size})"
        )
    lines += [
        "",
        f"{where:<14}       GiB",
        f"  weights      {g(device.weights_bytes)}",
    ]
    if device.offloaded_weights_bytes:
        lines.append(f"  offloaded    {g(device.offloaded_weights_bytes)}   (in host memory)")
    lines += [
        f"  KV cache     {g(device.kv_cache_bytes)}   ({kv_note})",
        f"  activations  {g(device.activation_bytes)}",
    ]
    if result.device == "gpu":
        lines.append(f"  CUDA graphs  {g(device.cuda_graph_bytes)}")
    lines += [
        f"  runtime      {g(device.runtime_bytes)}",
        f"  total        {g(device.total_bytes)}   of {device.budget_bytes / GiB:.2f} available",
        "",
        f"vLLM args    {' '.join(result.vllm_args)}",
    ]
    if result.env:
        lines.append("env          " + " ".join(f"{k}={v}" for k, v in result.env.items()))
    for kind in ("requests", "limits"):
        values = " ".join(f"{k}={v}" for k, v in result.resources[kind].items())
        lines.append(f"{kind:<13}{values}")
    if result.node_selector:
        lines.append(
            "nodeSelector " + " ".join(f"{k}={v}" for k, v in result.node_selector.items())
        )
    return "\n".join(lines)
