"""torchlap export: the model with its LAP maps, checked against PyTorch and torchlap.explain."""

from __future__ import annotations

import logging

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.export import LapExportModule, export_run, output_names, verify_onnx
from torchlap.runs import load_run


def _reference(run_dir, images):
    """Slow reference: the library's own explainer, per layer and LAP All, per image."""
    from torchlap import explain
    from torchlap.runs import load_run

    run = load_run(run_dir)
    with torch.no_grad():
        logits = run.model(images)
    predicted = logits.argmax(1)
    all_maps = torch.stack(
        [
            explain(run.model, images[i : i + 1], "lap", target=predicted[i : i + 1],
                    concept_sets=run.concept_sets)[0]
            for i in range(len(images))
        ]
    )  # fmt: skip
    return logits, all_maps


def test_onnx_maps_match_pytorch_and_the_lap_explainer(run_dir, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    path, module, _ = export_run(run_dir, tmp_path / "model.onnx", "onnx")
    images = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    worst = verify_onnx(path, module, images, batch_size=3)  # batch sizes 3 and 2
    assert list(worst) == output_names(module)
    assert len(worst) == 2 + len(module.layers)
    assert max(worst.values()) < 1e-4, worst
    logits, lap_all = _reference(run_dir, images)
    with torch.no_grad():
        outputs = module(images)
    torch.testing.assert_close(outputs[0], logits)
    torch.testing.assert_close(outputs[-1], lap_all, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "suffix"), [("exported-program", ".pt2"), ("torchscript", ".pt")])
def test_torch_formats_reload_with_the_maps(run_dir, tmp_path, fmt, suffix) -> None:
    path, module, _ = export_run(run_dir, tmp_path / f"m{suffix}", fmt, batch_size=2)
    loaded = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(path).module()
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        for want, got in zip(module(images), loaded(images), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_exported_program_of_the_cli_default_batch_takes_any_batch(run_dir, tmp_path) -> None:
    # `torchlap export --format exported-program` (default --batch-size 1) used to exit 1:
    # torch.export specialized a traced batch of 1 to a constant
    out = tmp_path / "cli.pt2"
    result = CliRunner().invoke(
        app, ["export", "--run", str(run_dir), "--format", "exported-program", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    loaded = torch.export.load(out).module()
    run = load_run(run_dir)
    module = LapExportModule(run.model.eval(), run.concept_sets).eval()
    for batch in (1, 3):
        images = torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            for want, got in zip(module(images), loaded(images), strict=True):
                assert got.shape[0] == batch
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be an int from 1 to 1024, got 0"):
        export_run(run_dir, tmp_path / "zero.pt2", "exported-program", batch_size=0)


def test_export_refuses_bad_input(run_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown --format 'tflite'"):
        export_run(run_dir, tmp_path / "m.onnx", "tflite")
    with pytest.raises(ValueError, match=r"must end with \.pt2"):
        export_run(run_dir, tmp_path / "m.onnx", "exported-program")
    (tmp_path / "mine.pt2").write_text("not torchlap's")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_run(run_dir, tmp_path / "mine.pt2", "exported-program")
    assert (tmp_path / "mine.pt2").read_text() == "not torchlap's"
    (tmp_path / "folder.pt2").mkdir()
    for overwrite in (True, False):  # before: without --overwrite it suggested --overwrite
        with pytest.raises(IsADirectoryError, match=r"folder\.pt2 is a folder; pass a file path"):
            export_run(run_dir, tmp_path / "folder.pt2", "exported-program", overwrite=overwrite)
    with pytest.raises(FileNotFoundError, match=r"mine\.pt2 is a file, not a folder"):
        export_run(run_dir, tmp_path / "mine.pt2" / "m.pt2", "exported-program")
    with pytest.raises(ValueError, match="no LAP layer"):
        LapExportModule(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))


@pytest.mark.parametrize(
    ("option", "value", "error", "match"),
    [
        ("decay", "0.5", TypeError, r"decay must be a number in \(0, 1\]"),
        ("decay", True, TypeError, r"decay must be a number in \(0, 1\]"),
        ("decay", float("nan"), ValueError, r"decay must be a number in \(0, 1\]"),
        ("decay", 5, ValueError, r"decay must be a number in \(0, 1\]"),
        ("decay", 0, ValueError, r"decay must be a number in \(0, 1\]"),
        ("decay", -1, ValueError, r"decay must be a number in \(0, 1\]"),
        ("threshold", 2, ValueError, r"threshold must be a number in \[0, 1\]"),
        ("threshold", float("nan"), ValueError, r"threshold must be a number in \[0, 1\]"),
        ("threshold", "0.5", TypeError, r"threshold must be a number in \[0, 1\]"),
    ],
)
def test_export_module_checks_decay_and_threshold(run_dir, option, value, error, match) -> None:
    """float() accepted "0.5" and True; NaN and out-of-range values failed at the first forward."""
    model = load_run(run_dir).model
    with pytest.raises(error, match=match):
        LapExportModule(model, **{option: value})
    module = LapExportModule(model, decay=1, threshold=0)
    assert (module.decay, module.threshold) == (1.0, 0.0)


@pytest.mark.slow
def test_cli_export_reports_the_onnx_difference(run_dir, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(
        app, ["export", "--run", str(run_dir), "--out", str(out), "--verify-images", "4"]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and "max |difference|: logits" in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_export_overwrite_says_which_file_it_replaced(run_dir, tmp_path, caplog) -> None:
    (tmp_path / "mine.pt").write_text("an older export")
    with caplog.at_level(logging.WARNING, logger="torchlap.export"):
        export_run(run_dir, tmp_path / "mine.pt", "torchscript", overwrite=True, batch_size=1)
    assert f"--overwrite: replaced {tmp_path / 'mine.pt'}" in caplog.text
    assert (tmp_path / "mine.pt").read_bytes() != b"an older export"
