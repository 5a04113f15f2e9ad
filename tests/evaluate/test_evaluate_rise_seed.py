"""RISE's masks follow the evaluation's ``--seed`` when ``--method-options`` gives RISE no
``seed`` (so ``--seed 0``, the default, keeps RISE's default masks); a given seed wins."""

from __future__ import annotations

import torch
from torch import nn

from torchlap.evaluate.common import method_options
from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method
from torchlap.explainers import explain

RISE = {"n_masks": 24, "grid_size": 3, "mask_batch_size": 64}


def test_the_seed_option_is_filled_from_the_evaluation_seed():
    assert method_options("rise", EvaluateOptions(seed=3), {})["seed"] == 3
    assert method_options("rise", EvaluateOptions(), {})["seed"] == 0  # today's masks
    given = EvaluateOptions(seed=3, method_options={"rise": {"seed": 8}})
    assert method_options("rise", given, {})["seed"] == 8
    assert "seed" not in method_options("gradcam", EvaluateOptions(seed=3), {})  # no draws


def rise_maps(seed, rise_options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 9 * 9, 3)).eval()  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    masks = torch.zeros(4, 9, 9, dtype=torch.bool)
    masks[:, 2:6, 3:7] = True
    data = EvalData(
        images=torch.rand(4, 3, 9, 9, generator=generator),
        labels=torch.tensor([0, 1, 2, 0]),
        masks=masks,
        has_region=torch.ones(4, dtype=torch.bool),
        classes=["a", "b", "c"],
        name="synthetic",
    )
    options = EvaluateOptions(
        methods=("rise",), seed=seed, method_options={"rise": rise_options}, ks=(50,),
        stability_images=1, stability_fractions=(0.5,), tie_draws=1, batch_size=4,
    )  # fmt: skip
    _, maps = evaluate_method(
        "rise", model, data, data, data.labels, data.labels, options, torch.device("cpu")
    )
    reference = {
        s: explain(model, data.images, "rise", data.labels, **RISE, seed=s) for s in (0, 5)
    }
    return maps, reference


def test_an_evaluations_rise_maps_follow_its_seed_unless_rise_is_given_one():
    maps, reference = rise_maps(5, RISE)
    assert torch.equal(maps, reference[5]) and not torch.equal(maps, reference[0])
    maps, reference = rise_maps(5, {**RISE, "seed": 0})  # the user's seed wins
    assert torch.equal(maps, reference[0])
    maps, reference = rise_maps(0, RISE)  # --seed 0 keeps the default masks
    assert torch.equal(maps, reference[0])
