"""B-cos networks (``torchlap[bcos]``): build, train a step, reload, explain faithfully."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torchlap.models.bcos import bcos_available

if not bcos_available():  # pragma: no cover - `make test` installs the extra
    pytest.skip(
        "the bcos extra is not installed (pip install 'torchlap[bcos]')", allow_module_level=True
    )

from torchlap import load_run
from torchlap.cli import app
from torchlap.explainers import explain
from torchlap.models.bcos import (
    DEFAULT_TRAIN_NORM,
    BcosClassifier,
    bcos_architectures,
    build_bcos,
)
from torchlap.models.recipes import build_for_training, rebuild_model
from torchlap.train import TrainConfig, fit
from torchlap.train.shuffled import ShuffledLabels


def slow_contributions(model: BcosClassifier, image: torch.Tensor, target: int) -> torch.Tensor:
    """W(x)^T x of one image, pixel by pixel: with the dynamic scalings frozen at x (explanation
    mode) the network is the linear map e -> W(x)^T e of its encoded input e = [x, 1 - x], so
    W(x) is the gradient of the logit in e; the contribution of pixel p is sum_c W_c,p e_c,p."""
    switches = [m for m in model.modules() if hasattr(m, "set_explanation_mode")]
    encoded = model.encode(image[None])
    contributions = torch.zeros(encoded.shape[-2:], dtype=torch.float64)
    with torch.no_grad():
        for m in switches:
            m.set_explanation_mode(True)
        try:
            # frozen scalings: differentiate the detached network along each input direction
            e = encoded.clone().requires_grad_(True)
            with torch.enable_grad():
                logit = model.net(e)[0, target]
                (weights,) = torch.autograd.grad(logit, e)
        finally:
            for m in switches:
                m.set_explanation_mode(False)
    for y in range(encoded.shape[-2]):
        for x in range(encoded.shape[-1]):
            contributions[y, x] = sum(
                float(weights[0, c, y, x]) * float(encoded[0, c, y, x])
                for c in range(encoded.shape[1])
            )
    return contributions


def test_contribution_map_sums_to_the_logit_and_matches_a_slow_reference():
    torch.manual_seed(0)
    model = build_bcos("resnet18", 3, in_channels=3).eval()
    images = torch.rand(2, 3, 16, 16)
    maps = explain(model, images, "bcos", torch.tensor([1, 2]))
    assert maps.shape == (2, 16, 16)
    with torch.no_grad():
        logits = model(images)
    bias = model.net.logit_layer.logit_bias
    # completeness of the dynamic linear map: y(x) = W(x)^T x (+ the constant logit bias)
    torch.testing.assert_close(
        maps.sum(dim=(1, 2)), logits[[0, 1], [1, 2]] - bias, rtol=1e-4, atol=1e-5
    )
    reference = slow_contributions(model, images[1], 2)
    torch.testing.assert_close(maps[1].double(), reference, rtol=1e-4, atol=1e-6)
    # explanation mode is switched off again
    assert not any(getattr(m, "detach", False) for m in model.modules())


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown B-cos architecture"):
        build_bcos("resnet19", 3)
    assert "resnet18" in bcos_architectures()
    with pytest.raises(ValueError, match="B-cos model"):
        explain(
            torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.Flatten()),
            torch.rand(1, 3, 4, 4),
            "bcos",
        )
    with pytest.raises(ValueError, match="images"):
        build_bcos("resnet18", 3)(torch.rand(1, 1, 8, 8))


def test_bcos_run_trains_a_step_reloads_and_explains(tmp_path: Path):
    config = TrainConfig(
        data="digits", out=str(tmp_path / "bcos"), arch="resnet18", model="bcos", lap="auto",
        epochs=1, lr=1e-3, image_size=32, batch_size=16, n_images=40, seed=0,
        progress_bar=False, accelerator="cpu", devices="1",
    )  # fmt: skip
    torch.manual_seed(0)
    before = build_bcos("resnet18", 10, 1).state_dict()
    out = fit(config)
    run = load_run(out)
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["builder"] == "torchlap.models.bcos"
    assert saved["mean"] == [0.0] and saved["std"] == [1.0]
    assert saved["losses"]["task_loss"] == "binary_cross_entropy"
    # a new run without --bcos-norm gets the default norm, recorded and rebuilt
    assert saved["train"]["bcos_norm"] is None
    assert saved["model"]["norm"] == DEFAULT_TRAIN_NORM == "batch-uncentered"
    net = run.model.net
    assert isinstance(net, BcosClassifier)
    assert _norm_kinds(net) == {"BatchNormUncentered2d"}
    changed = any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert changed
    images = torch.rand(2, run.in_channels, 32, 32)
    maps = explain(run.model, images, "bcos")
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()


def test_shuffled_labels_permute_and_keep_metadata():
    from torchlap.data import load_dataset

    data = load_dataset("digits", split="train", image_size=32, n_images=30, seed=0)
    shuffled = ShuffledLabels(data, seed=3)
    assert shuffled.classes == data.classes and shuffled.n_channels == data.n_channels
    labels = [int(shuffled[i]["label"]) for i in range(len(shuffled))]
    original = [int(data[i]["label"]) for i in range(len(data))]
    assert sorted(labels) == sorted(original) and labels != original
    assert torch.equal(shuffled[0]["image"], data[0]["image"])
    assert labels == [int(shuffled.original_labels[j]) for j in shuffled.permutation]


@pytest.mark.parametrize("norm", ["position", "batch-uncentered"])
def test_both_norms_are_bias_free_so_the_map_sums_to_the_logit(norm: str):
    from bcos.modules.norms.centered_norms import DetachablePositionNorm2d
    from bcos.modules.norms.uncentered_norms import BatchNormUncentered2d

    torch.manual_seed(0)
    model = build_bcos("resnet18", 2, in_channels=1, norm=norm)
    assert model.torchlap_config["norm"] == norm
    kind = DetachablePositionNorm2d if norm == "position" else BatchNormUncentered2d
    norms = [m for m in model.modules() if isinstance(m, kind)]
    assert norms and all(m.bias is None for m in norms)
    model.train()
    with torch.no_grad():  # a few batches give the uncentered norms running statistics
        for _ in range(3):
            model(torch.rand(4, 1, 16, 16))
    model.eval()
    images = torch.rand(2, 1, 16, 16)
    maps = explain(model, images, "bcos", torch.tensor([0, 1]))
    with torch.no_grad():
        logits = model(images)
    bias = model.net.logit_layer.logit_bias
    torch.testing.assert_close(
        maps.sum(dim=(1, 2)), logits[[0, 1], [0, 1]] - bias, rtol=1e-4, atol=1e-5
    )


def test_bad_norms():
    with pytest.raises(ValueError, match="unknown B-cos norm 'batch'"):
        build_bcos("resnet18", 2, norm="batch")
    with pytest.raises(ValueError, match="vgg11_bnu"):
        build_bcos("vgg11", 2, norm="batch-uncentered")


def _norm_kinds(model: torch.nn.Module) -> set[str]:
    """The class names of the package's norm layers in ``model``."""
    from bcos.modules.norms.centered_norms import DetachablePositionNorm2d
    from bcos.modules.norms.uncentered_norms import BatchNormUncentered2d

    kinds = (DetachablePositionNorm2d, BatchNormUncentered2d)
    return {type(m).__name__ for m in model.modules() if isinstance(m, kinds)}


