"""`modelpress run FILE.yaml`: the whole CompressedModel on this machine.

Same planner, same Job commands, same artifacts and status as on a cluster;
Jobs are local processes, the store is a `file://` directory, and the served
variant runs in a local vLLM server that answers one chat request.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from modelpress.cli import UsageError


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a CompressedModel on this machine: compress, evaluate, serve, ask",
        description="Plan the CompressedModel in FILE with the operator's planner and carry "
        "the plan out here: the fetch and compression Jobs run as local processes, artifacts "
        "go to the spec's file:// store (or --store), and the chosen variant is served by a "
        "local vLLM OpenAI-compatible server on CPU, which gets one chat request. Artifacts "
        "already published are reused. Serves until Ctrl-C unless --once.",
    )
    run.add_argument("file", type=Path, metavar="FILE", help="YAML with a CompressedModel")
    run.add_argument("--name", help="which CompressedModel, when FILE has several")
    run.add_argument(
        "--store",
        metavar="URI",
        help="file:///absolute/path/ store to use instead of spec.storage.uri (required when "
        "that is s3://)",
    )
    run.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        default=Path(os.environ.get("MODELPRESS_WORK_DIR", "/var/tmp/modelpress/work")),
        help="logs, scratch space, the served copy, status.json (default: "
        "$MODELPRESS_WORK_DIR or /var/tmp/modelpress/work)",
    )
    run.add_argument(
        "--vllm",
        metavar="PATH",
        help="vLLM's virtual environment, its python, or its vllm script (default: "
        "$MODELPRESS_VLLM, vllm on PATH, the checkout's .venv-vllm)",
    )
    run.add_argument(
        "--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 = any free)"
    )
    run.add_argument("--prompt", help="the chat request sent once the server is ready")
    run.add_argument("--max-tokens", type=int, default=64, help="length of the answer (64)")
    run.add_argument(
        "--once", action="store_true", help="stop the server after the answer and exit"
    )
    run.add_argument(
        "--compile",
        action="store_true",
        help="let vLLM compile the model (slow to start on CPU); default: --enforce-eager",
    )
    run.add_argument(
        "--start-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long vLLM may take to become ready (900)",
    )
    run.add_argument(
        "--no-serve",
        action="store_true",
        help="compress and evaluate only, as with serving.variant none (no vLLM needed)",
    )
    run.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    run.set_defaults(func=run_model)


def _check_arguments(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port: use 1-65535, or 0 for any free port")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    if args.start_timeout <= 0:
        raise UsageError("--start-timeout must be positive")
    if not args.work_dir.is_absolute():
        args.work_dir = args.work_dir.resolve()


def _write_picture(spec: Any, status: Any, name: str, prefix: Path, out: Any) -> None:
    """The size-vs-quality chart beside the status (`modelpress report` draws it again)."""
    from modelpress.report.chart import PlottingUnavailable
    from modelpress.report.points import from_model
    from modelpress.report.write import write_report

    picture = from_model(spec, status, name)
    if not picture.points:
        return
    try:
        png, page = write_report(picture, prefix)
    except PlottingUnavailable as error:
        print(f"no chart: {error}", file=out)
        return
    print(f"chart: {png} and {page}", file=out)


def run_model(args: argparse.Namespace) -> int:
    from modelpress.api.reasons import ConditionType
    from modelpress.local import http
    from modelpress.local.console import Console
    from modelpress.local.errors import LocalRunError
    from modelpress.local.report import render
    from modelpress.local.runner import LocalRun, RunOptions
    from modelpress.local.spec import SpecError, load_model
    from modelpress.plan.conditions import find
    from modelpress.storage import StorageError

    _check_arguments(args)
    console = Console(rich=False if args.plain else None)
    started = time.monotonic()
    try:
        model = load_model(args.file, args.name)
        options = RunOptions(
            store=args.store,
            work_dir=args.work_dir,
            vllm=args.vllm,
            port=args.port,
            prompt=args.prompt or http.DEFAULT_PROMPT,
            once=args.once,
            compile=args.compile,
            start_timeout=args.start_timeout,
            max_tokens=args.max_tokens,
            serve=not args.no_serve,
        )
        run = LocalRun(model, options, console)
    except SpecError as error:
        raise UsageError(str(error)) from None
    try:
        try:
            run.preflight()
        except SpecError as error:
            raise UsageError(str(error)) from None
        result = run.reconcile()
        answer = run.ask()
        status_path = run.write_status()
        out = sys.stdout
        print(file=out)
        render(
            result.status,
            {v.name: v.describe() for v in run.spec.variants},
            result.reused,
            result.built,
            result.failed,
            rich=console.rich,
            stream=out,
        )
        print(f"status: {status_path}", file=out)
        _write_picture(run.spec, result.status, run.name, status_path.with_name("report"), out)
        if answer is not None and result.server is not None:
            print(
                f"vLLM loaded {result.served_root or result.server.model_dir}, the copy "
                "`modelpress pull` verified file by file against the manifest",
                file=out,
            )
            print(file=out)
            print(f"Q: {options.prompt}", file=out)
            print(f"A ({result.server.model_name}, {result.endpoint}): {answer}", file=out)
        elapsed = time.monotonic() - started
        print(f"\nrun took {elapsed:.0f} s", file=out, flush=True)
        code = 0 if result.ready else 1
        if not result.ready:
            ready = find(result.status.conditions, ConditionType.READY)
            why = f"({ready.reason}): {ready.message}" if ready else "(no Ready condition)"
            print(f"modelpress run: not ready {why}", file=sys.stderr)
        if result.server is not None and not args.once:
            return _serve_until_interrupted(run, console) or code
        return code
    except SpecError as error:
        raise UsageError(str(error)) from None
    except (LocalRunError, StorageError) as error:
        print(f"modelpress run: {error}", file=sys.stderr)
        return 1
    finally:
        run.stop()


def _serve_until_interrupted(run: Any, console: Any) -> int:
    server = run.result.server
    console.say(
        f"serving {server.model_name!r} at {server.base_url}/v1 (OpenAI-compatible); "
        "Ctrl-C stops it"
    )
    try:
        code = server.process.wait()
    except KeyboardInterrupt:
        console.say("stopping vLLM")
        return 0
    print(
        f"modelpress run: vLLM exited with code {code}; log: {server.process.log_path}",
        file=sys.stderr,
    )
    return 1
