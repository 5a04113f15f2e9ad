"""The ONNX check and ``export_run``'s flag on bad input: ``verify_onnx`` never reports a
difference that looks like agreement (an empty batch gave 0.0 everywhere, a NaN difference
was dropped by ``max``, other shapes were compared by broadcasting), and
``export_run(overwrite="no")`` is refused instead of replacing the file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torchlap
from torchlap.export import LapExportModule, export_run, output_names, verify_onnx


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = torchlap.AdaptiveLocalAttentionPool2d(4, 1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


class _Input:
    name = "images"
    shape = ("batch", 3, 8, 8)


def _fake_onnxruntime(outputs):
    """An onnxruntime whose session returns ``outputs(batch)`` (a list of arrays)."""

    class Session:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def get_inputs(self):
            return [_Input()]

        def run(self, names, feeds):
            return outputs(feeds["images"])

    class Runtime:
        InferenceSession = Session

    return Runtime()


@pytest.fixture
def module_and_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    module = LapExportModule(_Model().eval()).eval()
    path = tmp_path / "m.onnx"
    path.write_bytes(b"stand-in: the session is faked")
    return module, path


def _exact(module):
    def outputs(batch):
        with torch.no_grad():
            return [t.numpy() for t in module(torch.from_numpy(batch))]

    return outputs


def test_matching_outputs_give_zero(module_and_file, monkeypatch) -> None:
    module, path = module_and_file
    monkeypatch.setattr(
        "torchlap.export._require_onnxruntime", lambda: _fake_onnxruntime(_exact(module))
    )
    worst = verify_onnx(path, module, torch.rand(3, 3, 8, 8), batch_size=2)
    assert worst == dict.fromkeys(output_names(module), 0.0)


def test_a_nan_difference_is_reported_not_dropped(module_and_file, monkeypatch) -> None:
    """Before: ``max(0.0, nan)`` is 0.0, so an ONNX output of NaN passed as agreement."""
    module, path = module_and_file
    exact = _exact(module)

    def outputs(batch):
        got = exact(batch)
        got[0] = np.full_like(got[0], np.nan)
        return got

    monkeypatch.setattr("torchlap.export._require_onnxruntime", lambda: _fake_onnxruntime(outputs))
    worst = verify_onnx(path, module, torch.rand(3, 3, 8, 8), batch_size=2)
    assert math.isnan(worst["logits"])
    assert worst["lap_all"] == 0.0


def test_outputs_of_another_shape_are_not_broadcast(module_and_file, monkeypatch) -> None:
    """Before: a (1, 2) output against (B, 2) logits was compared by broadcasting."""
    module, path = module_and_file
    exact = _exact(module)

    def outputs(batch):
        got = exact(batch)
        got[0] = got[0][:1]
        return got

    monkeypatch.setattr("torchlap.export._require_onnxruntime", lambda: _fake_onnxruntime(outputs))
    worst = verify_onnx(path, module, torch.rand(1, 3, 8, 8).repeat(2, 1, 1, 1))
    assert math.isnan(worst["logits"])


@pytest.mark.parametrize(
    ("images", "options", "error", "match"),
    [
        (torch.rand(0, 3, 8, 8), {}, ValueError, r"images hold no image .* at least one"),
        (
            torch.rand(2, 3, 16, 16),
            {},
            ValueError,
            r"shape \(2, 3, 16, 16\), but .* \(B, 3, 8, 8\)",
        ),
        (torch.rand(2, 1, 8, 8), {}, ValueError, r"takes \(B, 3, 8, 8\) images"),
        (torch.full((2, 3, 8, 8), math.nan), {}, ValueError, r"images \[0, 1\] .* NaN"),
        (
            torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
            {},
            TypeError,
            r"floating-point .* torch.uint8 of shape",
        ),
        (torch.rand(3, 8, 8), {}, TypeError, r"\(B, C, H, W\) tensor"),
        (torch.rand(2, 3, 8, 8), {"batch_size": 0}, ValueError, r"batch_size must be an int"),
        (torch.rand(2, 3, 8, 8), {"batch_size": True}, TypeError, r"batch_size must be an int"),
    ],
)
def test_bad_images_and_batch_sizes_are_refused(
    module_and_file, monkeypatch, images, options, error, match
) -> None:
    """Before: an empty batch verified as 0.0 everywhere; batch_size=0 was range()'s error."""
    module, path = module_and_file
    monkeypatch.setattr(
        "torchlap.export._require_onnxruntime", lambda: _fake_onnxruntime(_exact(module))
    )
    with pytest.raises(error, match=match):
        verify_onnx(path, module, images, **options)


def test_a_missing_file_is_named(module_and_file, tmp_path) -> None:
    module, _ = module_and_file
    with pytest.raises(FileNotFoundError, match=r"gone\.onnx: no such ONNX file"):
        verify_onnx(tmp_path / "gone.onnx", module, torch.rand(1, 3, 8, 8))


def test_export_run_refuses_a_string_as_overwrite(tmp_path) -> None:
    """Before: ``overwrite="no"`` is truthy, and the existing file was replaced."""
    out = tmp_path / "m.onnx"
    out.write_bytes(b"mine")
    with pytest.raises(TypeError, match=r"overwrite must be True or False, got 'no'"):
        export_run(tmp_path / "no-run", out, overwrite="no")
    assert out.read_bytes() == b"mine"
