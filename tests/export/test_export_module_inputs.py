"""``LapExportModule.forward`` names bad images at its entry (before: the wrapped model's or
torch's error, e.g. a conv weight's shape for images of other channels), and ``verify_onnx``
runs the module in eval mode and gives every module's train/eval flag back, also on errors
(before: it ran the module in whatever mode it was in and left it so)."""

from __future__ import annotations

import pytest
import torch

import torchlap
from torchlap.export import LapExportModule, verify_onnx


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.5)
        self.pool = torchlap.AdaptiveLocalAttentionPool2d(4, 1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.norm(self.conv(x))).flatten(1)))


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([[0.5]], TypeError, r"images must be a floating-point torch\.Tensor .* got list"),
        (
            torch.rand(3, 8, 8),
            ValueError,
            r"images must have shape \(B, C, H, W\), got \(3, 8, 8\)",
        ),
        (torch.rand(1, 2, 3, 8, 8), ValueError, r"images must have shape \(B, C, H, W\)"),
        (torch.ones(2, 3, 8, 8, dtype=torch.uint8), TypeError, r"floating-point .* torch\.uint8"),
        (torch.rand(2, 3, 0, 8), ValueError, r"H, W >= 1"),
        (torch.rand(2, 3, 8, 8, dtype=torch.float64), TypeError, r"images are torch\.float64"),
        (torch.rand(2, 1, 8, 8), ValueError, r"images have 1 channels .* 'conv' takes 3"),
    ],
)
def test_bad_images_are_named_at_the_modules_entry(images, error, match) -> None:
    module = LapExportModule(_Model().eval())
    with pytest.raises(error, match=match), torch.no_grad():
        module(images)


def test_non_finite_images_are_not_refused_by_the_module() -> None:
    """(A traced input has no values: finite pixels are verify_onnx's check, not forward's.)"""
    module = LapExportModule(_Model().eval())
    images = torch.rand(2, 3, 8, 8)
    images[0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        assert module(images)[0].shape == (2, 2)


class _Input:
    name = "images"
    shape = ("batch", 3, 8, 8)


def _runtime(run):
    class Session:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def get_inputs(self):
            return [_Input()]

        def run(self, names, feeds):
            return run(names, feeds)

    class Runtime:
        InferenceSession = Session

    return Runtime()


def _mixed_flags(module: torch.nn.Module) -> list[bool]:
    module.train()
    module.model.norm.eval()  # one module in another mode than its parent
    return [m.training for m in module.modules()]


def test_verify_runs_in_eval_mode_and_gives_the_flags_back(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    module = LapExportModule(_Model())
    flags = _mixed_flags(module)
    seen: list[list[bool]] = []

    def run(names, feeds):
        seen.append([m.training for m in module.modules()])
        with torch.no_grad():  # what an export (in eval mode) computes
            return [t.numpy() for t in module(torch.from_numpy(feeds["images"]))]

    monkeypatch.setattr("torchlap.export._require_onnxruntime", lambda: _runtime(run))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"stand-in: the session is faked")
    worst = verify_onnx(path, module, torch.rand(3, 3, 8, 8), batch_size=2)
    assert seen and all(not any(flags_seen) for flags_seen in seen)
    assert all(value == 0.0 for value in worst.values())  # eval: no dropout, running stats
    assert [m.training for m in module.modules()] == flags


def test_a_verify_that_raises_gives_the_flags_back(tmp_path, monkeypatch) -> None:
    module = LapExportModule(_Model())
    flags = _mixed_flags(module)

    def run(names, feeds):
        raise RuntimeError("the session failed")

    monkeypatch.setattr("torchlap.export._require_onnxruntime", lambda: _runtime(run))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"stand-in: the session is faked")
    with pytest.raises(RuntimeError, match="the session failed"):
        verify_onnx(path, module, torch.rand(3, 3, 8, 8), batch_size=2)
    assert [m.training for m in module.modules()] == flags
