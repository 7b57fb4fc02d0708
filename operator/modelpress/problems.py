"""Validation errors in words: one problem per field, named by its path.

Every place that turns a pydantic `ValidationError` into a message (`validate`, the
operator's InvalidSpec, the configuration, sources, sizing, manifests, the
compress command) goes through here, so the same mistake is named the same way
everywhere: `spec.variants[0].quantize.scheme: ...`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

_PATTERN_WORDS: dict[str, str] = {}


def described(pattern: str, words: str) -> str:
    """`pattern`, remembered with the words that say what it accepts, so no message
    ever shows a regular expression."""
    _PATTERN_WORDS[pattern] = words
    return pattern


def pattern_words(pattern: str) -> str:
    return _PATTERN_WORDS.get(pattern, "in the expected form (see `kubectl explain`)")


#: Field names that suggest a secret written inline.
SECRET_LIKE = frozenset({"token", "password", "secret", "accesskey", "secretkey", "credentials"})


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    judge: str = "model"
    """"schema" (the API server would reject) or "model" (the operator would)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def dotted(parts: Sequence[Any]) -> str:
    """`spec.variants[0].quantize` from ("spec", "variants", 0, "quantize")."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _is_tag(part: Any) -> bool:
    """Parts of a pydantic location that name a validator or union member, not a field."""
    return isinstance(part, str) and (
        "[" in part or part.startswith("function-") or part == "constrained-str"
    )


_TYPE_WORDS = {
    "dict_type": "an object (a mapping of fields)",
    "model_type": "an object (a mapping of fields)",
    "model_attributes_type": "an object (a mapping of fields)",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _kind(value: Any) -> str:
    """How YAML shows a value's type to a person."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{str(value)[:40]!r}"


def unknown_field_message(field: str, noun: str = "field") -> str:
    if field.lower() in SECRET_LIKE:
        return (
            f"unknown {noun} {field!r}: secrets must not be written inline; "
            "store them in a Secret and reference it (tokenSecretRef / secretRef)"
        )
    return f"unknown {noun} {field!r}: remove it or check its spelling"


def problems(
    error: ValidationError, prefix: Sequence[Any] = (), noun: str = "field"
) -> list[Problem]:
    """One problem per failing field; `prefix` is where the validated object sits
    (e.g. ("spec",)), `noun` what an unknown key is called ("field", "setting")."""
    found = []
    for item in error.errors():
        location = [*prefix, *(p for p in item["loc"] if not _is_tag(p))]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] in _TYPE_WORDS:
            message = f"must be {_TYPE_WORDS[item['type']]}, not {_kind(item.get('input'))}"
        elif item["type"] == "missing":
            message = "is required: add it"
        elif item["type"] == "string_pattern_mismatch":
            message = f"{item['input']!r} is not {pattern_words(item['ctx']['pattern'])}"
        elif item["type"] == "extra_forbidden":
            message = unknown_field_message(str(location[-1]) if location else "?", noun)
        found.append(Problem(dotted(location), message))
    return found


def describe(
    error: ValidationError,
    prefix: Sequence[Any] = (),
    *,
    limit: int | None = None,
    noun: str = "field",
) -> str:
    """The problems as one line, the first `limit` of them and how many more."""
    listed = problems(error, prefix, noun)
    shown = listed if limit is None else listed[:limit]
    text = "; ".join(str(p) for p in shown)
    if len(listed) > len(shown):
        text += f" (and {len(listed) - len(shown)} more)"
    return text