@pytest.mark.parametrize(
    ("norm", "kind"),
    [(None, "BatchNormUncentered2d"), ("batch-uncentered", "BatchNormUncentered2d"),
     ("position", "DetachablePositionNorm2d")],
)  # fmt: skip
def test_bcos_norm_option_reaches_the_network_and_its_record(norm: str | None, kind: str):
    config = TrainConfig(data="digits", out="unused", model="bcos", bcos_norm=norm)
    config.validate()
    built = build_for_training(config, num_classes=3, in_channels=1)
    assert _norm_kinds(built.net) == {kind}
    assert built.record["norm"] == (norm or DEFAULT_TRAIN_NORM)
    # the record rebuilds the same network
    rebuilt = rebuild_model({"model": built.record, "mean": [0.0], "std": [1.0]})
    assert _norm_kinds(rebuilt) == {kind}
    assert rebuilt.net.state_dict().keys() == built.net.state_dict().keys()


def test_records_from_before_the_norm_option_rebuild_with_the_position_norm():
    record = {
        "builder": "torchlap.models.bcos", "arch": "resnet18", "num_classes": 2, "in_channels": 1,
    }  # fmt: skip
    model = rebuild_model({"model": record, "mean": [0.0], "std": [1.0]})
    assert _norm_kinds(model) == {"DetachablePositionNorm2d"}
    # their config.json "train" had no bcos_norm: it reads as the norm the run was built with,
    # so a --resume with the new default is refused as a different run, not built wrongly
    old = TrainConfig(data="digits", out="o", model="bcos").to_dict()
    del old["bcos_norm"]
    assert TrainConfig.from_dict(old).bcos_norm == "position"
    new = TrainConfig(data="digits", out="o", model="bcos")
    assert TrainConfig.from_dict(old).identity() != new.identity()
    vanilla = TrainConfig(data="digits", out="o", lap="none").to_dict()
    del vanilla["bcos_norm"]
    assert TrainConfig.from_dict(vanilla).bcos_norm is None


