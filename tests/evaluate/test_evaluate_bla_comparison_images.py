"""Paper 002's LIME check refuses images it cannot explain before any forward pass: not a
tensor, not (B, C, H, W), not floating point, empty, or holding NaN/infinite pixels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.evaluate.bla_comparison import bla_lime_faithfulness


class _NoPass(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("no pass expected")


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        ([[0.5]], TypeError, r"images must be a torch\.Tensor of shape \(B, C, H, W\)"),
        (torch.rand(3, 64, 64), ValueError, r"images must be a floating tensor of shape"),
        (torch.ones(1, 3, 64, 64, dtype=torch.uint8), ValueError, r"and dtype torch\.uint8"),
        (torch.rand(0, 3, 64, 64), ValueError, r"images must be non-empty"),
        (
            torch.full((2, 3, 64, 64), float("nan")),
            ValueError,
            r"images \[0, 1\] \(batch indices\) hold NaN or infinite pixels",
        ),
    ],
)
def test_images_it_cannot_explain_are_refused_before_any_pass(images, error, message) -> None:
    with pytest.raises(error, match=message):
        bla_lime_faithfulness(_NoPass(), images, n_samples=4)


def test_lime_and_gradcam_run_with_their_defaults(monkeypatch) -> None:
    # the signature's defaults (1000 occlusion patterns, seed 0, Grad-CAM's ReLU) are the ones
    # LIME and Grad-CAM are run with
    from torchlap.evaluate import bla_comparison
    from torchlap.models.bla import blaify

    class _StopError(Exception):
        pass

    seen: list[tuple] = []

    def spy(model, images, mask, classes, n_samples, seed, **options):
        seen.append((n_samples, seed, options))

    def cam(model, layer, relu):
        seen.append(relu)
        raise _StopError

    monkeypatch.setattr(bla_comparison, "lime_cell_scores", spy)
    monkeypatch.setattr(bla_comparison, "GradCam", cam)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 32, stride=32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    model, _ = blaify(net, "bla-t", input_size=64, init="glorot")
    with pytest.raises(_StopError):
        bla_lime_faithfulness(model.eval(), torch.rand(1, 3, 64, 64))
    assert seen == [(1000, 0, {}), True]
