"""`modelpress operator`: run the Kubernetes operator (kopf, hardened settings)."""

from __future__ import annotations

import argparse
import logging
import os

from modelpress.cli import UsageError

DEFAULT_CONFIG = "/etc/modelpress/config.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the operator that reconciles CompressedModels in a cluster",
        description="Watch CompressedModel resources and run their pipeline: fetch the base "
        "model, compress and evaluate each variant in Jobs, serve the chosen one with vLLM, "
        "and report status and Events. Connects with the pod's ServiceAccount, else the "
        "kubeconfig (KUBECONFIG or ~/.kube/config).",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"operator configuration (YAML, see docs/operator.md); default {DEFAULT_CONFIG} "
        "when it exists, else built-in defaults",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; globs allowed); overrides the config's list",
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch every namespace, whatever the config says",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics",
        metavar="URL",
        help="serve Prometheus metrics, e.g. http://0.0.0.0:9090/metrics",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        default=None,
        help="run without peering (exactly one replica); overrides the config",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from modelpress.config import ConfigError, load_config
    from modelpress.handlers import OperatorState, run_operator

    path = args.config
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if args.liveness and not args.liveness.startswith(("http://", "https://")):
        raise UsageError(
            f"--liveness {args.liveness!r} must be a URL like http://0.0.0.0:8080/healthz"
        )
    if args.metrics:
        from modelpress.handlers.metrics import parse_endpoint

        try:
            parse_endpoint(args.metrics)
        except ValueError as error:
            raise UsageError(str(error)) from None
    namespaces = [] if args.all_namespaces else (args.namespace or config.namespaces)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf reports every handler run at INFO; the operator logs what it changes.
        for name in ("kopf.objects", "aiohttp.access", "botocore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    scope = ", ".join(namespaces) if namespaces else "all namespaces"
    logging.getLogger("modelpress").info(
        "modelpress operator watching %s (config: %s)", scope, path or "defaults"
    )
    asyncio.run(
        run_operator(
            OperatorState(config),
            namespaces=namespaces,
            standalone=args.standalone,
            liveness_endpoint=args.liveness,
            metrics_endpoint=args.metrics,
        )
    )
    return 0
