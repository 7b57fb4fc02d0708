"""Which files of a checkpoint to take: safetensors, config and tokenizer by default.

Pickled weights (`.bin`, `.pt`, ...) can run code when loaded, so they are
refused unless the spec says `allowPickle: true`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from modelpress.sources.errors import SourcePolicyError

DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.json",
    "*.jinja",
    "*.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
)
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors",)


def is_pickle(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES)


def matches(path: str, patterns: Sequence[str]) -> bool:
    """Glob match on the whole relative path, as huggingface_hub's allow_patterns do."""
    return any(fnmatchcase(path, pattern) for pattern in patterns)


def select_files(
    available: Iterable[str],
    patterns: Sequence[str] | None = None,
    *,
    allow_pickle: bool = False,
    source: str = "the source",
    pickle_switch: str | None = "huggingface.allowPickle",
) -> list[str]:
    """The files to import, sorted; raises when the selection is unsafe or has no weights.

    `pickle_switch` names the spec field that allows pickles (None: there is none).
    """
    remedy = (
        f"set {pickle_switch}: true if you trust the source"
        if pickle_switch
        else "convert the checkpoint to safetensors"
    )
    paths = sorted(set(available))
    chosen_patterns = tuple(patterns) if patterns else DEFAULT_ALLOW_PATTERNS
    selected = [path for path in paths if matches(path, chosen_patterns)]
    pickled = [path for path in selected if is_pickle(path)]
    if pickled and not allow_pickle:
        raise SourcePolicyError(
            f"{source}: the allow patterns select pickled files {pickled[:5]}, which can run code "
            f"when loaded; drop them from the patterns or {remedy}"
        )
    if not any(path.endswith(WEIGHT_SUFFIXES) for path in selected) and not pickled:
        pickled_available = [path for path in paths if is_pickle(path)]
        if pickled_available and not allow_pickle:
            raise SourcePolicyError(
                f"{source} has only pickled weights ({pickled_available[:5]}), which can run code "
                f"when loaded; use a safetensors revision or {remedy}"
            )
        if pickled_available:
            selected = sorted(set(selected) | set(pickled_available))
    if not any(path.endswith(WEIGHT_SUFFIXES) or is_pickle(path) for path in selected):
        raise SourcePolicyError(
            f"{source} has no model weights matching {list(chosen_patterns)} "
            f"(files: {paths[:10]}{' ...' if len(paths) > 10 else ''})"
        )
    return selected
