"""Content keys: a short hash of exactly what determines a result.

The same inputs always give the same key, so an artifact is computed once and
child objects get deterministic names; any change to the inputs gives a new key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_LENGTH = 20

#: What the compressor's outputs mean: part of every variant key. It changes only when a
#: release changes what a recipe produces (an algorithm, a default, the saved format),
#: never with the package version alone, so an upgrade that changes nothing about
#: outputs recomputes nothing and restarts no Deployment. 0.1.0 is the first one.
OUTPUT_VERSION = "0.1.0"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_key(*parts: Any) -> str:
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()
    return digest[:KEY_LENGTH]


def source_key(source: dict[str, Any]) -> str:
    """Key of a source as written in the spec (before its revision is resolved).

    Only what identifies the model counts: a new token Secret is not a new model.
    """
    identity = dict(source)
    if "huggingface" in identity:
        identity["huggingface"] = {
            k: v for k, v in identity["huggingface"].items() if k != "tokenSecretRef"
        }
    return content_key("source", identity)


def base_key(source_id: str, revision: str) -> str:
    """Key of a base model: one per (source id, resolved revision)."""
    return content_key("base", source_id, revision)


def variant_key(
    base: str, variant_recipe: dict[str, Any], evaluation: dict[str, Any], compressor_version: str
) -> str:
    """Key of a compressed variant. The variant's name is not part of it: renaming a
    variant reuses its artifact."""
    recipe = {k: v for k, v in variant_recipe.items() if k != "name"}
    return content_key("variant", base, recipe, evaluation, compressor_version)
