"""Check a manifest the way the API server and the operator will, offline.

Two independent judges: the generated CRD schema (OpenAPI validation, list-map
keys and CEL rules, as the API server applies them) and the pydantic models (as
the operator reads them). `modelpress validate` reports both, so a manifest that
passes here is accepted by `kubectl apply` and understood by the operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from pydantic import ValidationError

from modelpress.api import resource
from modelpress.api.crd import openapi_schema
from modelpress.problems import Problem, dotted, problems


def model_problems(manifest: dict[str, Any]) -> list[Problem]:
    """What the operator's pydantic models reject, one problem per field."""
    try:
        resource.CompressedModel.from_manifest(manifest)
    except ValidationError as error:
        return problems(error)
    return []


def schema_problems(manifest: dict[str, Any]) -> list[Problem]:
    """What the API server would reject given the generated CRD."""
    import jsonschema

    manifest = with_defaults(manifest, _schema())
    problems = [
        Problem(dotted(list(e.absolute_path)), e.message, "schema")
        for e in jsonschema.Draft4Validator(_schema()).iter_errors(manifest)
    ]
    problems += _unknown_fields(manifest, _schema(), ())
    problems += _list_map_problems(manifest, _schema(), ())
    problems += _cel_problems(manifest, _schema(), ())
    return problems


def status_problems(status: dict[str, Any]) -> list[Problem]:
    """What the API server would reject (schema) or silently prune (unknown fields) in a
    write to the status subresource: the operator must write neither."""
    import jsonschema

    schema = _schema()["properties"]["status"]
    problems = [
        Problem(dotted(["status", *e.absolute_path]), e.message, "schema")
        for e in jsonschema.Draft4Validator(schema).iter_errors(status)
    ]
    problems += _unknown_fields(status, schema, ("status",))
    problems += _list_map_problems(status, schema, ("status",))
    return problems


def with_defaults(instance: Any, schema: dict[str, Any]) -> Any:
    """A copy with the schema's defaults filled in, as the API server stores it
    (and as its CEL rules see it)."""
    if isinstance(instance, dict) and "properties" in schema:
        filled = dict(instance)
        for key, sub in schema["properties"].items():
            if key not in filled and "default" in sub:
                filled[key] = sub["default"]
            if key in filled:
                filled[key] = with_defaults(filled[key], sub)
        return filled
    if isinstance(instance, list) and "items" in schema:
        return [with_defaults(item, schema["items"]) for item in instance]
    return instance


@cache
def _schema() -> dict[str, Any]:
    return openapi_schema()


def _children(
    instance: Any, schema: dict[str, Any], path: tuple[Any, ...]
) -> Iterator[tuple[Any, dict[str, Any], tuple[Any, ...]]]:
    if isinstance(instance, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key in instance:
                yield instance[key], sub, (*path, key)
    if isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            yield item, schema["items"], (*path, index)


def _unknown_fields(instance: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> list[Problem]:
    """`kubectl apply` (strict field validation) rejects fields the schema does not know."""
    found = []
    if isinstance(instance, dict) and "properties" in schema and path[:1] != ("metadata",):
        for key in instance:
            if key not in schema["properties"]:
                found.append(Problem(dotted((*path, key)), f'unknown field "{key}"', "schema"))
    for child, sub, sub_path in _children(instance, schema, path):
        found += _unknown_fields(child, sub, sub_path)
    return found


def _list_map_problems(
    instance: Any, schema: dict[str, Any], path: tuple[Any, ...]
) -> list[Problem]:
    found = []
    if isinstance(instance, list) and schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[tuple[Any, ...]] = set()
        for index, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            value = tuple(item.get(k) for k in keys)
            if value in seen:
                found.append(
                    Problem(
                        dotted((*path, index)),
                        f"Duplicate value: {dict(zip(keys, value, strict=True))}",
                        "schema",
                    )
                )
            seen.add(value)
    for child, sub, sub_path in _children(instance, schema, path):
        found += _list_map_problems(child, sub, sub_path)
    return found


def _cel_problems(instance: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> list[Problem]:
    found = []
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            ok = _evaluate(rule["rule"], instance)
        except Exception:
            continue
        if not ok:
            field = (
                path + tuple(rule.get("fieldPath", "").strip(".").split("."))
                if rule.get("fieldPath")
                else path
            )
            found.append(Problem(dotted(field), rule["message"], "schema"))
    for child, sub, sub_path in _children(instance, schema, path):
        found += _cel_problems(child, sub, sub_path)
    return found


@cache
def _program(rule: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _evaluate(rule: str, instance: Any) -> bool:
    import celpy

    result = _program(rule).evaluate({"self": celpy.json_to_cel(instance)})
    if isinstance(result, Exception):
        raise result
    return bool(result)


def check(manifest: dict[str, Any]) -> list[Problem]:
    """Every problem either judge finds; the model's wording first, then what only
    the schema noticed."""
    from_model = model_problems(manifest)
    from_schema = schema_problems(manifest)
    seen_paths = {p.path for p in from_model}
    return from_model + [p for p in from_schema if p.path not in seen_paths]
