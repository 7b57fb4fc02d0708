"""What the Kubernetes API server does with a CompressedModel before storing it.

One definition of the stored object, used by `modelpress validate`, by the
operator's tests (the emulated cluster admits every write through it) and by the
property tests: what the API server would store is what everyone judges.

In the API server's order (structural schemas, Kubernetes >= 1.25):
1. nulls are pruned from fields that are not nullable (Helm renders `key:` as null);
2. unknown fields are rejected (kubectl apply's strict field validation) and, when
   let through, pruned;
3. schema defaults are applied;
4. the object is validated: OpenAPI types and bounds, list-map keys, CEL rules, and
   metadata as the API server checks it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from modelpress.api.crd import openapi_schema
from modelpress.problems import Problem, dotted, pattern_words, unknown_field_message

PRESERVE = "x-kubernetes-preserve-unknown-fields"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ANNOTATIONS_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Admission:
    stored: dict[str, Any]
    """The object as the API server would store it."""
    problems: list[Problem]
    """Why the API server would refuse it; empty when it is accepted."""

    @property
    def accepted(self) -> bool:
        return not self.problems


@cache
def schema() -> dict[str, Any]:
    return openapi_schema()


def admit(
    manifest: dict[str, Any], *, strict: bool = True, root: dict[str, Any] | None = None
) -> Admission:
    """The object the API server would store for `manifest`, and why it would refuse it.

    `strict`: unknown fields are problems (kubectl apply's default); otherwise they are
    only pruned, as with `--validate=false`. `root`: another CRD's openAPIV3Schema
    (the tests admit the JobSets and LeaderWorkerSets the operator creates through
    their published schemas); by default the CompressedModel's.
    """
    root = root or schema()
    problems = metadata_problems(manifest.get("metadata"))
    without_nulls = _prune_nulls(manifest, root)
    if strict:
        problems += _unknown_fields(without_nulls, root, ())
    stored = with_defaults(_prune_unknown(without_nulls, root), root)
    shape = _openapi_problems(stored, root)
    problems += shape + _list_map_problems(stored, root, ())
    if not shape:  # rules are judged on objects of the right shape only
        problems += _cel_problems(stored, root, ())
    return Admission(stored, _one_per_problem(problems))


def status_problems(status: dict[str, Any]) -> list[Problem]:
    """What the API server would reject or silently prune in a write to the status
    subresource: the operator must write neither."""
    sub = schema()["properties"]["status"]
    problems = _unknown_fields(status, sub, ("status",))
    problems += _openapi_problems(status, sub, ("status",))
    problems += _list_map_problems(status, sub, ("status",))
    return problems


# --- metadata ----------------------------------------------------------------------------


def metadata_problems(metadata: Any) -> list[Problem]:
    """The checks the API server makes on every object's metadata."""
    if not isinstance(metadata, dict):
        return [Problem("metadata", "metadata must be a mapping with at least a name", "schema")]
    found = []
    name = metadata.get("name")
    if not name and not metadata.get("generateName"):
        found.append(Problem("metadata.name", "a name is required, e.g. name: smollm2", "schema"))
    elif name is not None and (
        not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name)
    ):
        found.append(
            Problem(
                "metadata.name",
                f"{name!r} is not a valid name: use lowercase letters, digits and '-' "
                "(e.g. smollm2-small)",
                "schema",
            )
        )
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL.match(namespace)
    ):
        found.append(
            Problem(
                "metadata.namespace",
                f"{namespace!r} is not a namespace name: lowercase letters, digits and '-', "
                "at most 63 characters",
                "schema",
            )
        )
    found += _label_problems(metadata.get("labels"))
    annotations = metadata.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            found.append(
                Problem(
                    "metadata.annotations",
                    "annotations map names to strings: quote numbers and booleans",
                    "schema",
                )
            )
        elif sum(len(k) + len(v) for k, v in annotations.items()) > ANNOTATIONS_LIMIT:
            found.append(
                Problem("metadata.annotations", "annotations may total at most 256 KiB", "schema")
            )
    return found


def _label_problems(labels: Any) -> list[Problem]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [
            Problem("metadata.labels", "labels must be a mapping of names to strings", "schema")
        ]
    found = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        good_key = (
            LABEL_NAME.match(name)
            and len(name) <= 63
            and (not prefix or (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)))
        )
        if not good_key:
            found.append(
                Problem(
                    f"metadata.labels.{key}",
                    "not a label name: an optional DNS prefix and '/', then at most 63 "
                    "letters, digits, '-', '_' or '.' (e.g. app.kubernetes.io/part-of)",
                    "schema",
                )
            )
        elif not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            found.append(
                Problem(
                    f"metadata.labels.{key}",
                    f"{value!r} is not a label value: a string of at most 63 letters, digits, "
                    "'-', '_' or '.' (quote numbers and booleans)",
                    "schema",
                )
            )
    return found


# --- pruning and defaulting ------------------------------------------------------------------


def _prune_nulls(instance: Any, node: dict[str, Any]) -> Any:
    """Nulls in fields that are not nullable are dropped before defaulting."""
    if isinstance(instance, dict) and "properties" in node:
        kept = {}
        for key, value in instance.items():
            sub = node["properties"].get(key)
            if value is None and sub is not None and not sub.get("nullable"):
                continue
            kept[key] = _prune_nulls(value, sub) if sub is not None else value
        return kept
    if isinstance(instance, list) and "items" in node:
        return [_prune_nulls(item, node["items"]) for item in instance]
    return instance


