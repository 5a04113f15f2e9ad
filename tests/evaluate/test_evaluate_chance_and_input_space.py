"""results.json's chance facts (region share over the images EBPG scores, label counts) and
paper 004's energy maps in the model's input space for every method."""

from __future__ import annotations

import pytest
import torch
from synthetic_eval import split
from torch import nn

from torchlap.evaluate.core import EvaluateOptions, _chance_facts, evaluate_method
from torchlap.evaluate.method import BINARIZE_NORMALIZATION, BINARIZE_THRESHOLD
from torchlap.explainers import explain
from torchlap.metrics import drop_inc_win, drop_increase, ebpg, pointing_game, stability
from torchlap.models.wrapping import NormalizedClassifier
from torchlap.report.table_data import at_chance


def test_region_chance_averages_the_images_ebpg_scores():
    masks = torch.zeros(8, 10, 10, dtype=torch.bool)
    masks[:4, :5, :] = True  # four images, half of each covered; four empty negatives
    facts = _chance_facts(torch.tensor([0, 0, 0, 0, 0, 1, 1, 2]), masks, 3)
    assert facts["n_with_region"] == 4
    assert facts["region_fraction"] == pytest.approx(0.5)  # not 0.25 over all eight
    assert facts["label_counts"] == [5, 2, 1]
    assert facts["n_classes"] == 3
    constant = torch.ones(8, 10, 10)  # a map that knows nothing: EBPG = the chance level
    score = ebpg(constant, masks)
    assert score.value == pytest.approx(facts["region_fraction"])
    assert score.n == facts["n_with_region"]
    assert at_chance(score.value, facts["region_fraction"], score.n)
    assert pointing_game(constant, masks).n == facts["n_with_region"]
    empty = _chance_facts(torch.tensor([0, 1]), torch.zeros(2, 4, 4, dtype=torch.bool), 2)
    assert empty["region_fraction"] is None and empty["n_with_region"] == 0


def channel_net():
    conv, linear = nn.Conv2d(3, 3, 1), nn.Linear(3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.fill_(0.1)
        linear.weight.copy_(torch.eye(3))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()


def test_drop_inc_win_of_a_normalized_model_multiplies_its_normalised_input():
    net = channel_net()
    model = NormalizedClassifier(net, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3]).eval()
    test, val = split(6, 0), split(4, 1)
    options = EvaluateOptions(
        methods=("gradcam",), target="label", ks=(50,), stability_images=6,
        stability_fractions=(0.3,), batch_size=8, ties="index",
    )  # fmt: skip
    out, _ = evaluate_method(
        "gradcam", model, test, val, test.labels, val.labels, options, torch.device("cpu")
    )
    maps = explain(model, test.images, "gradcam", test.labels)
    got = out["faithfulness"]["drop_inc_win"]
    expected = drop_inc_win(net, test.images, maps, test.labels, to_input=model.normalize)
    for name, value in expected.items():
        assert got[name]["value"] == pytest.approx(value.value, nan_ok=True), name
    pixel = drop_inc_win(model, test.images, maps, test.labels)  # [0, 1] image ⊙ map
    assert got["energy/drop_pct"]["value"] != pytest.approx(pixel["energy/drop_pct"].value)
    # Drop%/Increase% (paper 003) stay in pixel space: removed pixels black
    sise = drop_increase(model, test.images, maps, test.labels, target="label", ties="index")
    assert out["faithfulness"]["drop"]["value"] == pytest.approx(sise["drop_pct"].value)
    # stability too: noise on the [0, 1] images, energy maps in the model's input space
    stable = stability(
        net, lambda x, y: explain(model, x, "gradcam", y), test.images, test.labels,
        fractions=(0.3,), maps=maps, seed=options.seed, batch_size=8,
        binarize_threshold=BINARIZE_THRESHOLD, binarize_normalization=BINARIZE_NORMALIZATION,
        to_input=model.normalize,
    )  # fmt: skip
    for key in ("change_drop", "change_inc"):
        want = stable[f"noise_0.3/{key}_pct"].value
        assert out["stability"]["0.3"][key]["value"] == pytest.approx(want, nan_ok=True), key
