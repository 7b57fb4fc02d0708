"""`modelpress crd` and `modelpress validate`: the API, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    crd = subparsers.add_parser(
        "crd", help="print the CustomResourceDefinition generated from the API models"
    )
    crd.set_defaults(func=print_crd)

    health = subparsers.add_parser(
        "argocd-health",
        help="print Argo CD's health check for CompressedModel (Lua, for argocd-cm)",
    )
    health.set_defaults(func=print_argocd_health)

    validate = subparsers.add_parser(
        "validate",
        help="check CompressedModel manifests as the API server and the operator will",
        description=(
            "Reads files, directories (their .yaml, .yml and .json files) and - for standard "
            "input; several documents per file and kind: List are fine. One line per "
            "problem, naming the field. Exit 0 when every CompressedModel is valid, 1 when "
            "one is invalid, 2 when an input cannot be read."
        ),
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE|DIR|-")
    validate.set_defaults(func=validate_files)


def print_crd(args: argparse.Namespace) -> int:
    from modelpress.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def print_argocd_health(args: argparse.Namespace) -> int:
    from modelpress.api.health import argocd_lua

    sys.stdout.write(argocd_lua())
    return 0


def validate_files(args: argparse.Namespace) -> int:
    """Every input is read and judged, whatever the others hold."""
    from modelpress.api.admission import check
    from modelpress.api.documents import DocumentError, expand_paths, read_source
    from modelpress.api.resource import KIND

    invalid = unreadable = 0
    for path in expand_paths(list(args.files)):
        try:
            documents = read_source(path)
        except DocumentError as error:
            print(f"modelpress validate: {error}", file=sys.stderr)
            unreadable += 1
            continue
        models = [d for d in documents if d.body.get("kind") == KIND]
        if not models:
            print(f"{path}: no {KIND} found", file=sys.stderr)
            invalid += 1
        for document in models:
            metadata = document.body.get("metadata")
            name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
            problems = check(document.body)
            for problem in problems:
                print(f"{document.origin}: {KIND}/{name}: {problem}")
            if problems:
                invalid += 1
            else:
                print(f"{document.origin}: {KIND}/{name}: valid")
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_INVALID if invalid else 0
