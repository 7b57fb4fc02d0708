"""Reading manifests as kubectl does: YAML documents, `kind: List` unpacked, bounded.

kubectl reads YAML with go-yaml, which differs from PyYAML's YAML 1.1 in ways that
reach users: `5e-5` is a number (PyYAML: a string) and `2026-01-01` stays a string
(PyYAML: a date, which no JSON check can take). The loader here reads like
kubectl. Every input is bounded before anything expands it: its size (the API
server's 3 MiB request limit), its nesting, and how many values its aliases
expand to (a few hundred bytes of aliases can otherwise mean billions).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 200_000
SUFFIXES = (".yaml", ".yml", ".json")


class DocumentError(ValueError):
    """Input that cannot be read as manifests; the message names where and why."""


@dataclass(frozen=True)
class Document:
    origin: str
    """The file (and document number) it came from, for messages."""
    body: dict[str, Any]


class _KubectlLoader(yaml.SafeLoader):
    """SafeLoader with go-yaml's scalars: exponent floats, timestamps left as text."""


_KubectlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_KubectlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _bounded(node: yaml.Node, origin: str) -> None:
    """Refuse a document nested too deep or expanding to too many values."""
    sizes: dict[int, int] = {}

    def size(current: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise DocumentError(f"{origin}: nested deeper than {MAX_DEPTH} levels")
        known = sizes.get(id(current))
        if known is not None:
            return known  # an alias: counted again below, but walked once
        total = 1
        if isinstance(current, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in current.value)
        elif isinstance(current, yaml.MappingNode):
            total += sum(
                size(key, depth + 1) + size(value, depth + 1) for key, value in current.value
            )
        if total > MAX_VALUES:
            raise DocumentError(
                f"{origin}: expands to more than {MAX_VALUES} values (through YAML aliases?); "
                "a CompressedModel needs far fewer"
            )
        sizes[id(current)] = total
        return total

    size(node, 0)


def parse_documents(text: str, origin: str) -> list[Document]:
    """The manifests in `text`: every YAML document, the items of a `kind: List`."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise DocumentError(f"{origin} is larger than the API server's 3 MiB request limit")
    loader = _KubectlLoader(text)
    found = []
    try:
        number = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            number += 1
            where = f"{origin} (document {number})" if number > 1 else origin
            _bounded(node, where)
            body = loader.construct_document(node)
            found += _manifests(body, where)
    except yaml.YAMLError as error:
        raise DocumentError(f"{origin} is not valid YAML: {error}") from None
    except RecursionError:
        raise DocumentError(f"{origin}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    return found


def _manifests(body: Any, where: str) -> list[Document]:
    if body is None:
        return []
    if not isinstance(body, dict):
        raise DocumentError(f"{where}: a manifest must be a mapping, not {type(body).__name__}")
    if body.get("kind") == "List" and isinstance(body.get("items"), list):
        items = []
        for index, item in enumerate(body["items"]):
            items += _manifests(item, f"{where} items[{index}]")
        return items
    return [Document(where, body)]


def read_source(path: Path) -> list[Document]:
    """The manifests of one file, or of standard input for `-`."""
    if str(path) == "-":
        text = sys.stdin.read(MAX_BYTES + 1)
        return parse_documents(text, "<stdin>")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise DocumentError(f"cannot read {path}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not UTF-8 text") from None
    return parse_documents(text, str(path))


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; directories as their YAML and JSON files, recursively, sorted."""
    expanded = []
    for path in paths:
        if path.is_dir():
            expanded += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            expanded.append(path)
    return expanded


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The manifests of one file as mappings; a clear error when it cannot be read."""
    return [document.body for document in read_source(path)]
