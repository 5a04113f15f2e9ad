"""The evaluation protocol of issue 12: LAP's ranking metrics read the unclipped-sum LAP All and
its value metrics Algorithm 1's, LAP maps follow the run's concept sets, the other methods'
global threshold is fitted on all validation images (paper 000), ties are drawn at random, and
results.json records these choices."""

from __future__ import annotations

import pytest
import torch
from synthetic_eval import channel_model
from torch import nn

import torchlap.evaluate.method as method_module
import torchlap.metrics
from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.evaluate.core import EvalData, EvaluateOptions, evaluate_method, protocol
from torchlap.explainers import LapExplainer, explain
from torchlap.layers import LapBase
from torchlap.losses import ConceptSets
from torchlap.metrics import drop_inc_win, drop_increase, iou_threshold, iou_topk, keep_top_k


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


def evaluate_both_targets(method, model, test, val, concept_sets=None, **kwargs):
    """``evaluate_method`` under target="prediction" and under target="label"."""
    with torch.no_grad():
        predictions, val_predictions = model(test.images).argmax(1), model(val.images).argmax(1)
    out = {}
    for target, targets, val_targets in (
        ("prediction", predictions, val_predictions),
        ("label", test.labels, val.labels),
    ):
        options = EvaluateOptions(methods=(method,), target=target, **kwargs)
        out[target], _ = evaluate_method(
            method, model, test, val, targets, val_targets, options, torch.device("cpu"),
            concept_sets,
        )  # fmt: skip
    return predictions, out


def assert_same_metrics(got, expected):
    """Two nested dicts of metric dicts, values equal up to float rounding."""
    assert got.keys() == expected.keys()
    for key, value in got.items():
        if isinstance(value, dict) and "value" not in value:
            assert_same_metrics(value, expected[key])
        else:
            assert value == pytest.approx(expected[key], nan_ok=True), key


def test_every_faithfulness_metric_reads_maps_of_the_class_it_scores():
    model = channel_model()
    test, val = split(8, 0, 4), split(4, 1, 2)
    kwargs = {**OPTIONS, "ks": (10, 50), "ties": "index", "stability_images": 8}
    predictions, out = evaluate_both_targets("gradcam", model, test, val, **kwargs)
    wrong = predictions != test.labels
    assert 0 < int(wrong.sum()) < len(test)
    by_prediction, by_label = out["prediction"]["faithfulness"], out["label"]["faithfulness"]
    # paper 004 scores the ground-truth class: Drop/Inc/Win and stability read maps of the
    # label class whatever --target (they read the predicted class's before)
    label_maps = explain(model, test.images, "gradcam", test.labels)
    expected = drop_inc_win(model, test.images, label_maps, test.labels)
    assert by_prediction["win"]["value"] == pytest.approx(expected["energy/win_pct"].value)
    assert_same_metrics(by_prediction["drop_inc_win"], by_label["drop_inc_win"])
    assert_same_metrics(out["prediction"]["stability"], out["label"]["stability"])
    assert by_prediction["drop_inc_win_label_maps"] == {"n_explained_again": int(wrong.sum())}
    # keep-k% "vs prediction" reads maps of the predicted class whatever --target
    assert_same_metrics(by_label["keep_top_k"], by_prediction["keep_top_k"])
    assert by_label["keep_top_k_prediction_maps"] == {"n_explained_again": int(wrong.sum())}
    assert by_prediction["keep_top_k_prediction_maps"] == {"n_explained_again": 0}
    # Drop%/Increase% (paper 003) score the class the maps explain (--target)
    prediction_maps = explain(model, test.images, "gradcam", predictions)
    for target, maps in (("prediction", prediction_maps), ("label", label_maps)):
        sise = drop_increase(model, test.images, maps, test.labels, target=target, ties="index")
        got = out[target]["faithfulness"]
        assert got["drop"]["value"] == pytest.approx(sise["drop_pct"].value), target
        assert got["increase"]["value"] == pytest.approx(sise["increase_pct"].value), target


