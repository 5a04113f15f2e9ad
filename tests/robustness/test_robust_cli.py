"""Bad input on the command line: every command answers with ONE line ``Error: ...`` on stderr
naming the offending argument/file, exit code 2, and writes nothing (issue 16)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import snapshot
from torchlap.cli import app

runner = CliRunner()


def _invoke(args: list[str], **kwargs):
    return runner.invoke(app, args, **kwargs)


def _assert_one_line_error(result, code: int, message: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr  # one line (log lines of the work before may precede)
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    assert re.search(message, errors[0]), errors[0]


def _user_file(name: str, text: str = '{"mine": true}') -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / "out").mkdir(exist_ok=True)
        (tmp / "out" / name).write_text(text)

    return make


def _touch_out(tmp: Path) -> None:
    (tmp / "out").write_text("a file, not a folder")


# (id, arguments ({run}: the tiny run, {tmp}: this test's folder), message, setup)
TRAIN = ["train", "--data", "lesions", "--out", "{tmp}/out", "--n-images", "40"]
TRAIN_CASES = [
    ("epochs 0", [*TRAIN, "--epochs", "0"], r"epochs \(--epochs\) must be", None),
    *(
        [("gpu missing", [*TRAIN, "--accelerator", "gpu"], r"no CUDA device is available", None)]
        if not torch.cuda.is_available()
        else []
    ),
    ("epochs text", [*TRAIN, "--epochs", "two"], r"'--epochs'", None),
    ("lr negative", [*TRAIN, "--lr", "-1"], r"lr \(--lr\) must be .* > 0, got -1", None),
    ("batch size 0", [*TRAIN, "--batch-size", "0"], r"batch_size", None),
    ("image size 0", [*TRAIN, "--image-size", "0"], r"image_size", None),
    ("min-ar 2", [*TRAIN, "--min-ar", "2"], r"min_ar \(MinAR\) must be a number in \(0, 1\]", None),
    ("max-ar 0", [*TRAIN, "--max-ar", "0"], r"max_ar", None),
    ("supervision", [*TRAIN, "--supervision", "strong"], r"unknown supervision 'strong'", None),
    ("model", [*TRAIN, "--model", "blah"], r"unknown model 'blah'", None),
    ("arch", [*TRAIN, "--arch", "resnet1800"], r"unknown architecture", None),
    ("lap", [*TRAIN, "--lap", "resnet99"], r"resnet99", None),
    ("optimizer", [*TRAIN, "--optimizer", "rmsprop"], r"rmsprop", None),
    ("schedule", [*TRAIN, "--schedule", "linear"], r"linear", None),
    ("phase", [*TRAIN, "--phase", "lap:two"], r"bad phase 'lap:two'", None),
    ("data-option", [*TRAIN, "--data-option", "novalue"], r"--data-option expects KEY=VALUE", None),
    ("loss-weight", [*TRAIN, "--loss-weight", "x"], r"--loss-weight expects KEY=VALUE", None),
    ("devices text", [*TRAIN, "--devices", "many"], r"devices", None),
    ("devices too many", [*TRAIN, "--devices", "64", "--accelerator", "cpu"], r"64", None),
    (
        "batch not divisible",
        [*TRAIN, "--devices", "2", "--accelerator", "cpu", "--batch-size", "15"],
        r"--batch-size 15 cannot be split over 2 processes",
        None,
    ),
    ("precision", [*TRAIN, "--precision", "8-bit"], r"precision", None),
    ("seed text", [*TRAIN, "--seed", "x"], r"'--seed'", None),
    ("concept-sets missing", [*TRAIN, "--concept-sets", "{tmp}/none.json"], r"none\.json", None),
    ("data unknown", ["train", "--data", "mnist", "--out", "{tmp}/out"], r"'mnist'", None),
    (
        "data missing folder",
        ["train", "--data", "{tmp}/nodata", "--out", "{tmp}/out"],
        r"nodata",
        None,
    ),
    ("out missing", ["train", "--data", "lesions"], r"Missing option '--out'", None),
    ("resume nothing", [*TRAIN, "--resume"], r"--resume: .* holds no run", None),
    ("out is a file", [*TRAIN], r"exists and is not a folder", _touch_out),
    (
        "user config.json",
        [*TRAIN],
        r"config\.json that torchlap train did not write",
        _user_file("config.json"),
    ),
    (
        "user config.json + overwrite",
        [*TRAIN, "--overwrite"],
        r"config\.json that torchlap train did not write",
        _user_file("config.json"),
    ),
    (
        "user metrics.json + overwrite",
        [*TRAIN, "--overwrite"],
        r"holds \['metrics\.json'\] but no config\.json written by torchlap",
        _user_file("metrics.json"),
    ),
    ("non-empty out", [*TRAIN], r"not empty and holds no torchlap run", _user_file("notes.txt")),
]

EVALUATE = ["evaluate", "--run", "{run}", "--out", "{tmp}/out"]
EVALUATE_CASES = [
    ("run missing", ["evaluate", "--run", "{tmp}/nowhere"], r"nowhere does not exist", None),
    ("device unknown", [*EVALUATE, "--device", "magic"], r"'magic' is not a device", None),
    (
        "method-options method",
        [*EVALUATE, "--method-options", '{"magic": {}}'],
        r"unknown explainer 'magic'; available: ",
        None,
    ),
    (
        "method-options key",
        [*EVALUATE, "--method-options", '{"rise": {"masks": 5}}'],
        r"rise has no option\(s\) \['masks'\]; its options: .*n_masks",
        None,
    ),
    (
        "run not a run",
        ["evaluate", "--run", "{tmp}"],
        r"not a torchlap run folder: no config\.json",
        None,
    ),
    ("methods empty", [*EVALUATE, "--methods", ","], r"--methods needs at least one", None),
    ("methods unknown", [*EVALUATE, "--methods", "magic"], r"magic", None),
    ("methods twice", [*EVALUATE, "--methods", "lap,lap"], r"listed twice", None),
    ("split", [*EVALUATE, "--split", "dev"], r"unknown split 'dev'; accepted splits", None),
    ("batch size", [*EVALUATE, "--batch-size", "0"], r"batch_size must be an int >= 1", None),
    ("max images", [*EVALUATE, "--max-images", "0"], r"max_images", None),
    ("target", [*EVALUATE, "--target", "truth"], r"target must be 'prediction' or 'label'", None),
    ("baseline", [*EVALUATE, "--baseline", "noise"], r"baseline", None),
    (
        "method-options JSON",
        [*EVALUATE, "--method-options", "{rise"],
        r"--method-options is not valid JSON",
        None,
    ),
    (
        "method-options shape",
        [*EVALUATE, "--method-options", "[1]"],
        r"--method-options must map",
        None,
    ),
    ("data unknown", [*EVALUATE, "--data", "mnist"], r"'mnist'", None),
    ("data other classes", [*EVALUATE, "--data", "concepts"], r"classes .* trained on", None),
    (
        "user results.json",
        [*EVALUATE],
        r"holds results\.json, which torchlap did not write; .*--force",
        _user_file("results.json"),
    ),
    (
        "user report.html",
        [*EVALUATE],
        r"holds report\.html, which torchlap did not write",
        _user_file("report.html", "<p>mine</p>"),
    ),
    ("out is a file", [*EVALUATE], r"exists and is not a folder", _touch_out),
]

COMPARE_CASES = [
    ("no runs", ["compare", "--out", "{tmp}/out"], r"Missing argument", None),
    ("same names", ["compare", "{run}", "{run}", "--out", "{tmp}/out"], r"distinct names", None),
    (
        "not a run",
        ["compare", "{tmp}/nowhere", "--out", "{tmp}/out"],
        r"nowhere does not exist",
        None,
    ),
    ("methods", ["compare", "{run}", "--methods", "magic", "--out", "{tmp}/out"], r"magic", None),
    (
        "user comparison.json",
        ["compare", "{run}", "--out", "{tmp}/out"],
        r"comparison\.json, which torchlap did not write",
        _user_file("comparison.json"),
    ),
]

EXPLAIN = ["explain", "{tmp}/img.png", "--run", "{run}", "--out", "{tmp}/out"]
EXPLAIN_CASES = [
    ("method unknown", [*EXPLAIN, "--methods", "magic"], r"unknown method\(s\) \['magic'\]", None),
    ("methods empty", [*EXPLAIN, "--methods", " , "], r"--methods needs at least one", None),
    (
        "input missing",
        ["explain", "{tmp}/nope.png", "--run", "{run}", "--out", "{tmp}/out"],
        r"nope\.png does not exist",
        None,
    ),
    (
        "input not an image",
        ["explain", "{tmp}/notes.txt", "--run", "{run}", "--out", "{tmp}/out"],
        r"notes\.txt is not an image file",
        None,
    ),
    (
        "input unreadable",
        ["explain", "{tmp}/broken.png", "--run", "{run}", "--out", "{tmp}/out"],
        r"broken\.png is not a readable image",
        None,
    ),
    (
        "empty folder",
        ["explain", "{tmp}/emptydir", "--run", "{run}", "--out", "{tmp}/out"],
        r"no image files found in .*emptydir",
        None,
    ),
    (
        "run missing",
        ["explain", "{tmp}/img.png", "--run", "{tmp}/nowhere", "--out", "{tmp}/out"],
        r"nowhere does not exist",
        None,
    ),
    (
        "batch size",
        [*EXPLAIN, "--batch-size", "0"],
        r"--batch-size must be an integer >= 1, got 0",
        None,
    ),
    (
        "names collide",
        ["explain", "{tmp}/a/img.png", "{tmp}/b/img.png", "--run", "{run}", "--out", "{tmp}/out"],
        r"would both be written as img\.png",
        None,
    ),
    (
        "non-finite pixels",
        ["explain", "{tmp}/nan.tiff", "--run", "{run}", "--out", "{tmp}/out"],
        r"nan\.tiff is not a readable image: this float \(mode F\) image holds NaN pixels",
        None,
    ),
    (
        "out holds user file",
        [*EXPLAIN],
        r"already holds .*img\.png, which torchlap explain did not write",
        _user_file("img.png", "mine"),
    ),
    (
        "out is the input folder",
        ["explain", "{tmp}", "--run", "{run}", "--out", "{tmp}"],
        r"would replace an input image",
        None,
    ),
]

DATA_CASES = [
    (
        "export unknown",
        ["data", "export", "mnist", "--out", "{tmp}/out"],
        r"unknown built-in 'mnist'",
        None,
    ),
    (
        "export non-empty",
        ["data", "export", "lesions", "--out", "{tmp}/out", "--n-images", "30"],
        r"already exists and is not an empty folder",
        _user_file("x.txt"),
    ),
    (
        "export n-images",
        ["data", "export", "lesions", "--out", "{tmp}/out", "--n-images", "0"],
        r"n_images",
        None,
    ),
    (
        "export image-size",
        ["data", "export", "lesions", "--out", "{tmp}/out", "--image-size", "-3"],
        r"image_size",
        None,
    ),
    ("check missing", ["data", "check", "{tmp}/nowhere"], r"nowhere does not exist", None),
    (
        "check exported without csv",
        ["data", "check", "{tmp}/exported"],
        r"looks like an annotated dataset folder .*no annotations\.csv",
        None,
    ),
    (
        "check bad csv",
        ["data", "check", "{tmp}/broken"],
        r"annotations\.csv line 2: image file .*missing\.png not found",
        None,
    ),
    (
        "check truncated image",  # its header reads: only decoding finds it
        ["data", "check", "{tmp}/truncated"],
        r"annotations\.csv line 3: image file .*b\.png is unreadable: image file is truncated",
        None,
    ),
]

OTHER_CASES = [
    ("unknown command", ["trian"], r"No such command 'trian'", None),
    (
        "demo suite",
        ["demo", "--suite", "all", "--out", "{tmp}/out"],
        r"unknown --suite 'all'",
        None,
    ),
    (
        "demo data",
        ["demo", "--data", "mnist", "--out", "{tmp}/out"],
        r"unknown --data 'mnist'",
        None,
    ),
    ("demo lr", ["demo", "--lr", "0", "--out", "{tmp}/out"], r"--lr must be > 0", None),
    (
        "demo epochs",
        ["demo", "--epochs", "0", "--out", "{tmp}/out"],
        r"--epochs must be >= 1",
        None,
    ),
    ("demo scale", ["demo", "--scale", "0", "--out", "{tmp}/out"], r"scale must .*\(0, 100", None),
    ("bench layer scale", ["bench", "layer", "--scale", "2"], r"--scale must be in \(0, 1\]", None),
    (
        "bench model size",
        ["bench", "model", "--size", "32"],
        r"--size must be from 75 \(Inception-v3.s smallest\) to 8192",
        None,
    ),
    ("bench layer device", ["bench", "layer", "--device", "gpu0"], r"'gpu0' is not a device", None),
    ("bench model batch", ["bench", "model", "--batch-size", "0"], r"--batch-size must be", None),
    ("bench explain repeats", ["bench", "explain", "--repeats", "0"], r"--repeats must be", None),
    ("bench explain sizes", ["bench", "explain", "--sizes", "0"], r"--sizes must each be", None),
    ("bench explain batch", ["bench", "explain", "--batch-size", "0"], r"--batch-size must", None),
    (
        "bench explain classes",
        ["bench", "explain", "--num-classes", "0"],
        r"--num-classes must be >= 2",
        None,
    ),
]


def _fill(tmp: Path) -> None:
    """The inputs the cases name."""
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(tmp / "img.png")
    for sub in ("a", "b"):
        (tmp / sub).mkdir()
        Image.fromarray(np.full((40, 40), 50, np.uint8)).save(tmp / sub / "img.png")
    (tmp / "notes.txt").write_text("hello")
    (tmp / "broken.png").write_bytes(b"\x89PNG broken")
    (tmp / "emptydir").mkdir()
    pixels = np.full((40, 40), 0.5, np.float32)
    pixels[3, 4] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp / "nan.tiff")
    (tmp / "exported" / "images" / "train").mkdir(parents=True)
    (tmp / "exported" / "masks" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp / "exported/images/train/00000.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp / "exported/masks/train/00000.png")
    (tmp / "broken").mkdir()
    (tmp / "broken" / "annotations.csv").write_text("image,label\nmissing.png,a\n")
    (tmp / "truncated").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((64, 64), 7, np.uint8)).save(tmp / "truncated" / name)
    cut = (tmp / "truncated" / "b.png").read_bytes()
    (tmp / "truncated" / "b.png").write_bytes(cut[: len(cut) // 2])
    (tmp / "truncated" / "annotations.csv").write_text("image,label\na.png,x\nb.png,y\n")


ALL_CASES = [
    pytest.param(*case[1:], id=f"{group}: {case[0]}")
    for group, cases in (
        ("train", TRAIN_CASES),
        ("evaluate", EVALUATE_CASES),
        ("compare", COMPARE_CASES),
        ("explain", EXPLAIN_CASES),
        ("data", DATA_CASES),
        ("other", OTHER_CASES),
    )
    for case in cases
]


@pytest.mark.parametrize(("args", "message", "setup"), ALL_CASES)
def test_cli_bad_input_is_one_clear_line(
    tiny_run: Path, tmp_path: Path, args: list[str], message: str, setup
) -> None:
    _fill(tmp_path)
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    run_before = snapshot(tiny_run)
    filled = [a.replace("{run}", str(tiny_run)).replace("{tmp}", str(tmp_path)) for a in args]
    result = _invoke(filled)
    _assert_one_line_error(result, 2, message)
    assert snapshot(tmp_path) == before  # nothing created, nothing changed
    assert snapshot(tiny_run) == run_before


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["evaluate", "--run", str(tmp_path)]
    result = _invoke(["--debug", *args])
    assert result.exit_code != 0 and isinstance(result.exception, FileNotFoundError)
    monkeypatch.setenv("TORCHLAP_DEBUG", "1")
    result = _invoke(args)
    assert isinstance(result.exception, FileNotFoundError)
    monkeypatch.setenv("TORCHLAP_DEBUG", "0")
    _assert_one_line_error(_invoke(args), 2, r"not a torchlap run folder")


def test_failures_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while working (not bad input) is exit 1, still one line."""
    import torchlap.data.export as export

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export, "builtin_dataset", boom)
    result = _invoke(["data", "export", "lesions", "--out", str(tmp_path / "x")])
    _assert_one_line_error(result, 1, r"disk on fire")


