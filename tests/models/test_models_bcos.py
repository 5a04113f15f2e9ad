"""B-cos networks (``torchlap[bcos]``): build, train a step, reload, explain faithfully."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchlap.models.bcos import bcos_available

if not bcos_available():  # pragma: no cover - `make test` installs the extra
    pytest.skip(
        "the bcos extra is not installed (pip install 'torchlap[bcos]')", allow_module_level=True
    )

from torchlap import load_run
from torchlap.explainers import explain
from torchlap.models.bcos import BcosClassifier, bcos_architectures, build_bcos
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
    net = run.model.net
    assert isinstance(net, BcosClassifier)
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