def _prune_unknown(instance: Any, node: dict[str, Any]) -> Any:
    if isinstance(instance, dict) and "properties" in node and not node.get(PRESERVE):
        return {
            key: _prune_unknown(value, node["properties"][key])
            for key, value in instance.items()
            if key in node["properties"]
        }
    if isinstance(instance, list) and "items" in node:
        return [_prune_unknown(item, node["items"]) for item in instance]
    return instance


def with_defaults(instance: Any, node: dict[str, Any]) -> Any:
    """A copy with the schema's defaults filled in, as the API server stores it
    (and as its CEL rules see it)."""
    if isinstance(instance, dict) and "properties" in node:
        filled = dict(instance)
        for key, sub in node["properties"].items():
            if key not in filled and "default" in sub:
                filled[key] = copy.deepcopy(sub["default"])
            if key in filled:
                filled[key] = with_defaults(filled[key], sub)
        return filled
    if isinstance(instance, list) and "items" in node:
        return [with_defaults(item, node["items"]) for item in instance]
    return instance


# --- validation --------------------------------------------------------------------------------


def _children(
    instance: Any, node: dict[str, Any], path: tuple[Any, ...]
) -> Iterator[tuple[Any, dict[str, Any], tuple[Any, ...]]]:
    if isinstance(instance, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            if key in instance:
                yield instance[key], sub, (*path, key)
    if isinstance(instance, list) and "items" in node:
        for index, item in enumerate(instance):
            yield item, node["items"], (*path, index)


def _unknown_fields(instance: Any, node: dict[str, Any], path: tuple[Any, ...]) -> list[Problem]:
    """`kubectl apply` (strict field validation) rejects fields the schema does not know."""
    found = []
    if isinstance(instance, dict) and "properties" in node and not node.get(PRESERVE):
        for key in instance:
            if key not in node["properties"]:
                known = ", ".join(sorted(node["properties"]))
                message = f"{unknown_field_message(str(key))} (known here: {known})"
                found.append(Problem(dotted((*path, str(key))), message, "schema"))
    for child, sub, sub_path in _children(instance, node, path):
        found += _unknown_fields(child, sub, sub_path)
    return found


def _openapi_problems(
    instance: Any, node: dict[str, Any], prefix: tuple[Any, ...] = ()
) -> list[Problem]:
    import jsonschema

    found = []
    for error in jsonschema.Draft4Validator(node).iter_errors(instance):
        where = [*prefix, *error.absolute_path]
        if error.validator == "required":  # named by the missing field, not its parent
            missing = re.match(r"'([^']+)' is a required property", str(error.message))
            if missing:
                found.append(Problem(dotted([*where, missing[1]]), "is required: add it", "schema"))
                continue
        found.append(Problem(dotted(where), _in_words(error), "schema"))
    return found


def _in_words(error: Any) -> str:
    """jsonschema's message, with patterns and enums said in words."""
    value = error.instance
    if error.validator == "pattern":
        return f"{value!r} is not {pattern_words(error.validator_value)}"
    if error.validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"{value!r} is not one of the allowed values: {choices}"
    if error.validator == "type":
        return f"{value!r} is not of type {error.validator_value}: write a {error.validator_value}"
    return str(error.message)


def _list_map_problems(instance: Any, node: dict[str, Any], path: tuple[Any, ...]) -> list[Problem]:
    found = []
    if isinstance(instance, list) and node.get("x-kubernetes-list-type") == "map":
        keys = node.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for index, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            value = tuple(item.get(k) for k in keys)
            identity = repr(value)  # keys of any type, lists included, compare by value
            if identity in seen:
                what = ", ".join(f"{k} {v!r}" for k, v in zip(keys, value, strict=True))
                found.append(
                    Problem(
                        dotted((*path, index)),
                        f"duplicate entry ({what}): each must be unique",
                        "schema",
                    )
                )
            seen.add(identity)
    for child, sub, sub_path in _children(instance, node, path):
        found += _list_map_problems(child, sub, sub_path)
    return found


def _cel_problems(instance: Any, node: dict[str, Any], path: tuple[Any, ...]) -> list[Problem]:
    found = []
    rules = node.get("x-kubernetes-validations", [])
    if rules:
        import celpy

        value = celpy.json_to_cel(instance)  # once per node, not once per rule
        for rule in rules:
            try:
                ok = _evaluate(rule["rule"], value)
            except Exception:
                continue  # an error in the emulation is not the user's mistake
            if not ok:
                field = (
                    path + tuple(rule.get("fieldPath", "").strip(".").split("."))
                    if rule.get("fieldPath")
                    else path
                )
                found.append(Problem(dotted(field), rule["message"], "schema"))
    for child, sub, sub_path in _children(instance, node, path):
        found += _cel_problems(child, sub, sub_path)
    return found


@cache
def _program(rule: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _evaluate(rule: str, value: Any) -> bool:
    result = _program(rule).evaluate({"self": value})
    if isinstance(result, Exception):
        raise result
    return bool(result)


def _one_per_problem(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            unique.append(problem)
    return unique