def test_evaluate_force_names_the_replaced_files(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mine": true}')
    result = _invoke(
        ["evaluate", "--run", str(tiny_run), "--out", str(out), "--methods", "gradcam",
         "--max-images", "4", "--max-val-images", "4", "--stability-images", "2", "--force"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"--force: replacing .*results\.json", result.stderr)
    assert json.loads((out / "results.json").read_text())["format"] == "torchlap-results"
    # torchlap's own results now: a rerun needs no --force
    again = _invoke(
        ["evaluate", "--run", str(tiny_run), "--out", str(out), "--methods", "gradcam",
         "--max-images", "4", "--max-val-images", "4", "--stability-images", "2"]
    )  # fmt: skip
    assert again.exit_code == 0 and "replacing" not in again.stderr


def test_explain_mirrors_paths_and_counts_files(tiny_run: Path, tmp_path: Path) -> None:
    """train/val/test each holding 00000.png: three figures, none overwritten (issue 16)."""
    images = tmp_path / "images"
    for k, split in enumerate(("train", "val", "test")):
        (images / split).mkdir(parents=True)
        Image.fromarray(np.full((40, 40), 60 * k, np.uint8)).save(images / split / "00000.png")
    out = tmp_path / "out"
    result = _invoke(["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert figures == ["test/00000.png", "train/00000.png", "val/00000.png"]
    assert "wrote 3 figures and 3 .npz maps" in result.stdout
    rerun = _invoke(["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
                     "--out", str(out)])  # fmt: skip
    assert rerun.exit_code == 0, rerun.output  # its own files: replaced without complaint


def test_explain_dataset_root_uses_images_and_labels(tiny_run: Path, tmp_path: Path) -> None:
    """A dataset root: its images with their labels, not masks/*.png (issue 16)."""
    root = tmp_path / "exported"
    for name in ("images/train/00000.png", "images/val/00000.png", "masks/train/00000.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32), 90, np.uint8)).save(root / name)
    (root / "annotations.csv").write_text(
        "image,label,split,x_min,y_min,x_max,y_max,mask\n"
        "images/train/00000.png,positive,train,1,1,9,9,masks/train/00000.png\n"
        "images/val/00000.png,negative,val,,,,,\n"
    )
    out = tmp_path / "out"
    result = _invoke(["explain", str(root), "--run", str(tiny_run), "--methods", "gradcam",
                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 2 figures" in result.stdout
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["images/train/00000.png", "images/val/00000.png"]


def test_explain_never_explains_its_own_outputs(tiny_run: Path, tmp_path: Path) -> None:
    """--out inside the input folder: the rerun explains the one image again, not its figure."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32), 40, np.uint8)).save(images / "x.png")
    args = ["explain", str(images), "--run", str(tiny_run), "--methods", "gradcam",
            "--out", str(images / "maps")]  # fmt: skip
    for _ in range(2):
        result = _invoke(args)
        assert result.exit_code == 0, result.output
        assert "wrote 1 figures" in result.stdout
    assert sorted(p.name for p in (images / "maps").iterdir()) == [
        ".torchlap-explain.json", "x.npz", "x.png",
    ]  # fmt: skip
