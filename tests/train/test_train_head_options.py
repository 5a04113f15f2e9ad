"""``torchlap train --head-hidden`` and ``--common-head-sets``: the LAP layers' ``head_hidden``
and the InjectionLoss's ``common_head_sets`` reach the model and the loss from the command
line, are recorded in config.json (a per-head run reloads as it trained), and are refused,
before any run folder, where they cannot apply."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from train_configs import tiny_config
from typer.testing import CliRunner

import torchlap.train.run as train_run
from torchlap.cli import app
from torchlap.layers import lap_modules
from torchlap.models.recipes import build_classifier, build_for_training
from torchlap.runs import load_run
from torchlap.train import TrainConfig

_TINY = ["--arch", "smallcnn", "--n-images", "40", "--image-size", "32", "--epochs", "1"]
_TINY += ["--batch-size", "16", "--no-progress", "--accelerator", "cpu", "--devices", "1"]


class _KeepModule(L.Callback):
    """The trained module (its model is what fit saves as model.safetensors)."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.module = pl_module


def _train(monkeypatch: pytest.MonkeyPatch, out: Path, *flags: str) -> tuple[Any, Any]:
    """``torchlap train`` on 40 images of ``concepts`` (four classes: four concept heads) with
    ``flags``; returns the CLI result and the trained module."""
    keep, real_fit = _KeepModule(), train_run.fit
    monkeypatch.setattr(train_run, "fit", lambda config: real_fit(config, [keep]))
    args = ["train", "--data", "concepts", "--out", str(out), *_TINY, *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result, keep.module


def test_a_per_head_run_records_its_options_and_reloads_as_it_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    _, module = _train(monkeypatch, out, "--head-hidden", "per_head", "--common-head-sets", "own")
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["head_hidden"] == "per_head"
    assert config["train"]["common_head_sets"] == "own"
    assert config["lap_options"]["head_hidden"] == "per_head"
    assert config["losses"]["common_head_sets"] == "own"
    assert [call["head_hidden"] for call in config["model"]["lapify"]] == ["per_head"]
    trained = module.model.eval()
    reloaded = load_run(out).model.eval()
    for layer in lap_modules(reloaded).values():  # each of the 4 heads its own 8 channels
        first, last = layer.scorer.heads[0], layer.scorer.heads[-1]
        assert (first.out_channels, last.groups) == (4 * 8, 4)
    expected = trained.state_dict()
    state = reloaded.state_dict()
    assert list(state) == list(expected)
    for name, value in state.items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), trained(images), rtol=0, atol=0)


def test_the_flags_default_to_the_papers_choices_and_reach_model_and_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured: list[TrainConfig] = []

    def fake_fit(config: TrainConfig) -> Path:
        captured.append(config)
        raise ValueError("stop here")

    monkeypatch.setattr(train_run, "fit", fake_fit)
    base = ["train", "--data", "concepts", "--out", "x", "--arch", "smallcnn"]
    CliRunner().invoke(app, base)
    CliRunner().invoke(app, [*base, "--head-hidden", "per_head", "--common-head-sets", "own"])
    default, chosen = captured
    assert (default.head_hidden, default.common_head_sets) == ("shared", "discriminative")
    assert (chosen.head_hidden, chosen.common_head_sets) == ("per_head", "own")
    built = build_for_training(chosen, num_classes=4, in_channels=3)
    assert built.injection is not None and built.injection.common_head_sets == "own"
    assert built.lap_options == {"head_hidden": "per_head"}
    assert {layer.scorer.head_hidden for layer in lap_modules(built.net).values()} == {"per_head"}
    shared = build_for_training(default, num_classes=4, in_channels=3)
    assert shared.injection is not None and shared.injection.common_head_sets == "discriminative"
    assert {layer.scorer.head_hidden for layer in lap_modules(shared.net).values()} == {"shared"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lap", "none", "--head-hidden", "per_head"], r"--lap none builds a model without LAP"),
        (["--model", "bla", "--head-hidden", "per_head"], r"--model bla builds a model without"),
        (["--model", "bcos", "--head-hidden", "per_head"], r"--model bcos builds a model without"),
        (["--hidden-channels", "0", "--head-hidden", "per_head"], r"the heads have none"),
        (["--lap", "resnet50-imagenet", "--arch", "resnet50", "--head-hidden", "per_head"],
         r"the heads have none .*the --lap resnet50-imagenet preset"),
        (["--head-hidden", "each"], r"head_hidden \(--head-hidden\) must be one of 'shared', "),
        (["--data", "lesions", "--head-hidden", "per_head"], r"the LAP layers have one head"),
        (["--lap", "none", "--common-head-sets", "own"], r"--lap none builds a model without LAP"),
        (["--model", "antehoc", "--common-head-sets", "own"], r"--model antehoc builds a model"),
        (["--supervision", "none", "--common-head-sets", "own"],
         r"--common-head-sets \(common_head_sets='own'\) needs --supervision weak or expert"),
        (["--no-discriminative", "--common-head-sets", "own"],
         r"with --no-discriminative every head's sets are its own"),
        (["--common-head-sets", "self"], r"common_head_sets \(--common-head-sets\) must be one of"),
    ],
)  # fmt: skip
def test_the_flags_are_refused_where_they_cannot_apply(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "concepts", "--out", str(out), *_TINY, *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not out.exists()


def test_the_options_the_supervision_uses_are_accepted() -> None:
    for supervision in ("weak", "expert"):
        tiny_config("x", supervision=supervision, common_head_sets="own").validate()
    tiny_config("x", head_hidden="per_head", hidden_channels=4, n_concepts=2).validate()


def test_a_config_json_from_before_the_options_reads_as_the_defaults() -> None:
    data = tiny_config("x").to_dict()
    del data["head_hidden"], data["common_head_sets"]
    config = TrainConfig.from_dict(data)
    assert (config.head_hidden, config.common_head_sets) == ("shared", "discriminative")
    assert config.identity() == tiny_config("x").identity()


def test_a_torchvision_architecture_takes_per_head_too() -> None:
    # build_model (every architecture but smallcnn) passes head_hidden on to lapify
    net, record = build_classifier(
        "resnet18", 4, 3, "auto", 4, lap_options={"head_hidden": "per_head", "hidden_channels": 2}
    )
    layers = lap_modules(net).values()
    assert layers and {layer.scorer.head_hidden for layer in layers} == {"per_head"}
    assert {call["head_hidden"] for call in record["lapify"]} == {"per_head"}
    assert all(layer.scorer.heads[-1].groups == 4 for layer in layers)
