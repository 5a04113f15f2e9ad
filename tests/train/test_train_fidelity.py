"""What the paper's experiments vary, exposed in TrainConfig and `torchlap train` (issue 12,
point 6), and the paper's model selection: "We selected the model related to the epoch with the
best performance on validation data as the final model" (paper 000, Appendix A)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from torchlap.layers import lap_modules
from torchlap.losses import InjectionLoss
from torchlap.models import PRESETS
from torchlap.models.recipes import build_classifier, paper_loss_weights
from torchlap.train import TrainConfig, fit
from torchlap.train.cli import register_train
from torchlap.train.module import ClassifierModule


def _config(out: Path | str = "run", **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"data": "lesions", "out": str(out)}
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- config


def test_config_json_of_an_earlier_run_still_loads_with_the_new_defaults() -> None:
    new_fields = {
        "hidden_channels",
        "aggregation",
        "alpha",
        "ratios",
        "concordance_weight",
        "keep_epoch",
        "select_metric",
    }
    old = {k: v for k, v in _config().to_dict().items() if k not in new_fields}
    loaded = TrainConfig.from_dict(old)
    loaded.validate()
    assert loaded.keep_epoch == "best" and loaded.ratios is None and loaded.aggregation is None
    assert loaded.identity() == _config().identity()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hidden_channels": -1}, "hidden_channels"),
        ({"aggregation": "median"}, "aggregation"),
        ({"alpha": -0.1}, "alpha"),
        ({"ratios": {"a": [0.1, 0.5, 0.1]}}, "head index"),
        ({"ratios": {"0": [0.1, 0.5]}}, r"\[MinAR, MaxAR, IAR\]"),
        ({"ratios": {"0": [0.6, 0.5, 0.1]}}, "must not exceed"),
        ({"ratios": {"0": [0.1, 1.5, None]}}, r"\(0, 1\]"),
        ({"concordance_weight": -0.1}, "concordance_weight"),
        ({"keep_epoch": "first"}, "keep_epoch"),
        ({"select_metric": "f1"}, "select_metric"),
    ],
)
def test_bad_new_fields_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        _config(**kw).validate()


def test_per_head_ratios_and_the_papers_celeba_common_head() -> None:
    # paper 000, Appendix B: MinAR 0.02, MaxAR 0.2, IAR 0.01 for the two class heads and
    # "MaxAR = 0.1, without MinAR and IAR for the common concept head"
    config = _config(min_ar=0.02, max_ar=0.2, iar=0.01, ratios={"2": [None, 0.1, None]})
    assert config.head_ratios(3) == ([0.02, 0.02, None], [0.2, 0.2, 0.1], [0.01, 0.01, None])
    every = _config(ratios={"*": [0.05, None, 0.05], "1": [0.1, 0.2, 0.3]})
    assert every.head_ratios(2) == ([0.05, 0.1], [None, 0.2], [0.05, 0.3])
    with pytest.raises(ValueError, match="names head 3"):
        _config(ratios={"3": [0.1, 0.5, 0.1]}).head_ratios(2)
    # a named head's row replaces the whole [MinAR, MaxAR, IAR] of --min-ar/--max-ar/--iar
    assert _config(min_ar=0.4, ratios={"0": [None, 0.3, None]}).head_ratios(1) == (
        [None],
        [0.3],
        [None],
    )
    # the ratios reach the loss, one value per head
    low, high, inactive = config.head_ratios(3)
    loss = InjectionLoss(_sets_with_common(), low, high, inactive, use_discriminative=False)
    assert loss.max_ar == [0.2, 0.2, 0.1]


def _sets_with_common():
    from torchlap.losses import ConceptSets

    return ConceptSets.default(2, 3)


def test_a_preset_applies_the_papers_options_unless_the_user_overrides_them() -> None:
    imagenet = _config(lap="resnet50-imagenet", arch="resnet50")
    options, preset = imagenet.lap_options()
    assert options == {"hidden_channels": 0, "aggregation": "conv"}
    # Appendix C: "MinAR and IAR of 0.01, without MaxAR", "with a factor of 0.125"
    assert imagenet.head_ratios(4) == ([0.01] * 4, [None] * 4, [0.01] * 4)
    assert preset["concept_weight"] == 0.125
    mine = _config(lap="resnet50-imagenet", hidden_channels=16, aggregation="max", min_ar=0.2)
    assert mine.lap_options()[0] == {"hidden_channels": 16, "aggregation": "max"}
    assert mine.head_ratios(2) == ([0.2, 0.2], [0.5, 0.5], [0.1, 0.1])  # the user's ratios
    assert _config(lap="auto").lap_options() == ({}, {})  # no preset: the layer's defaults
    assert _config(lap="resnet18", alpha=2.0).lap_options()[0] == {
        "hidden_channels": 8,
        "aggregation": "sum",
        "alpha": 2.0,
    }


def test_preset_options_reach_the_lap_layers() -> None:
    config = _config(lap="resnet18", arch="resnet18")
    net, record = build_classifier(
        "resnet18", 2, 1, "resnet18", 3, lap_options=config.lap_options()[0]
    )
    layers = lap_modules(net)
    assert list(layers) == list(PRESETS["resnet18"].lap_names)
    for layer in layers.values():
        assert layer.scorer.hidden_channels == 8
        assert layer.scorer.aggregation_name == "sum"
    assert record["lapify"][0]["aggregation"] == "sum"
    override = _config(lap="resnet18", hidden_channels=0, aggregation="mean").lap_options()[0]
    net, _ = build_classifier("resnet18", 2, 1, "resnet18", 3, lap_options=override)
    for layer in lap_modules(net).values():
        assert layer.scorer.hidden_channels == 0 and layer.scorer.aggregation_name == "mean"


def test_paper_loss_weights_per_layer_and_pair() -> None:
    # Appendix A: CE 1, concept loss 0.25 per LAP, concordance 0.25 per pair (weak only)
    weak = paper_loss_weights(4, "weak")
    assert weak == {
        "discrimination": 1.0,
        "discriminative": 1.0,
        "expert": 1.0,
        "concordance": 0.75,
    }
    assert paper_loss_weights(4, "expert")["concordance"] == 0.0
    assert paper_loss_weights(4, "expert", concordance_weight=0.25)["concordance"] == 0.75
    assert paper_loss_weights(1, "weak", concept_weight=0.125)["discrimination"] == 0.125


def test_cli_exposes_the_papers_options(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[TrainConfig] = []

    def fake_fit(config: TrainConfig) -> Path:
        captured.append(config)
        raise ValueError("stop here")

    monkeypatch.setattr("torchlap.train.run.fit", fake_fit)
    app = typer.Typer()
    register_train(app)
    app.command("noop")(lambda: None)  # two commands: "train" stays a sub-command
    args = ["train", "--data", "lesions", "--out", "x", "--aggregation", "sum"]
    args += ["--hidden-channels", "4", "--alpha", "2", "--concordance-weight", "0.5"]
    args += ["--ratios", '{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}']
    args += ["--keep-epoch", "last", "--select-metric", "loss"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and len(captured) == 1, (result.output, result.exception)
    config = captured[0]
    assert (config.aggregation, config.hidden_channels, config.alpha) == ("sum", 4, 2.0)
    assert config.ratios == {"0": [0.02, 0.2, 0.01], "2": [None, 0.1, None]}
    assert config.concordance_weight == 0.5
    assert (config.keep_epoch, config.select_metric) == ("last", "loss")
    bad = CliRunner().invoke(app, ["train", "--data", "lesions", "--out", "x", "--ratios", "{0:"])
    message = bad.output + str(bad.exception or "")
    assert bad.exit_code != 0 and "--ratios" in message and not captured[1:], message


# ----------------------------------------------------------------------------- selection


def _record(epoch: int, balanced: float, cross_entropy: float) -> dict[str, Any]:
    val = {"balanced_accuracy": balanced, "accuracy": balanced, "loss_cross_entropy": cross_entropy}
    return {"phase": 1, "epoch": epoch, "global_epoch": epoch, "val": val}


def _reference_best(history: list[dict[str, Any]], metric: str) -> int:
    """The paper's rule written out: the best validation value; ties to the lower
    cross-entropy, then to the earlier epoch."""
    best = None
    for record in history:
        value = record["val"][metric]
        tie = record["val"]["loss_cross_entropy"]
        if best is None:
            best = (record["global_epoch"], value, tie)
            continue
        if value > best[1] or (value == best[1] and tie < best[2]):
            best = (record["global_epoch"], value, tie)
    return best[0]


def test_best_epoch_rule_matches_a_written_out_reference() -> None:
    model = torch.nn.Linear(2, 2)
    module = ClassifierModule(model, 2, None, [], 0, keep_epoch="best")
    history = [_record(1, 0.6, 0.7), _record(2, 0.8, 0.5), _record(3, 0.8, 0.4)]
    history += [_record(4, 0.8, 0.45), _record(5, 0.7, 0.1)]
    for record in history:
        module.history.append(record)
        if module._improves(record):
            module.best_epoch = record["global_epoch"]
    assert module.best_epoch == _reference_best(history, "balanced_accuracy") == 3
    chosen = module.selected_epoch()
    assert chosen["global_epoch"] == 3 and chosen["value"] == 0.8 and chosen["of_epochs"] == 5
    with pytest.raises(ValueError, match="keep_epoch"):
        ClassifierModule(model, 2, None, [], 0, keep_epoch="first")
    by_loss = ClassifierModule(
        model, 2, None, [], 0, keep_epoch="best", select_metric="cross_entropy"
    )
    for record in history:
        by_loss.history.append(record)
        if by_loss._improves(record):
            by_loss.best_epoch = record["global_epoch"]
    lowest = min(history, key=lambda r: (r["val"]["loss_cross_entropy"], r["global_epoch"]))
    assert by_loss.best_epoch == lowest["global_epoch"] == 5
    assert by_loss.selected_epoch()["value"] == 0.1


class _EveryEpoch(L.Callback):
    """The weights after each training epoch (global epoch -> state dict)."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        self.states[len(self.states) + 1] = state


