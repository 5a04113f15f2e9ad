"""The evaluation protocol of issue 12: LAP's ranking metrics read the unclipped-sum LAP All and
its value metrics Algorithm 1's, LAP maps follow the run's concept sets, the other methods'
global threshold is fitted on all validation images (paper 000), ties are drawn at random, and
results.json records these choices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchlap.metrics
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method, protocol
from torchlap.explainers import LapExplainer
from torchlap.layers import LapBase
from torchlap.losses import ConceptSets
from torchlap.metrics import iou_threshold, iou_topk, keep_top_k


def lap_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(8, 2, n_concepts=4, aggregation="mean"),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(8, 2, n_concepts=4, aggregation="mean"),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(8, 1, n_concepts=4, aggregation="mean"),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    for module in model.modules():
        if isinstance(module, LapBase):
            for conv in module.scorer.heads:
                if isinstance(conv, nn.Conv2d):
                    nn.init.normal_(conv.weight, std=1.0)
                    nn.init.normal_(conv.bias, std=1.0)
    return model.eval()


def split(n, seed, with_region):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 16, 16, generator=generator)
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    for i in range(with_region):
        masks[i, 2 + i : 9 + i, 3:11] = True
    return EvalData(
        images=images,
        labels=torch.randint(0, 3, (n,), generator=generator),
        masks=masks,
        has_region=masks.flatten(1).any(dim=1),
        classes=["a", "b", "c"],
        name="synthetic",
    )


OPTIONS = dict(ks=(50,), stability_images=2, stability_fractions=(0.1,), batch_size=8, tie_draws=2)


def test_lap_ranking_and_value_metrics_read_their_lap_all_with_the_class_heads():
    model = lap_model()
    sets = ConceptSets.default(3, 4)
    test, val = split(6, 0, 4), split(4, 1, 2)
    with torch.no_grad():
        targets = model(test.images).argmax(1)
    options = EvaluateOptions(methods=("lap",), **OPTIONS)
    out, maps = evaluate_method(
        "lap", model, test, val, targets, targets[:4], options, torch.device("cpu"), sets
    )
    algorithm1 = LapExplainer(model, concept_sets=sets)(test.images, targets)
    summed = LapExplainer(model, concept_sets=sets, variant="unclipped_sum")(test.images, targets)
    torch.testing.assert_close(maps, algorithm1)
    assert not torch.allclose(algorithm1, LapExplainer(model)(test.images, targets))
    location = out["localization"]
    assert location["iou_topk"]["value"] == pytest.approx(iou_topk(summed, test.masks).value)
    expected = iou_threshold(algorithm1, test.masks, 0.5).value
    assert location["iou_threshold"]["value"] == pytest.approx(expected)
    keep = keep_top_k(model, test.images, summed, test.labels, ks=(50,), tie_draws=2)
    got = out["faithfulness"]["keep_top_k"]["50"]["top1_vs_prediction"]["value"]
    assert got == pytest.approx(keep["keep_50/top1_vs_prediction"].value)


@pytest.mark.parametrize("fit, expected", [("all", 5), ("with_region", 2)])
def test_global_threshold_is_fitted_on_the_chosen_validation_images(monkeypatch, fit, expected):
    seen = []

    def record(maps, masks, **kwargs):
        seen.append((maps.shape[0], int(masks.flatten(1).any(dim=1).sum())))
        return 0.5

    monkeypatch.setattr(torchlap.metrics, "fit_global_threshold", record)
    model = lap_model()
    test, val = split(4, 0, 2), split(5, 1, 2)
    targets = torch.zeros(5, dtype=torch.long)
    options = EvaluateOptions(methods=("gradcam",), threshold_fit=fit, **OPTIONS)
    out, _ = evaluate_method(
        "gradcam", model, test, val, targets[:4], targets, options, torch.device("cpu")
    )
    assert seen == [(expected, 2)]
    assert out["localization"]["threshold"] == 0.5


def test_protocol_records_the_choices_and_options_are_checked():
    sets = ConceptSets.default(3, 4)
    recorded = protocol(EvaluateOptions(), sets)
    assert recorded["threshold_fit_set"] == "all validation images"
    assert recorded["tie_rule"]["ties"] == "random" and recorded["tie_rule"]["tie_draws"] == 4
    assert recorded["lap_all"]["ranking_metrics"] == "unclipped_sum"
    assert recorded["lap_all"]["value_metrics"] == "algorithm1"
    assert recorded["lap_concept_sets"] == {"0": [0, 3], "1": [1, 3], "2": [2, 3]}
    old = protocol(
        EvaluateOptions(threshold_fit="with_region", ties="index", lap_all_ranking="algorithm1")
    )
    assert old["tie_rule"]["tie_draws"] == 1 and old["lap_concept_sets"] is None
    for field, value in (
        ("threshold_fit", "regions"),
        ("ties", "first"),
        ("lap_all_ranking", "sum"),
        ("tie_draws", 0),
    ):
        with pytest.raises(ValueError, match=field):
            EvaluateOptions(**{field: value}).validate()


def channel_model():
    """Logit c = mean of channel c: Grad-CAM of class c highlights the pixels bright in
    channel c, so keeping them keeps class c (a model whose keep-k% depends on the class)."""
    conv, linear = nn.Conv2d(3, 3, 1), nn.Linear(3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.zero_()
        linear.weight.copy_(torch.eye(3))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()


def test_keep_k_vs_label_reads_maps_of_the_label_class():
    # paper 000's supplement: keep-k% against the ground truth uses maps of the ground-truth
    # class; under target="prediction" the misclassified images are explained again
    model = channel_model()
    test, val = split(8, 0, 4), split(4, 1, 2)
    with torch.no_grad():
        predictions = model(test.images).argmax(1)
    wrong = predictions != test.labels
    assert 0 < int(wrong.sum()) < len(test)  # some images misclassified, some not
    kwargs = {**OPTIONS, "ks": (10, 50), "ties": "index"}
    device = torch.device("cpu")
    by_prediction, maps = evaluate_method(
        "gradcam", model, test, val, predictions, predictions[:4],
        EvaluateOptions(methods=("gradcam",), **kwargs), device,
    )  # fmt: skip
    by_label, _ = evaluate_method(
        "gradcam", model, test, val, test.labels, test.labels[:4],
        EvaluateOptions(methods=("gradcam",), target="label", **kwargs), device,
    )  # fmt: skip
    keep, reference = (r["faithfulness"]["keep_top_k"] for r in (by_prediction, by_label))
    for k in ("10", "50"):
        for key in ("top1_vs_label", "top3_vs_label"):
            assert keep[k][key] == reference[k][key], (k, key)
        # the prediction's maps stay the prediction's
        expected = keep_top_k(model, test.images, maps, test.labels, ks=(10, 50), ties="index")
        got = keep[k]["top1_vs_prediction"]["value"]
        assert got == pytest.approx(expected[f"keep_{k}/top1_vs_prediction"].value)
        # the earlier rule (predicted-class maps against the label) differs here
        assert expected[f"keep_{k}/top1_vs_label"].value < keep[k]["top1_vs_label"]["value"]
    assert by_prediction["faithfulness"]["keep_top_k_label_maps"] == {
        "n_explained_again": int(wrong.sum())
    }
    assert by_label["faithfulness"]["keep_top_k_label_maps"] == {"n_explained_again": 0}


def test_protocol_records_the_drop_inc_win_binarization():
    recorded = protocol(EvaluateOptions())
    assert recorded["metrics_revision"] >= 4  # results binarized by the maximum: recomputed
    assert recorded["drop_inc_win_binarization"]["threshold"] == 0.8
    assert recorded["drop_inc_win_binarization"]["normalization"] == "min_max"
    assert "min-max" in recorded["drop_inc_win_binarization"]["rule"]
    assert recorded["keep_top_k_vs_label_maps"].startswith("maps of the label class")
