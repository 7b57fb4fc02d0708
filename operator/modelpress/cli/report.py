"""`modelpress report FILE|NAME`: the size-vs-quality picture of a model's variants."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from modelpress.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="chart every variant's size against its quality (PNG and HTML)",
        description=(
            "Draw each variant as a point (size against perplexity increase and agreement "
            "with the base model), the Pareto frontier, the quality gate and the served "
            "variant; write PREFIX.png and a self-contained PREFIX.html and print a summary. "
            "FILE is a CompressedModel as `kubectl get -o yaml` prints it, a local run's "
            "status.json, or benchmarks/compression.py's JSON; NAME is a CompressedModel "
            "read from the cluster of the current kubeconfig context."
        ),
    )
    parser.add_argument("source", metavar="FILE|NAME")
    parser.add_argument("-n", "--namespace", help="namespace of NAME (default: the context's)")
    parser.add_argument(
        "-o", "--out", type=Path, metavar="PREFIX", help="output prefix (default: ./<name>-report)"
    )
    parser.add_argument(
        "--gate",
        type=float,
        metavar="F",
        help="draw this perplexity-increase gate (0.1 = 10 %%) instead of the spec's",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelpress.report.chart import PlottingUnavailable
    from modelpress.report.points import ReportError, read, summary
    from modelpress.report.write import write_report

    if args.gate is not None and not 0 <= args.gate <= 100:
        raise UsageError(f"--gate {args.gate} is not a fraction: give 0.1 for 10 %")
    path = Path(args.source)
    if path.is_file():
        document, label = _from_file(path), path.stem
    elif "/" in args.source or args.source.endswith((".yaml", ".yml", ".json")):
        raise UsageError(f"{args.source}: no such file")
    else:
        document, label = _from_cluster(args.source, args.namespace), args.source
    try:
        picture = read(document, args.gate)
    except ReportError as error:
        raise UsageError(f"{args.source}: {error}") from None
    prefix = args.out or Path(f"{label}-report")
    try:
        png, page = write_report(picture, prefix)
    except PlottingUnavailable as error:
        raise UsageError(str(error)) from None
    print(summary(picture))
    print(f"chart: {png}\npage:  {page}")
    return 0


def _from_file(path: Path) -> Any:
    from modelpress.api.documents import DocumentError, parse_documents

    try:
        documents = parse_documents(path.read_text(encoding="utf-8"), str(path))
    except (DocumentError, UnicodeDecodeError) as error:
        raise UsageError(str(error)) from None
    if len(documents) != 1:
        raise UsageError(f"{path} holds {len(documents)} documents; give a file with one")
    return documents[0].body


def _from_cluster(name: str, namespace: str | None) -> Any:
    """The CompressedModel `name`, with the credentials of the current kubeconfig context."""
    import kopf

    from modelpress.api.resource import KIND
    from modelpress.handlers.kube import ApiError, KubeClient

    hint = "set KUBECONFIG, or give the YAML of `kubectl get compressedmodel NAME -o yaml`"
    try:
        connection = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(
            f"{name} is not a file, and the kubeconfig cannot be read ({error}): {hint}"
        ) from None
    if connection is None:
        raise UsageError(
            f"{name} is not a file, and no kubeconfig was found to read it from a cluster: {hint}"
        )
    namespace = namespace or connection.default_namespace or "default"

    async def get() -> Any:
        client = KubeClient(connection, timeout=30)
        try:
            return await client.get(KIND, namespace, name)
        finally:
            await client.close()

    try:
        found = asyncio.run(get())
    except (ApiError, OSError) as error:
        raise UsageError(f"reading {namespace}/{name} from {connection.server}: {error}") from None
    if found is None:
        raise UsageError(f"no CompressedModel {name!r} in namespace {namespace}")
    return found