def test_fit_keeps_the_best_validation_epoch(tmp_path: Path) -> None:
    epochs = _EveryEpoch()
    config = _config(
        tmp_path / "best",
        arch="smallcnn",
        lap="auto",
        epochs=4,
        lr=3e-2,
        image_size=32,
        batch_size=16,
        n_images=80,
        progress_bar=False,
        accelerator="cpu",
        devices="1",
    )
    out = fit(config, callbacks=[epochs])
    metrics = json.loads((out / "metrics.json").read_text())
    chosen = metrics["selected_epoch"]
    expected = _reference_best(metrics["epochs"], "balanced_accuracy")
    assert chosen["global_epoch"] == expected and chosen["keep_epoch"] == "best"
    assert chosen["value"] == metrics["epochs"][expected - 1]["val"]["balanced_accuracy"]
    saved = load_file(str(out / "model.safetensors"))
    for key, value in epochs.states[expected].items():
        assert torch.equal(saved[key], value), key
    run_config = json.loads((out / "config.json").read_text())
    assert run_config["selection"] == {"keep_epoch": "best", "select_metric": "balanced_accuracy"}
    assert run_config["losses"]["head_ratios"] == [[0.1, 0.5, 0.1]]
    assert math.isfinite(metrics["test"]["balanced_accuracy"])
