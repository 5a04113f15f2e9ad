"""Chance levels of accuracy-type scores from results["data"]["label_counts"]."""

from __future__ import annotations

import pytest

from torchlap.report.table_data import _label_chance, at_chance, model_chance


def run(n_classes, counts=None):
    data = {"n_classes": n_classes}
    if counts is not None:
        data["label_counts"] = counts
    metric = {"value": 0.8, "higher_is_better": True, "n": 100, "n_excluded": 0}
    return {"data": data, "model": {"top1_accuracy": metric, "top2_accuracy": metric}}


def test_top1_accuracy_chance_is_the_majority_share():
    counted = run(3, [80, 10, 10])  # a model always predicting the majority class: 0.8
    assert model_chance(counted, "top1_accuracy") == pytest.approx(0.8)
    assert at_chance(0.8, model_chance(counted, "top1_accuracy"), 100)  # not above chance
    assert _label_chance(counted) == pytest.approx(0.8)  # LAP predictivity
    assert model_chance(counted, "top2_accuracy") == pytest.approx(0.9)  # two largest classes
    assert model_chance(counted, "balanced_accuracy") == pytest.approx(1 / 3)


def test_results_without_label_counts_keep_the_old_rule():
    old = run(3)
    assert model_chance(old, "top1_accuracy") == pytest.approx(1 / 3)
    assert model_chance(old, "top2_accuracy") == pytest.approx(2 / 3)
    broken = run(3, [True, 1, 2])  # not counts: ignored
    assert model_chance(broken, "top1_accuracy") == pytest.approx(1 / 3)
