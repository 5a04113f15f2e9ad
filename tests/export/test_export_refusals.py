"""`torchlap export` refuses before any work: a batch beyond its bound (it ran out of memory
after loading the run) and --verify-images given with a format that is not verified (it was
ignored without a word)."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from cli_errors import error_line
from torchlap.cli import app
from torchlap.export import MAX_EXPORT_BATCH, export_run


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        (
            "m.onnx",
            ["--batch-size", "99999999"],
            r"--batch-size must be an int from 1 to 1024, got",
        ),
        ("m.onnx", ["--batch-size", "0"], r"--batch-size must be an int from 1 to 1024, got 0"),
        (
            "m.pt",
            ["--format", "torchscript", "--verify-images", "50"],
            r"--verify-images .* needs --format onnx, and a --format torchscript file is not",
        ),
        (
            "m.pt2",
            ["--format", "exported-program", "--verify-images", "1"],
            r"--verify-images .* needs --format onnx",
        ),
    ],
)
def test_export_refuses_before_reading_the_run(tmp_path, out, extra, message) -> None:
    # the run folder does not exist: the refusal came before it was read
    args = ["export", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / out), *extra]
    error = error_line(args)
    assert re.search(message, error), error
    assert list(tmp_path.iterdir()) == []


def test_export_run_bounds_the_batch(tmp_path) -> None:
    with pytest.raises(
        ValueError, match=rf"batch_size must be an int from 1 to {MAX_EXPORT_BATCH}"
    ):
        export_run(tmp_path / "nowhere", tmp_path / "m.pt", "torchscript", batch_size=5000)
    with pytest.raises(TypeError, match=r"batch_size must be an int from 1 to 1024, got True"):
        export_run(tmp_path / "nowhere", tmp_path / "m.pt", "torchscript", batch_size=True)


def test_verify_images_zero_or_left_at_its_default_is_accepted(run_dir, tmp_path) -> None:
    # the default (32) with a format that is not verified is no request to verify: not refused
    for name, extra in (("a.pt", []), ("b.pt", ["--verify-images", "0"])):
        args = ["export", "--run", str(run_dir), "--format", "torchscript",
                "--out", str(tmp_path / name), *extra]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).is_file()


def test_a_lap_layer_that_never_runs_is_named():
    """Before: a bare KeyError: 'extra'."""
    import torchlap
    from torchlap.export import LapExportModule

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.pool = torchlap.AdaptiveLocalAttentionPool2d(4, 1)
            self.extra = torchlap.LocalAttentionPool2d(4, 2)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))

    with pytest.raises(ValueError, match=r"LAP layer\(s\) \['extra'\] did not run"):
        LapExportModule(Model())(torch.rand(1, 3, 8, 8))
