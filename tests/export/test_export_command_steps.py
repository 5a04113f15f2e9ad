"""``torchlap export``'s steps, the export and the ONNX check stubbed: its defaults (ONNX,
``--batch-size 1``, ``--verify-images 32``, no overwrite), ``--verify-images 1`` checking one
image, the lines naming the file written (its size in MB of 10^6 bytes, its outputs) and the
check's differences, and an existing ``--out`` refused before the run is read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import torchlap
from torchlap.cli import app
from torchlap.export import LapExportModule


def _model() -> torch.nn.Module:
    """A LAP model of the run's input (one channel); its LAP layer is named ``1``."""
    pool = torchlap.AdaptiveLocalAttentionPool2d(4, 1)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    return torch.nn.Sequential(conv, pool, torch.nn.Flatten(), torch.nn.Linear(4, 2))


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What the command asks of the stubbed steps: the test images, the export, the check."""
    seen: dict = {}

    def images(facts, max_images):
        seen["max_images"] = max_images
        return torch.zeros(1, 1, 32, 32)

    def export(facts, out, format, overwrite, batch_size):
        seen["export"] = (format, overwrite, batch_size)
        Path(out).write_bytes(b"\0" * 2_500_000)
        return Path(out), LapExportModule(_model()), None

    def verify(path, module, images):
        seen["verified"] = len(images)
        return {"logits": 0.0, "lap_1": 0.0, "lap_all": 0.0}

    monkeypatch.setattr("torchlap.export.run_test_images", images)
    monkeypatch.setattr("torchlap.export.export_run", export)
    monkeypatch.setattr("torchlap.export.verify_onnx", verify)
    return seen


@pytest.mark.parametrize(("extra", "checked"), [([], 32), (["--verify-images", "1"], 1)])
def test_the_defaults_and_the_line_naming_the_file(
    run_dir, tmp_path, steps: dict, extra: list[str], checked: int
) -> None:
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "--run", str(run_dir), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert steps == {"max_images": checked, "export": ("onnx", False, 1), "verified": 1}
    assert f"wrote {out} (2.5 MB; outputs: logits, lap_1, lap_all)" in result.output
    differences = "max |difference|: logits 0.00e+00, lap_1 0.00e+00, lap_all 0.00e+00"
    assert f"onnxruntime vs PyTorch on the run's test images, {differences}" in result.output


def test_an_existing_out_is_refused_before_the_run_is_read(tmp_path, steps: dict) -> None:
    out = tmp_path / "m.pt"
    out.write_bytes(b"mine")
    args = ["export", "--run", str(tmp_path / "nowhere"), "--format", "torchscript"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code != 0 and steps == {}
    assert "exists; pass --overwrite to replace it" in " ".join(result.output.split())
    assert out.read_bytes() == b"mine"
