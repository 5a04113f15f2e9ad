"""Fairness of the evaluation's random tie-breaks: keep-k% "vs label" and "vs prediction" read
maps of the class they score, the images explained again for it scored on their own; with draws
seeded per image they score exactly as in an evaluation whose ``--target`` explains that class
for every image, so the two targets' evaluations agree image by image."""

from __future__ import annotations

import torch
from torch import nn

from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method

OPTIONS = dict(ks=(30, 50, 70), stability_images=2, stability_fractions=(0.1,), batch_size=8,
               tie_draws=4, seed=5)  # fmt: skip


def split(n, seed, with_region):
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[:with_region, 3:10, 4:12] = True
    return EvalData(
        images=torch.rand(n, 3, 16, 16, generator=generator),
        labels=torch.randint(0, 3, (n,), generator=generator),
        masks=masks,
        has_region=masks.flatten(1).any(dim=1),
        classes=["a", "b", "c"],
        name="synthetic",
    )


def pixel_reader():
    """A convolution, a ReLU (Grad-CAM's maps: zero plateaus, tied) and a linear head with
    large weights on every pixel: which tied pixels are kept moves the logits."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16 * 16, 3))  # fmt: skip
    with torch.no_grad():
        model[3].weight.mul_(40)
    return model.eval()


def keep_scores(target):
    model = pixel_reader()
    test, val = split(24, 0, 4), split(4, 1, 2)
    with torch.no_grad():
        predictions = model(test.images).argmax(1)
    assert bool((predictions != test.labels).any()) and bool((predictions == test.labels).any())
    targets = test.labels if target == "label" else predictions
    options = EvaluateOptions(methods=("gradcam",), target=target, **OPTIONS)
    out, _ = evaluate_method(
        "gradcam", model, test, val, targets, targets[:4], options, torch.device("cpu"),
        predictions=predictions,
    )  # fmt: skip
    return {
        name: values
        for name, values in out["per_sample"].items()
        if name.startswith("faithfulness/keep_top_k/")
    }


def test_keep_top_k_scores_alike_under_either_target():
    by_prediction = keep_scores("prediction")
    by_label = keep_scores("label")
    assert by_prediction.keys() == by_label.keys() and by_label
    for name, values in by_label.items():
        assert by_prediction[name] == values, name
    # the draws matter here: some image scores between 0 and 1 (its draws disagree)
    assert any(0 < v < 1 for values in by_label.values() for v in values if v is not None)