def test_bcos_norm_is_refused_without_model_bcos_and_when_unknown(tmp_path: Path):
    with pytest.raises(ValueError, match="--bcos-norm position sets the norm of a B-cos network"):
        TrainConfig(data="digits", out="o", lap="none", bcos_norm="position").validate()
    with pytest.raises(ValueError, match="unknown --bcos-norm 'batch'; expected one of position"):
        TrainConfig(data="digits", out="o", model="bcos", bcos_norm="batch").validate()
    result = CliRunner().invoke(
        app, ["train", "--data", "digits", "--out", str(tmp_path / "r"), "--bcos-norm", "position"]
    )
    assert result.exit_code == 2
    assert "use it with --model bcos" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("norm", ["position", "batch-uncentered"])
def test_bcos_smallcnn_is_exact_and_rebuilds_from_its_record(norm: str):
    from bcos.modules import BcosConv2d

    torch.manual_seed(0)
    assert "smallcnn" in bcos_architectures()
    model = build_bcos("smallcnn", 3, in_channels=1, norm=norm)
    convs = [m for m in model.modules() if isinstance(m, BcosConv2d)]
    assert len(convs) == 4 and all(c.b == 2 for c in convs)
    assert [c.max_out for c in convs] == [2, 2, 2, 1]
    expected = "DetachablePositionNorm2d" if norm == "position" else "BatchNormUncentered2d"
    assert _norm_kinds(model) == {expected}
    model.train()
    with torch.no_grad():  # running statistics of the uncentered norm
        model(torch.rand(4, 1, 32, 32))
    model.eval()
    images = torch.rand(2, 1, 32, 32)
    maps = explain(model, images, "bcos", torch.tensor([2, 0]))
    with torch.no_grad():
        logits = model(images)
    torch.testing.assert_close(
        maps.sum(dim=(1, 2)), logits[[0, 1], [2, 0]] + math.log(2), rtol=1e-4, atol=1e-5
    )
    record = {"builder": "torchlap.models.bcos", **model.torchlap_config}
    rebuilt = rebuild_model({"model": record, "mean": [0.0], "std": [1.0]})
    assert rebuilt.net.state_dict().keys() == model.state_dict().keys()


def test_relevance_cam_does_not_apply_to_a_bcos_network() -> None:
    # zennit's LRP rules (and its batch-norm merging) assume affine layers and ReLUs; on a B-cos
    # network the harness must skip Relevance-CAM with the reason, not fail mid-evaluation
    from torchlap.explainers.base import applicability
    from torchlap.explainers.relevance_cam import RelevanceCam

    bcos = build_bcos("cifar10_resnet20", 2, 3, "batch-uncentered").eval()
    assert not RelevanceCam.applies_to(bcos)
    assert RelevanceCam.applies_to(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)))
    with pytest.raises(ValueError, match=r"relevance_cam does not apply.*B-cos"):
        explain(bcos, torch.rand(1, 3, 32, 32), method="relevance_cam")
    assert "B-cos" in applicability("relevance_cam", bcos)
