"""Paper 002, section 4.3: "For the uninterpretable baseline model, we compute LIME scores":
with a baseline model and no target, LIME and Grad-CAM explain the class the baseline
predicts, not the class the BLA model predicts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from torchlap.evaluate import bla_comparison
from torchlap.evaluate.bla_comparison import bla_lime_faithfulness
from torchlap.explainers import GradCam
from torchlap.models.bla import blaify


def _stride32_net(favoured: int) -> nn.Sequential:
    """A stride-32 net (2x2 feature map at 64 px) whose head always predicts ``favoured``."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 32, stride=32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    with torch.no_grad():
        net[-1].weight.mul_(1e-3)
        net[-1].bias.copy_(torch.full((3,), -50.0))
        net[-1].bias[favoured] = 50.0
    return net


@pytest.mark.parametrize("bla_class, baseline_class", [(0, 2), (1, 0)])
def test_lime_and_gradcam_explain_the_baselines_predicted_class(
    monkeypatch: pytest.MonkeyPatch, bla_class: int, baseline_class: int
) -> None:
    """The default target is the baseline's prediction for LIME and for Grad-CAM."""
    bla_model, _ = blaify(_stride32_net(bla_class), "bla-t", input_size=64)
    baseline = _stride32_net(baseline_class).eval()
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():  # what each model predicts, read off its own logits
        assert (bla_model.eval()(images).argmax(1) == bla_class).all()
        assert (baseline(images).argmax(1) == baseline_class).all()
    seen: dict[str, Tensor] = {}

    def fake_lime(model: nn.Module, imgs: Tensor, mask: Tensor, classes: Tensor, *_a, **_k):
        seen["lime_model"] = model
        seen["lime"] = torch.as_tensor(classes).clone()
        return torch.arange(int(mask.max()) + 1, dtype=torch.float32).repeat(len(imgs), 1)

    raw = GradCam.raw

    def spy_raw(self: GradCam, imgs: Tensor, classes: Tensor) -> Tensor:
        seen["gradcam"] = torch.as_tensor(classes).clone()
        return raw(self, imgs, classes)

    monkeypatch.setattr(bla_comparison, "lime_cell_scores", fake_lime)
    monkeypatch.setattr(GradCam, "raw", spy_raw)
    bla_lime_faithfulness(bla_model, images, baseline_model=baseline, n_samples=4)
    assert seen["lime_model"] is baseline
    expected = torch.full((3,), baseline_class)
    assert torch.equal(seen["lime"].flatten().long(), expected)
    assert torch.equal(seen["gradcam"].flatten().long(), expected)
