"""The maps an evaluation scores: a map holding NaN/inf is made flat (all zero), counted and
noted, never left with its +inf pixel (the strongest evidence) turned into a silent 0."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from torchlap.evaluate.common import EvalData, explain_all, flat_map_counts
from torchlap.evaluate.method import evaluate_method
from torchlap.evaluate.options import EvaluateOptions
from torchlap.explainers import Explainer, registered


class Broken(Explainer):
    """The channel mean, with a NaN in image 0's map and a +inf pixel in image 1's."""

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        maps = images.mean(dim=1).clone()
        maps[0, 0, 0] = float("nan")
        if maps.shape[0] > 1:
            maps[1, -1, -1] = float("inf")
        return maps


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()  # fmt: skip


def data(n: int) -> EvalData:
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    return EvalData(
        images=torch.rand(n, 3, 8, 8, generator=generator),
        labels=torch.arange(n) % 3,
        masks=masks,
        has_region=torch.ones(n, dtype=torch.bool),
        classes=["a", "b", "c"],
        name="synthetic",
    )


def test_non_finite_maps_become_flat_and_are_counted(caplog):
    images = data(4).images
    with registered("broken", Broken), caplog.at_level(logging.WARNING):
        counts: list[int] = []
        maps = explain_all(model(), images, torch.zeros(4, dtype=torch.long), "broken", {}, 4,
                           torch.device("cpu"), nonfinite=counts)  # fmt: skip
    assert counts == [2]
    assert torch.equal(maps[:2], torch.zeros(2, 8, 8))  # the whole map, not the bad pixel
    torch.testing.assert_close(maps[2:], images[2:].mean(dim=1))
    assert flat_map_counts(maps)["n_flat"] == 2
    assert "broken: 2 of 4 maps hold NaN or infinite values" in caplog.text


def test_evaluate_method_records_the_non_finite_maps():
    test, val = data(6), data(3)
    targets = torch.zeros(6, dtype=torch.long)
    options = EvaluateOptions(methods=("gradcam",), stability_images=2,
                              stability_fractions=(0.1,), ks=(50,), tie_draws=1)  # fmt: skip
    with registered("broken", Broken):
        out, maps = evaluate_method("broken", model(), test, val, targets, targets[:3], options,
                                    torch.device("cpu"))  # fmt: skip
    assert out["maps"]["n_nonfinite"] == 2 and out["maps"]["n_flat"] == 2
    notes = "\n".join(out["notes"])
    assert "broken: 2 of 6 evaluated maps held NaN or infinite values" in notes
    # the validation maps, the label-class maps and the noisy images' maps had some too
    assert "broken: 6 of its other maps" in notes
    assert bool(torch.isfinite(maps).all())
