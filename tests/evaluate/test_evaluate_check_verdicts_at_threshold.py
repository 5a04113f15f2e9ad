"""The verdicts of the randomization tests at their threshold: ``passed`` is
``spearman_abs < threshold`` (strict), for the model-parameter randomization test (cascading
and independent) and for the data randomization test (Adebayo et al. 2018)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import torchlap.evaluate.checks as checks
from torchlap.evaluate.sanity import sanity_check


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)
    ).eval()


def _first_weight_map(model: nn.Module, images: Tensor, _targets: Tensor) -> Tensor:
    """A map that depends on the model's first weights (so randomization changes it)."""
    weight = next(model.parameters()).detach()
    return torch.einsum("nchw,c->nhw", images, weight[0, :, 1, 1]) + images[:, 0]


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_parameter_randomization_fails_at_exactly_the_threshold(mode: str) -> None:
    """A summary equal to the threshold fails; one just below it passes."""
    model, images = _tiny_model(), torch.rand(3, 3, 6, 6)
    targets = torch.tensor([0, 1, 0])
    first = sanity_check(model, images, targets, _first_weight_map, modes=(mode,), threshold=0.5)
    value = first["summary"]["spearman_abs"]
    assert value is not None and 0.0 <= value <= 1.0
    at = sanity_check(model, images, targets, _first_weight_map, modes=(mode,), threshold=value)
    assert at["summary"]["spearman_abs"] == value
    assert at["passed"] is False
    above = math.nextafter(value, 2.0)
    just = sanity_check(model, images, targets, _first_weight_map, modes=(mode,), threshold=above)
    assert just["passed"] is True


def test_data_randomization_fails_at_exactly_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data randomization verdict: mean spearman_abs equal to the threshold fails."""
    generator = torch.Generator().manual_seed(3)
    real_maps, shuffled_maps = torch.rand(2, 4, 5, 5, generator=generator)
    real, shuffled = nn.Identity(), nn.Identity()

    def fake_explain_all(model: nn.Module, *_a: object, **_k: object) -> Tensor:
        return real_maps if model is real else shuffled_maps

    monkeypatch.setattr(checks, "explain_all", fake_explain_all)
    images, labels = torch.rand(4, 3, 5, 5), torch.zeros(4, dtype=torch.long)

    def verdict(threshold: float) -> dict:
        return checks.data_randomization(
            real, shuffled, images, labels, ["gradcam"], lambda _m: {}, 4,
            torch.device("cpu"), threshold,
        )["methods"]["gradcam"]  # fmt: skip

    value = verdict(0.5)["spearman_abs"]["mean"]
    assert value is not None and 0.0 < value < 1.0
    assert verdict(value)["passed"] is False
    assert verdict(math.nextafter(value, 2.0))["passed"] is True
