"""The helpers of the ablations that judge the chain's remaining levers: a probe that
cannot see a gain would rule a lever out for nothing."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probes = _load("healed_probes")
ffn_refit = _load("ffn_refit")


def test_a_soup_is_the_mean_of_its_models_in_their_dtype() -> None:
    first = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "b": torch.tensor([0.0])}
    second = {"w": torch.tensor([3.0, 6.0], dtype=torch.bfloat16), "b": torch.tensor([1.0])}
    soup = probes.average([first, second])
    assert soup["w"].dtype == torch.bfloat16
    assert soup["w"].tolist() == [2.0, 4.0]
    assert soup["b"].tolist() == [0.5]


def test_models_of_different_cuts_are_not_averaged() -> None:
    with pytest.raises(ValueError, match="not one cut"):
        probes.average([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])


def test_band_increases_are_each_bands_perplexity_ratio() -> None:
    base = torch.zeros(2, 511)
    variant = torch.zeros(2, 511)
    variant[:, 384:] = math.log(1.5)  # only the last band loses
    increases = probes.band_increases(base, variant)
    assert increases[:-1] == pytest.approx([0.0] * (len(probes.BANDS) - 1))
    assert increases[-1] == pytest.approx(0.5)


class _Mlp(torch.nn.Module):
    def __init__(self, down: torch.nn.Linear) -> None:
        super().__init__()
        self.down_proj = down


def test_the_intercept_rebuilds_the_mean_output_of_removed_channels() -> None:
    """Channels 2 and 3 are constant (their whole contribution is a mean) and the kept
    ones have zero mean, so only a bias can rebuild what the removed ones added."""
    generator = torch.Generator().manual_seed(0)
    kept_activations = torch.randn(4096, 2, generator=generator)
    kept_activations -= kept_activations.mean(0)
    activations = torch.cat([kept_activations, torch.full((4096, 2), 0.7)], 1)
    original = torch.randn(3, 4, generator=generator)
    ones = torch.ones(len(activations), 1)
    augmented = torch.cat([activations, ones], 1).double()
    gram = augmented.T @ augmented
    channels = torch.tensor([0, 1])
    target = activations @ original.T

    mlp = _Mlp(torch.nn.Linear(2, 3, bias=False))
    ffn_refit.with_intercept(mlp, original, gram, channels)
    with torch.no_grad():
        rebuilt = mlp.down_proj(kept_activations)
    assert torch.allclose(rebuilt, target, atol=0.05)

    without = kept_activations @ original[:, channels].T  # any refit of the kept alone
    assert (without - target).abs().max() > 0.5