def test_other_class_maps_are_explained_once_and_lap_value_metrics_read_algorithm1(monkeypatch):
    calls = []
    real = method_module.explain_all

    def counting(model, images, targets, method, options, *args, **kwargs):
        calls.append((len(images), targets.tolist(), options.get("variant", "algorithm1")))
        return real(model, images, targets, method, options, *args, **kwargs)

    monkeypatch.setattr(method_module, "explain_all", counting)
    model = channel_model()
    test, val = split(8, 0, 4), split(4, 1, 2)
    kwargs = {**OPTIONS, "stability_images": 3}
    predictions, _ = evaluate_both_targets("gradcam", model, test, val, **kwargs)
    wrong = torch.nonzero(predictions != test.labels).flatten()
    # per target: the maps, the validation maps, the other class's maps of the misclassified
    # images (once: keep-k% and Drop/Inc/Win share them), the noisy images for their labels
    other = (len(wrong), test.labels[wrong].tolist(), "algorithm1")
    noisy = (3, test.labels[:3].tolist(), "algorithm1")
    assert calls[:4] == [(8, predictions.tolist(), "algorithm1"), calls[1], other, noisy]
    other = (len(wrong), predictions[wrong].tolist(), "algorithm1")
    assert calls[4:] == [(8, test.labels.tolist(), "algorithm1"), calls[5], other, noisy]
    # LAP: its ranking metrics read the unclipped-sum LAP All, Drop/Inc/Win Algorithm 1's
    model, sets = lap_model(), ConceptSets.default(3, 4)
    predictions, out = evaluate_both_targets("lap", model, test, val, sets, **OPTIONS)
    wrong = predictions != test.labels
    assert 0 < int(wrong.sum()) < len(test)
    label_maps = LapExplainer(model, concept_sets=sets)(test.images, test.labels)
    expected = drop_inc_win(model, test.images, label_maps, test.labels)
    got = out["prediction"]["faithfulness"]["drop_inc_win"]
    for name, value in expected.items():
        assert got[name]["value"] == pytest.approx(value.value, nan_ok=True), name


def test_lap_is_binarized_at_its_threshold_option():
    model = lap_model()
    test, val = split(6, 0, 4), split(4, 1, 2)
    with torch.no_grad():
        targets = model(test.images).argmax(1)
    options = EvaluateOptions(methods=("lap",), method_options={"lap": {"threshold": 0.3}},
                              **OPTIONS)  # fmt: skip
    out, maps = evaluate_method(
        "lap", model, test, val, targets, targets[:4], options, torch.device("cpu")
    )
    assert out["localization"]["threshold"] == 0.3
    expected = iou_threshold(maps, test.masks, 0.3).value
    assert out["localization"]["iou_threshold"]["value"] == pytest.approx(expected)


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_the_threshold_classifier_is_an_option_of_both_commands(command, monkeypatch, tmp_path):
    """The README named --threshold-classifier, which neither command had (the choice was
    Python-only): it now reaches EvaluateOptions, and a wrong name is refused."""
    from typer.testing import CliRunner

    from torchlap.cli import app
    from torchlap.evaluate import EvaluateOptions

    seen: list[EvaluateOptions] = []

    def capture(self: EvaluateOptions) -> None:
        seen.append(self)
        raise KeyboardInterrupt  # stop before any run is read

    monkeypatch.setattr(EvaluateOptions, "validate", capture)
    runs = ["--run", str(tmp_path)] if command == "evaluate" else [str(tmp_path), str(tmp_path)]
    CliRunner().invoke(app, [command, *runs, "--threshold-classifier", "logistic"])
    assert seen and seen[-1].threshold_classifier == "logistic"
    monkeypatch.undo()
    result = CliRunner().invoke(app, [command, *runs, "--threshold-classifier", "svm"])
    assert result.exit_code == 2 and "threshold_classifier must be one of" in result.output


def test_baseline_help_names_drop_increase_too():
    """``--baseline`` fills the pixels Drop%/Increase% remove as well as keep-k%'s (the
    evaluation passes it to both, as the protocol records); its help named keep-k% alone."""
    import typing

    from torchlap.evaluate.cli import Baseline

    help_text = typing.get_args(Baseline)[1].help
    assert "keep-k%" in help_text and "Drop%/Increase%" in help_text
    assert "Drop%/Increase%" in protocol(EvaluateOptions(), None)["energy_map_space"]
