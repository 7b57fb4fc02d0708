"""Reduce a published CustomResourceDefinition to what validation needs: the
openAPIV3Schema of one served version, without descriptions (most of the bytes,
none of the rules).

    python tests/crds/reduce.py CRD.yaml VERSION > tests/crds/NAME.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: without_descriptions(value)
            for key, value in node.items()
            # a property may be *named* description: only drop the annotation
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def reduce(crd: dict[str, Any], version: str) -> dict[str, Any]:
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return {
        "group": crd["spec"]["group"],
        "kind": crd["spec"]["names"]["kind"],
        "version": version,
        "openAPIV3Schema": without_descriptions(served["schema"]["openAPIV3Schema"]),
    }


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as source:
        document = yaml.safe_load(source)
    json.dump(reduce(document, sys.argv[2]), sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")
