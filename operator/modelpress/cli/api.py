"""`modelpress crd` and `modelpress validate`: the API, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelpress.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    crd = subparsers.add_parser(
        "crd", help="print the CustomResourceDefinition generated from the API models"
    )
    crd.set_defaults(func=print_crd)

    validate = subparsers.add_parser(
        "validate",
        help="check CompressedModel manifests as the API server and the operator will",
        description="Exit 0 when every manifest is valid; otherwise one line per problem.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(func=validate_files)


def print_crd(args: argparse.Namespace) -> int:
    from modelpress.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def load_documents(path: Path) -> list[dict[str, Any]]:
    from modelpress.api.documents import DocumentError, load_documents

    try:
        return load_documents(path)
    except DocumentError as error:
        raise UsageError(str(error)) from None


def validate_files(args: argparse.Namespace) -> int:
    from modelpress.api.admission import check
    from modelpress.api.resource import KIND

    failures = 0
    for path in args.files:
        documents = [d for d in load_documents(path) if d.get("kind") == KIND]
        if not documents:
            print(f"{path}: no {KIND} found", file=sys.stderr)
            failures += 1
        for document in documents:
            name = (document.get("metadata") or {}).get("name", "?")
            problems = check(document)
            for problem in problems:
                print(f"{path}: {KIND}/{name}: {problem}")
            if problems:
                failures += 1
            else:
                print(f"{path}: {KIND}/{name}: valid")
    return 1 if failures else 0
