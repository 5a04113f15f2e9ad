"""``torchlap train --model bla|bla-t|bla-ph|l2x-f|antehoc``: train, reload, explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import torchlap
from torchlap import load_run
from torchlap.data import collate_regions, load_dataset
from torchlap.models import bla_modules
from torchlap.models.antehoc import AnteHocModel, antehoc_pass_two_loss
from torchlap.models.objectives import AnteHocObjective
from torchlap.models.recipes import build_classifier, rebuild_model
from torchlap.train import PhaseConfig, TrainConfig, fit
from torchlap.train.module import ClassifierModule
from torchlap.train.wrapping import NormalizedClassifier, SmallCNN

PEERS = ["bla", "bla-t", "bla-ph", "l2x-f", "antehoc"]


def _config(out: Path, model: str, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "data": "lesions",
        "out": str(out),
        "arch": "smallcnn",
        "model": model,
        "lap": "none",
        "epochs": 1,
        "lr": 1e-2,
        "image_size": 32,
        "batch_size": 16,
        "n_images": 60,
        "seed": 0,
        "progress_bar": False,
        "accelerator": "cpu",
        "devices": "1",
    }
    base.update(kw)
    return TrainConfig(**base)


class _Keep(L.Callback):
    """The in-memory model and its weights before training."""

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.model = pl_module.model
        self.start = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


@pytest.fixture(scope="module")
def vanilla_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained vanilla run: the network BLA-PH explains (paper 002, section 3.2)."""
    return fit(_config(tmp_path_factory.mktemp("vanilla") / "vanilla", "lap", supervision="none"))


@pytest.fixture(scope="module", params=PEERS)
def peer_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    keep = _Keep()
    extra = {}
    if request.param == "bla-ph":  # BLA-PH needs the trained network it explains
        extra["pretrained"] = str(request.getfixturevalue("vanilla_run"))
    out = tmp_path_factory.mktemp("peers") / request.param
    out = fit(_config(out, request.param, **extra), [keep])
    return request.param, out, keep


def test_peer_run_reloads_and_explains(peer_run) -> None:
    model, out, keep = peer_run
    run = load_run(out)
    record = json.loads((out / "config.json").read_text())["model"]
    test = load_dataset("lesions", split="test", image_size=32, n_images=60, seed=0)
    images = collate_regions([test[i] for i in range(len(test))])["image"]
    keep.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(run.model(images), keep.model(images), rtol=0, atol=0)
    method = "antehoc" if model == "antehoc" else "bla"
    maps = torchlap.explain(run.model, images, method=method)
    assert maps.shape == (len(images), 32, 32) and torch.isfinite(maps).all()
    if model == "antehoc":
        assert isinstance(run.model.net, AnteHocModel)
        assert record["antehoc"]["eta"] == 3  # min(8, 3 convolutions of SmallCNN)
        epoch = json.loads((out / "metrics.json").read_text())["epochs"][0]["train"]
        assert math_finite(epoch["loss_interpret"]) and math_finite(epoch["loss_cross_entropy"])
    else:
        assert record["blaify"]["variant"] == model
        assert list(bla_modules(run.model)) == ["net.avgpool"]
        with pytest.raises(ValueError, match="AnteHocModel"):
            torchlap.explain(run.model, images, method="antehoc")
    end = {k: v.detach() for k, v in keep.model.state_dict().items()}
    changed = {k for k in end if not torch.equal(end[k], keep.start[k])}
    if model == "bla-ph":  # only the BLA scorer learnt; batch-norm statistics untouched too
        assert changed == {"net.avgpool.scorer.weight", "net.avgpool.scorer.bias"}
    else:
        fc = "net.backbone.fc.weight" if model == "antehoc" else "net.fc.weight"
        assert fc in changed


def math_finite(value: float) -> bool:
    return bool(torch.isfinite(torch.tensor(value)))


