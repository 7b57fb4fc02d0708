"""The `modelpress` command line.

Every module in this package is one command group: it exposes
`register(subparsers)` and sets `func` on its parser. Modules are discovered,
so adding a command never touches this file. Heavy imports (torch,
transformers, boto3) belong inside the command functions, never at module
level: `modelpress --help` must stay instant and the operator image has no torch.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence

from modelpress import __version__


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelpress",
        description="Compress language models and serve them with vLLM, on Kubernetes or locally.",
    )
    parser.add_argument("--version", action="version", version=f"modelpress {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


#: Commands that manage signals themselves (kopf's own handlers run the operator).
OWN_SIGNALS = frozenset({"operator"})
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: unwind (no commit happens after it) and exit 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in OWN_SIGNALS and threading.current_thread() is threading.main_thread():
        # A container's PID 1 ignores SIGTERM unless it handles it: without this, a Job's
        # pod would run to the end of its grace period, and could commit meanwhile.
        signal.signal(signal.SIGTERM, _terminate)
    try:
        result = args.func(args)
    except Terminated:
        print(
            f"modelpress {args.command}: terminated (SIGTERM); nothing committed", file=sys.stderr
        )
        return EXIT_TERMINATED
    except UsageError as error:
        print(f"modelpress {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
