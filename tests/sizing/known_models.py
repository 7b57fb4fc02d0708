"""Real public model configs (tests/sizing/configs) and their published parameter counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelpress.sizing import ModelShape

CONFIGS = Path(__file__).parent / "configs"

# Parameter counts the model publishers state (sum of numel over the checkpoint).
PUBLISHED_PARAMETERS = {
    "Llama-3.1-8B-Instruct": 8_030_261_248,
    "Llama-3.1-70B": 70_553_706_496,
    "Qwen2.5-7B": 7_615_616_512,
    "Qwen2.5-72B": 72_706_203_648,
    "Mistral-7B-v0.3": 7_248_023_552,
    "Mixtral-8x7B": 46_702_792_704,
    "SmolLM2-135M": 134_515_008,
}


def load(name: str) -> dict[str, Any]:
    """The config.json of a known model."""
    return json.loads((CONFIGS / f"{name}.json").read_text())


def shape_of(name: str, **changes: object) -> ModelShape:
    """A known model's shape, with config fields overridden by `changes`."""
    return ModelShape.from_config({**load(name), **changes})