def test_antehoc_passes_reach_only_their_own_network() -> None:
    torch.manual_seed(0)
    net, _ = build_classifier("smallcnn", 2, 3, "none", 1, model="antehoc")
    model = NormalizedClassifier(net, [0.5] * 3, [0.25] * 3)
    with torch.no_grad():  # non-uniform weight maps, so pass two has a non-zero gradient
        net.weight_network.decoder[-1].weight.normal_(0, 0.5)
    cnn = list(net.backbone.parameters())
    weights = list(net.weight_network.parameters())
    images, labels = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 0, 1, 1, 0])

    pass_one = F.cross_entropy(model(images), labels)
    grads = torch.autograd.grad(pass_one, cnn + weights, allow_unused=True)
    assert all(g is None for g in grads[len(cnn) :])
    assert all(g is not None for g in grads[: len(cnn)])
    pass_two = antehoc_pass_two_loss(net, model.normalize(images))
    grads = torch.autograd.grad(pass_two, cnn + weights, allow_unused=True)
    assert all(g is None for g in grads[: len(cnn)])
    assert any(g is not None and g.abs().sum() > 0 for g in grads[len(cnn) :])

    # the training step's sum gives each network exactly its own pass's gradient
    module = ClassifierModule(model, 2, AnteHocObjective(), [PhaseConfig(1)], 0)
    model.zero_grad(set_to_none=True)
    total, terms, _ = module._loss_terms({"image": images, "label": labels})
    total.backward()
    expected_cnn = torch.autograd.grad(F.cross_entropy(model(images), labels), cnn)
    expected_weights = torch.autograd.grad(
        antehoc_pass_two_loss(net, model.normalize(images)), weights
    )
    for parameter, grad in zip(cnn + weights, expected_cnn + expected_weights, strict=True):
        torch.testing.assert_close(parameter.grad, grad)
    assert set(terms) == {"total", "cross_entropy", "interpret"}
    assert net.maps is not None  # (the expected pass two above left its maps)


def test_rebuild_model_of_every_peer_matches_the_built_one() -> None:
    for model in PEERS:
        torch.manual_seed(0)
        net, record = build_classifier("smallcnn", 2, 3, "none", 1, model=model, image_size=32)
        built = NormalizedClassifier(net, [0.5] * 3, [0.25] * 3)
        run_config = json.loads(json.dumps({"model": record, "mean": [0.5] * 3, "std": [0.25] * 3}))
        rebuilt = rebuild_model(run_config)
        rebuilt.load_state_dict(built.state_dict())
        assert list(rebuilt.state_dict()) == list(built.state_dict())
        images = torch.rand(2, 3, 32, 32)
        built.eval(), rebuilt.eval()
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(images), built(images))
    assert not isinstance(SmallCNN(2), AnteHocModel)


def test_bla_ph_starts_from_a_trained_vanilla_run_and_keeps_it_frozen(
    tmp_path: Path, vanilla_run: Path
) -> None:
    vanilla = vanilla_run
    keep = _Keep()
    posthoc = fit(_config(tmp_path / "bla-ph", "bla-ph", pretrained=str(vanilla)), [keep])
    base = load_run(vanilla).model.state_dict()
    assert keep.start.keys() - base.keys() == {
        "net.avgpool.scorer.weight",
        "net.avgpool.scorer.bias",
    }
    for key, value in base.items():  # the post-hoc run starts from, and keeps, the vanilla net
        torch.testing.assert_close(keep.start[key], value, rtol=0, atol=0)
        torch.testing.assert_close(load_run(posthoc).model.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="has no published weights"):
        build_classifier("smallcnn", 2, 3, "none", 1, pretrained="IMAGENET1K_V1")


def test_bad_model_values_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown model 'vit'.*lap, bla, bla-t, bla-ph"):
        _config(tmp_path / "a", "vit").validate()
    with pytest.raises(ValueError, match=r"without LAP layers.*--lap none"):
        _config(tmp_path / "a", "bla", lap="global").validate()
    with pytest.raises(ValueError, match="bla-ph trains only the BLA module"):
        phases = [PhaseConfig(1, 1e-3, "fc")]
        _config(tmp_path / "a", "bla-ph", pretrained="runs/v", phases=phases).validate()
    with pytest.raises(ValueError, match="unknown model"):
        build_classifier("smallcnn", 2, 3, "none", 1, model="nope")
    from typer.testing import CliRunner

    from torchlap.cli import app

    result = CliRunner().invoke(
        app, ["train", "--data", "lesions", "--out", str(tmp_path / "b"), "--model", "blah"]
    )
    assert result.exit_code == 2
    assert "unknown model 'blah'" in result.output
    assert not (tmp_path / "b").exists()


def test_bla_ph_without_the_network_it_explains_is_refused(tmp_path: Path) -> None:
    """Paper 002, 3.2: the post-hoc BLA explains a trained h = F o L held fixed; without
    --pretrained it used to train its scorer on a random, frozen network."""
    out = tmp_path / "bla-ph"
    with pytest.raises(ValueError, match=r"--model bla-ph .*pass --pretrained \(a torchlap run"):
        fit(_config(out, "bla-ph"))
    assert not out.exists()
    from typer.testing import CliRunner

    from torchlap.cli import app

    args = ["train", "--data", "lesions", "--out", str(out), "--model", "bla-ph", "--lap", "none"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "pass --pretrained" in result.output, result.output
    assert not out.exists()
    _config(out, "bla-ph", pretrained="IMAGENET1K_V1").validate()  # any trained network
