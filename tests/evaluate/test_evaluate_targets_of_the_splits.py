"""Which class the evaluation explains on each split (README: ``--target prediction``, the
default, explains the predicted class, ``--target label`` the label), and which predictions the
LAP predictors' faithfulness compares with (paper 000, Table I: agreement with the model's
prediction, not with the label)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import torchlap.evaluate.core as core
from torchlap.evaluate.core import EvalData, EvaluateOptions


class _ByFirstPixel(nn.Module):
    """Predicts class 1 where the image's first pixel exceeds 0.5, else class 0."""

    def forward(self, x: Tensor) -> Tensor:
        first = x[:, 0, 0, 0]
        return torch.stack([0.5 - first, first - 0.5], dim=1)


def _split(first_pixels: list[float], labels: list[int]) -> EvalData:
    images = torch.full((len(labels), 3, 4, 4), 0.25)
    images[:, 0, 0, 0] = torch.tensor(first_pixels)
    masks = torch.zeros(len(labels), 4, 4, dtype=torch.bool)
    return EvalData(
        images=images,
        labels=torch.tensor(labels),
        masks=masks,
        has_region=masks.flatten(1).any(1),
        classes=["a", "b"],
        name="synthetic",
    )


# predictions: test [1, 0, 1, 0], val [0, 1, 1]; the labels differ from them on purpose
TEST = _split([0.9, 0.1, 0.8, 0.2], [0, 0, 1, 1])
VAL = _split([0.1, 0.9, 0.7], [1, 0, 1])


def _prepared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str) -> Any:
    """``core._prepare`` on a fake run holding :class:`_ByFirstPixel` and the splits above."""
    run = SimpleNamespace(model=_ByFirstPixel(), config={}, concept_sets=None, run_dir=tmp_path)
    monkeypatch.setattr(core, "read_run_facts", lambda _path: run)
    monkeypatch.setattr(core, "load_run", lambda _facts: run)
    opened = SimpleNamespace(data="synthetic", notes={}, test="test", val="val")
    monkeypatch.setattr(core, "open_run_splits", lambda *_a: opened)
    monkeypatch.setattr(core, "_check_applicable", lambda *_a: None)
    monkeypatch.setattr(core, "_build_explainers", lambda *_a: None)
    monkeypatch.setattr(core, "model_stamp", lambda _run: {})
    splits = {"test": TEST, "val": VAL}
    monkeypatch.setattr(core, "decode_shared", lambda _r, split, *_a: splits[split])
    options = EvaluateOptions(methods=("gradcam",), target=target, batch_size=2)
    request = core._Request(None, None, None, True)
    return core._prepare(tmp_path, request, tmp_path / "out", options, False)


@pytest.mark.parametrize(
    "target, test_expected, val_expected",
    [("prediction", [1, 0, 1, 0], [0, 1, 1]), ("label", [0, 0, 1, 1], [1, 0, 1])],
)
def test_both_splits_explain_the_class_the_target_option_names(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    target: str,
    test_expected: list[int],
    val_expected: list[int],
) -> None:
    """The validation maps (the threshold fit) explain the same kind of class as the test maps."""
    job = _prepared(monkeypatch, tmp_path, target)
    assert job.test_targets.tolist() == test_expected
    assert job.val_targets.tolist() == val_expected
    assert job.test_predictions.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("target", ["prediction", "label"])
def test_lap_predictors_compare_with_the_models_predictions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str
) -> None:
    """The LAP predictors' faithfulness reads the model's test predictions, whatever --target."""
    job = _prepared(monkeypatch, tmp_path, target)
    seen: dict[str, Tensor] = {}

    def record(_model: nn.Module, _test: EvalData, _val: EvalData, predictions: Tensor, *_a):
        seen["predictions"] = predictions
        return {}

    monkeypatch.setattr(core, "lap_predictor_results", record)
    core._results_head(job, job.test_logits)
    assert seen["predictions"].tolist() == [1, 0, 1, 0]
