"""`modelpress cloze`: a multiple-choice task file made from held-out text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modelpress.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cloze",
        help="make a multiple-choice task (JSON lines) from held-out text",
        description=(
            "Write a task file for spec.evaluation.tasks: each question is a paragraph's "
            "first words, with its next words among the same span of other paragraphs. Use "
            "text from the domain you serve that no calibration file holds."
        ),
    )
    parser.add_argument("text", type=Path, metavar="TEXT", help="a UTF-8 text file")
    parser.add_argument("--questions", type=int, default=100, metavar="N", help="default 100")
    parser.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelpress.compress.errors import CompressionError
    from modelpress.compress.tasks import cloze_questions

    if args.questions < 1:
        raise UsageError(f"--questions must be at least 1, not {args.questions}")
    try:
        text = args.text.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {args.text}: {error}") from None
    try:
        questions = cloze_questions(text, args.questions)
    except CompressionError as error:
        raise UsageError(f"{args.text}: {error}: use fewer --questions or a longer text") from None
    lines = "".join(json.dumps(question) + "\n" for question in questions)
    if args.out is None:
        sys.stdout.write(lines)
    else:
        partial = args.out.with_name(args.out.name + ".partial")
        partial.write_text(lines, encoding="utf-8")
        partial.replace(args.out)
    return 0
