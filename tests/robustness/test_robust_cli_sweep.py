"""Bad input found by a machine-driven sweep of the command line (one option replaced at a
time): each is refused with exit 2 and one ``Error`` line naming the option, before anything
is written (the current folder included, for the empty paths that stood for it)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import snapshot
from torchlap.cli import app

HUGE = "99999999999999999999"  # past 2**63: failed inside torch or itertools before
TRAIN = ["train", "--data", "lesions", "--arch", "smallcnn", "--n-images", "40",
         "--image-size", "32", "--epochs", "1", "--out", "{tmp}/out"]  # fmt: skip
EVALUATE = ["evaluate", "--run", "{run}", "--methods", "gradcam", "--max-images", "4",
            "--out", "{tmp}/out"]  # fmt: skip
EXPLAIN = ["explain", "{tmp}/img.png", "--run", "{run}", "--methods", "gradcam",
           "--out", "{tmp}/out"]  # fmt: skip
EMPTY_NAME = r"has an empty name \(two commas in a row, or one at an end\)"

CASES = [
    # train: sizes past any real use (a fork per worker; torch's overflow after config.json)
    (
        "train num-workers",
        [*TRAIN, "--num-workers", "257"],
        r"num_workers must be an int from 0 to 256, got 257",
    ),
    (
        "train batch huge",
        [*TRAIN, "--batch-size", HUGE],
        r"batch_size must be an int from 1 to 65536",
    ),
    (
        "train n-concepts huge",
        [*TRAIN, "--n-concepts", HUGE],
        r"n_concepts must be an int from 1 to 65536",
    ),
    (
        "train hidden huge",
        [*TRAIN, "--hidden-channels", HUGE],
        r"hidden_channels must be an int from 0 to 65536",
    ),
    (
        "train out under a file",
        [*TRAIN[:-1], "{tmp}/img.png/sub"],
        r"--out .*img\.png/sub is inside .*img\.png, which is not a folder; pass a folder path",
    ),
    (
        "train devices empty",
        [*TRAIN, "--devices", ""],
        r"--devices must be 'auto', a count \(2\) or a comma list of device ids \(0,1\), got ''",
    ),
    (
        "train devices a,,b",
        [*TRAIN, "--devices", "0,,1"],
        r"comma list of device ids \(0,1\), got '0,,1'",
    ),
    # evaluate / compare
    (
        "evaluate data empty",
        [*EVALUATE, "--data", ""],
        r"--data is empty or blank; pass a built-in name",
    ),
    (
        "compare data blank",
        ["compare", "{run}", "--out", "{tmp}/out", "--data", " "],
        r"--data is empty or blank",
    ),
    (
        "evaluate devices a,,b",
        [*EVALUATE, "--devices", "0,,1"],
        r"--devices must be a count \(2\) or a comma list of device ids \(0,1\), got '0,,1'",
    ),
    (
        "evaluate batch huge",
        [*EVALUATE, "--batch-size", HUGE],
        r"batch_size must be an int from 1 to 65536",
    ),
    (
        "evaluate methods a,,b",
        [*EVALUATE, "--methods", "gradcam,,lap"],
        r"--methods 'gradcam,,lap' " + EMPTY_NAME,
    ),
    (
        "evaluate methods a,",
        [*EVALUATE, "--methods", "gradcam,"],
        r"--methods 'gradcam,' " + EMPTY_NAME,
    ),
    (
        "evaluate check-methods a,",
        [*EVALUATE, "--sanity", "--check-methods", "gradcam,"],
        r"--check-methods 'gradcam,' " + EMPTY_NAME,
    ),
    (
        "compare methods a,,b",
        ["compare", "{run}", "--out", "{tmp}/out", "--methods", "lap,,gradcam"],
        r"--methods 'lap,,gradcam' " + EMPTY_NAME,
    ),
    (
        "sanity-images without --sanity",
        [*EVALUATE, "--sanity-images", "3"],
        r"--sanity-images sets a part of the evaluation that runs only with --sanity, which is "
        "not given",
    ),
    (
        "sanity-threshold without --sanity",
        [*EVALUATE, "--sanity-threshold", "0.3"],
        r"--sanity-threshold sets .* only with --sanity",
    ),
    (
        "grid-pg settings without --grid-pg",
        [*EVALUATE, "--grid-pg-grids", "3", "--grid-pg-shape", "2x1"],
        r"--grid-pg-shape, --grid-pg-grids set .* only with --grid-pg",
    ),
    (
        "grid-pg-confidence without --grid-pg",
        [*EVALUATE, "--grid-pg-confidence", "0.5"],
        r"--grid-pg-confidence sets .* only with --grid-pg",
    ),
    (
        "bootstrap-level without resamples",
        [*EVALUATE, "--bootstrap-resamples", "0", "--bootstrap-level", "0.9"],
        r"--bootstrap-level sets .* only with --bootstrap-resamples > 0",
    ),
    (
        "lime-images without bla",
        [*EVALUATE, "--lime-images", "3"],
        r"--lime-images sets .* only with bla among --methods",
    ),
    (
        "evaluate out under a file",
        [*EVALUATE[:-1], "{tmp}/img.png/sub"],
        r"--out .*img\.png/sub is inside .*img\.png, which is not a folder",
    ),
    # explain
    (
        "explain input empty",
        ["explain", "", "--run", "{run}", "--methods", "gradcam", "--out", "{tmp}/out"],
        r"an input is empty or blank; pass an image file or folder",
    ),
    ("explain out empty", [*EXPLAIN[:-1], ""], r"--out is empty or blank; pass the output folder"),
    (
        "explain methods a,",
        [*EXPLAIN[:5], "gradcam,", *EXPLAIN[6:]],
        r"--methods 'gradcam,' " + EMPTY_NAME,
    ),
    # demo: "" filled the current folder with runs/ and demo.log
    (
        "demo out empty",
        ["demo", "--out", "", "--scale", "0.01", "--epochs", "1"],
        r"--out is empty or blank",
    ),
    # bench: a trailing comma or a doubled one no longer skipped
    (
        "bench layer batches a,",
        ["bench", "layer", "--batches", "1,"],
        r"--batches '1,' " + EMPTY_NAME,
    ),
    (
        "bench explain sizes a,",
        ["bench", "explain", "--sizes", "64,"],
        r"--sizes '64,' " + EMPTY_NAME,
    ),
    (
        "bench explain methods a,,b",
        ["bench", "explain", "--sizes", "64", "--methods", "gradcam,,lap"],
        r"--methods 'gradcam,,lap' " + EMPTY_NAME,
    ),
    (
        "bench explain num-classes huge",
        ["bench", "explain", "--sizes", "8", "--num-classes", HUGE],
        r"--num-classes must be >= 2 and <= 100000",
    ),
    # a RISE mask count whose grids do not fit in memory: refused after the table's header
    (
        "bench explain rise-masks huge",
        ["bench", "explain", "--sizes", "8", "--methods", "rise", "--rise-masks", "5000000"],
        r"--rise-masks: n_masks 5000000 of 8x8 grids draw 320000000 grid cells up front",
    ),
    (
        "bench explain rise-vs-sise rise-masks huge",
        ["bench", "explain", "--sizes", "8", "--rise-vs-sise", "--rise-masks", "5000000"],
        r"--rise-masks: n_masks 5000000 of 8x8 grids",
    ),
    (  # (it was named --rise-masks)
        "bench explain mask-batch-size huge",
        ["bench", "explain", "--sizes", "8", "--methods", "rise", "--mask-batch-size", HUGE],
        r"--mask-batch-size: mask_batch_size must be an int >= 1 that fits in 64 bits",
    ),
    (
        "bench model archs a,",
        ["bench", "model", "--archs", "resnet18,"],
        r"--archs 'resnet18,' " + EMPTY_NAME,
    ),
]

if importlib.util.find_spec("torch_xla") is None:  # Lightning's TPU needs it
    CASES.append(
        ("train tpu missing", [*TRAIN, "--accelerator", "tpu"],
         r"--accelerator 'tpu': this machine has no such device \(Lightning's XLAAccelerator")
    )  # fmt: skip


@pytest.mark.parametrize(("args", "message"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_sweep_bad_input_is_refused_up_front(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(tmp_path / "img.png")
    monkeypatch.chdir(tmp_path)  # an empty path is the current folder: nothing may land there
    before, run_before = snapshot(tmp_path), snapshot(tiny_run)
    filled = [a.replace("{run}", str(tiny_run)).replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, filled)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert re.search(message, errors[0]), errors[0]
    assert result.stdout == "", result.stdout  # refused before anything is printed
    assert snapshot(tmp_path) == before  # nothing created, nothing changed
    assert snapshot(tiny_run) == run_before


def test_listed_names_keeps_what_the_options_accepted() -> None:
    """A single name, spaces around names, and a text naming nothing (the callers' own
    "needs at least one" refusal) parse as before."""
    from torchlap.cli_style import listed_names

    assert listed_names("lap, gradcam ", "--methods") == ["lap", "gradcam"]
    assert listed_names("64", "--sizes") == ["64"]
    assert listed_names(" , ", "--methods") == []
    assert listed_names("", "--methods") == []
    with pytest.raises(ValueError, match=r"--archs ',resnet18' has an empty name"):
        listed_names(",resnet18", "--archs")
