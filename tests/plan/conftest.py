"""Builders shared by the planner's unit tests: specs, store artifacts and observed
children as plain values. Nothing here does I/O."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelpress.api.artifact import VariantMetadata
from modelpress.api.keys import base_key
from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig
from modelpress.plan.observed import Artifact, SourceRecord

SMOLLM2 = json.loads(
    (Path(__file__).resolve().parents[1] / "sizing" / "configs" / "SmolLM2-135M.json").read_text()
)
STORE = "s3://artifacts/store/"


def spec_dict(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"huggingface": {"repo": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
        "storage": {"uri": STORE, "secretRef": {"name": "artifact-store"}},
        "calibration": {"dataset": {"uri": "s3://data/calib.txt"}, "samples": 8},
        "variants": [
            {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
            {"name": "w4", "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64}},
        ],
        "evaluation": {"dataset": {"uri": "s3://data/eval.txt"}, "maxPerplexityIncrease": 0.1},
        "serving": {"maxModelLen": 2048, "maxNumSeqs": 4},
    }
    body.update(changes)
    return body


def make_spec(**changes: Any) -> CompressedModelSpec:
    return CompressedModelSpec.model_validate(spec_dict(**changes))


BASE_KEY = base_key("HuggingFaceTB/SmolLM2-135M-Instruct", "0123abcd")
SOURCE = SourceRecord(
    id="HuggingFaceTB/SmolLM2-135M-Instruct",
    revision="0123abcd",
    uri=f"{STORE}models/{BASE_KEY}/",
    key=BASE_KEY,
)
BASE = Artifact(uri=SOURCE.uri, total_bytes=270_000_000, weights_bytes=269_000_000, config=SMOLLM2)


def variant_artifact(
    uri: str, total: int, increase: float = 0.02, config: dict[str, Any] | None = None
) -> Artifact:
    return Artifact(
        uri=uri,
        total_bytes=total,
        weights_bytes=total - 1000,
        metadata=VariantMetadata.read(
            {
                "parameters": 134_515_008,
                "bitsPerWeight": 4.5,
                "metrics": {
                    "perplexity": 10 * (1 + increase),
                    "basePerplexity": 10.0,
                    "perplexityIncrease": increase,
                    "agreement": 0.95,
                },
            }
        ),
        config=SMOLLM2 if config is None else config,
    )


@pytest.fixture
def config() -> OperatorConfig:
    return OperatorConfig()
