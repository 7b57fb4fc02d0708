"""Store commands the Jobs and init containers run (`pull`, `gc`, `fetch`), and `verify`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from typing import Any

from modelpress.cli import UsageError

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'24h', '90m', '1d12h', '3600s' -> timedelta."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise UsageError(
            f"--older-than {text!r} is not a duration: write a number with a unit, "
            "like 24h, 90m, 7d or 1d12h"
        )
    return timedelta(seconds=sum(int(number) * _UNITS[unit] for number, unit in parts))


def register(subparsers: Any) -> None:
    pull = subparsers.add_parser(
        "pull",
        help="download an artifact and verify every file's sha256",
        description="Download a published artifact into DEST, verifying every file against its "
        "manifest. Files already present with the right hash are kept, so a rerun resumes. "
        "Exits non-zero, naming the file, on any checksum mismatch.",
    )
    pull.add_argument("uri", metavar="URI", help="artifact prefix, e.g. s3://bucket/artifacts/KEY/")
    pull.add_argument("dest", metavar="DEST", help="local directory to download into")
    pull.add_argument("--quiet", action="store_true", help="no progress output")
    pull.set_defaults(func=run_pull)

    verify = subparsers.add_parser(
        "verify",
        help="check a committed artifact byte for byte; --repair removes what is damaged",
        description="Download every file of an artifact and compare it with its manifest. "
        "Exit 0 when all match; otherwise one line per problem and exit 1. With --repair, "
        "remove the manifest and every damaged object (exit 0): the artifact is then absent, "
        "and the operator computes it again.",
    )
    verify.add_argument(
        "uri", metavar="URI", help="artifact prefix, e.g. s3://bucket/artifacts/KEY/"
    )
    verify.add_argument("--repair", action="store_true", help="remove what is damaged")
    verify.set_defaults(func=run_verify)

    gc = subparsers.add_parser(
        "gc",
        help="remove staging leftovers (artifact prefixes without a manifest)",
        description="Remove models/*/ and artifacts/*/ prefixes that have files but no "
        "manifest.json and were last written longer ago than --older-than.",
    )
    gc.add_argument("--store", required=True, metavar="URI", help="storage root URI")
    gc.add_argument(
        "--older-than", required=True, metavar="DURATION", help="age threshold, e.g. 24h"
    )
    gc.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    gc.add_argument("--json", action="store_true", help="print the report as JSON")
    gc.set_defaults(func=run_gc)

    fetch = subparsers.add_parser(
        "fetch",
        help="resolve a base model source and publish it into the store once",
        description="Resolve a source (Hugging Face repo or store URI) to a revision, publish "
        "its base model at models/<base-key>/ unless already there, record it at "
        "sources/<source-key>.json, and print that record as JSON on stdout. The Hub token is "
        "read from the file HF_TOKEN_PATH names (or HF_TOKEN).",
    )
    fetch.add_argument(
        "--source",
        required=True,
        metavar="JSON",
        help='source spec, e.g. \'{"huggingface": {"repo": "org/name", "revision": "main"}}\' '
        'or \'{"uri": "s3://bucket/base/"}\'',
    )
    fetch.add_argument("--store", required=True, metavar="URI", help="storage root URI")
    fetch.add_argument("--work-dir", metavar="DIR", help="scratch space for downloads")
    fetch.add_argument("--quiet", action="store_true", help="no progress output")
    fetch.set_defaults(func=run_fetch)


def _fail(command: str, error: Exception) -> int:
    print(f"modelpress {command}: {error}", file=sys.stderr)
    return 1


def _progress(quiet: bool) -> Any:
    from modelpress.storage import default_reporter

    return None if quiet else default_reporter()


def run_verify(args: argparse.Namespace) -> int:
    from modelpress.storage import InvalidURIError, StorageError
    from modelpress.storage.verify import verify_artifact

    try:
        result = verify_artifact(args.uri, repair=args.repair)
    except InvalidURIError as error:
        raise UsageError(str(error)) from None
    except StorageError as error:
        return _fail("verify", error)
    for problem in result.problems:
        print(f"{result.uri}: {problem}")
    if result.ok:
        print(f"{result.uri}: {result.files} files, every byte as the manifest lists")
        return 0
    if result.repaired:
        print(
            f"{result.uri}: removed {len(result.damaged)} object(s), the manifest first; the "
            "next publish computes the artifact again (intact files are reused)"
        )
        return 0
    if result.damaged:
        print(f"{result.uri}: run again with --repair to remove what is damaged")
    return 1


def run_pull(args: argparse.Namespace) -> int:
    from modelpress.storage import InvalidURIError, StorageError, fetch
    from modelpress.storage.progress import format_bytes

    try:
        manifest = fetch(args.uri, args.dest, progress=_progress(args.quiet))
    except InvalidURIError as error:
        raise UsageError(str(error)) from None
    except StorageError as error:
        return _fail("pull", error)
    print(
        f"pulled {len(manifest.files)} files ({format_bytes(manifest.total_bytes)}) into "
        f"{args.dest}, all sha256 verified",
        file=sys.stderr,
    )
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from modelpress.storage import InvalidURIError, StorageError, gc
    from modelpress.storage.progress import format_bytes, format_duration

    older_than = parse_duration(args.older_than)
    try:
        report = gc(args.store, older_than, dry_run=args.dry_run)
    except InvalidURIError as error:
        raise UsageError(str(error)) from None
    except StorageError as error:
        return _fail("gc", error)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for prefix in report.removed:
        print(
            f"{verb} {prefix.uri}: {prefix.objects} objects, {format_bytes(prefix.bytes)}, "
            f"idle {format_duration(prefix.age_seconds)}"
        )
    for prefix in report.unlisted:
        print(
            f"{verb} {prefix.objects} object(s) of {prefix.uri} its manifest does not list, "
            f"{format_bytes(prefix.bytes)}"
        )
    for prefix in report.checkpoints:
        print(
            f"{verb} {prefix.uri}: checkpoints of a committed artifact, {format_bytes(prefix.bytes)}"
        )
    for prefix in report.kept:
        print(f"kept {prefix.uri}: idle {format_duration(prefix.age_seconds)}, may be in progress")
    print(
        f"{verb} {len(report.removed)} staging prefix(es) and {len(report.unlisted)} committed "
        f"artifact(s)' unlisted objects, {format_bytes(report.removed_bytes)}; aborted "
        f"{report.aborted_uploads} unfinished multipart upload(s); {report.committed} "
        "committed artifact(s) kept"
    )
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from modelpress.sources import SourceError, SourceSpecError, fetch_source
    from modelpress.storage import InvalidURIError, StorageError

    try:
        spec = json.loads(args.source)
    except json.JSONDecodeError as error:
        raise UsageError(f"--source is not valid JSON ({error.msg} at {error.pos})") from None
    try:
        record = fetch_source(
            spec, args.store, work_dir=args.work_dir, progress=_progress(args.quiet)
        )
    except (InvalidURIError, SourceSpecError) as error:
        raise UsageError(str(error)) from None
    except SourceError as error:
        if error.permanent:  # exit 2: the Job's pod failure policy fails it at once
            print(f"modelpress fetch: {error}", file=sys.stderr)
            return 2
        return _fail("fetch", error)
    except StorageError as error:
        return _fail("fetch", error)
    print(json.dumps(record.model_dump(), sort_keys=True))
    return 0
