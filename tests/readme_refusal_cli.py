"""Triggers of the README refusal rows reached through the command line (not a test module;
see ``readme_refusal_cases``)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from readme_refusal_cases import Trigger, scratch
from torchlap.cli import app


class NotAnError(AssertionError):
    """A command the README says is refused that did not exit with one Error line."""


def cli(args: list[str], names: dict[Path, str] | None = None, code: int = 2) -> str:
    """Run ``torchlap ARGS`` in this process; return its one ``Error`` line, each path of
    ``names`` written as its README name (exit code ``code`` checked)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    if result.exit_code != code or len(errors) != 1:
        raise NotAnError(f"torchlap {args}: exit {result.exit_code}, stderr {result.stderr!r}")
    line = errors[0]
    for path, name in sorted((names or {}).items(), key=lambda item: -len(str(item[0]))):
        line = line.replace(str(path), name)
    return line


@functools.cache
def tiny_run() -> Path:
    """A LAP run of the small CNN on 40 lesions images of 32 px, trained for one epoch."""
    out = scratch() / "run"
    args = ["train", "--data", "lesions", "--arch", "smallcnn", "--n-images", "40"]
    args += ["--image-size", "32", "--epochs", "1", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"the tiny run failed: {result.output}")
    return out


def run_copy(edit: dict[str, object] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the tiny run folder named RUN, its config.json keys set from ``edit`` and
    those in ``drop`` deleted."""
    run = scratch() / "RUN"
    shutil.copytree(tiny_run(), run)
    config = json.loads((run / "config.json").read_text())
    config.update(edit or {})
    for key in drop:
        del config[key]
    (run / "config.json").write_text(json.dumps(config))
    return run


def _evaluate(run: Path, *more: str) -> str:
    out = scratch() / "OUT"
    return cli(["evaluate", "--run", run, "--out", out, *more], {run: "RUN", out: "OUT"})


TRAIN = [
    "train",
    "--data",
    "lesions",
    "--arch",
    "smallcnn",
    "--n-images",
    "40",
    "--image-size",
    "32",
]


def cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The command-line rows' triggers."""
    out = scratch() / "never"
    return {
        "Bad option values": [(0, lambda: cli([*TRAIN, "--min-ar", "2", "--out", out]))],
        "Devices this machine lacks": [
            (3, lambda: cli(["evaluate", "--run", tiny_run(), "--out", out, "--device", "magic"])),
        ],
        "A run folder given as data": [
            (
                1,
                lambda: cli(
                    ["train", "--data", tiny_run(), "--out", out], {tiny_run(): "runs/ws-lap"}
                ),
            ),
        ],
        "Data options a run cannot use": [
            (0, lambda: cli([*TRAIN, "--data-option", "n_images=50", "--out", out])),
            (2, lambda: cli([*TRAIN, "--data-option", "foo=1", "--out", out])),
            (3, lambda: cli([*TRAIN, "--data-option", "split_fractions=a,b", "--out", out])),
        ],
        "Supervision settings the supervision does not use": [
            (
                0,
                lambda: cli(
                    [
                        *TRAIN,
                        "--supervision",
                        "none",
                        "--min-ar",
                        "0.3",
                        "--no-discriminative",
                        "--out",
                        out,
                    ]
                ),
            ),
        ],
        "SGD momentum out of range or unused": [
            (0, lambda: cli([*TRAIN, "--optimizer", "sgd", "--momentum", "1", "--out", out])),
            (1, lambda: cli([*TRAIN, "--momentum", "0.5", "--out", out])),
        ],
        "--lr, --optimizer or --epochs no phase uses": [
            (0, lambda: cli([*TRAIN, "--phase", "lap:1:1e-4", "--lr", "5", "--out", out])),
            (1, lambda: cli([*TRAIN, "--phase", "lap:1", "--epochs", "7", "--out", out])),
        ],
        "Epoch counts without bound": [
            (0, lambda: cli([*TRAIN, "--phase", "lap:99999999999999999999", "--out", out])),
            (1, lambda: cli([*TRAIN, "--epochs", "100001", "--out", out])),
        ],
        "An empty name in a comma-separated list": [
            (
                0,
                lambda: cli(
                    ["evaluate", "--run", tiny_run(), "--out", out, "--methods", "gradcam,,lap"]
                ),
            ),
            (4, lambda: cli([*TRAIN, "--devices", "0,,1", "--out", out])),
        ],
        "An empty output folder": [
            (0, lambda: cli(["evaluate", "--run", tiny_run(), "--out", ""])),
        ],
        "Settings of a part of the evaluation that does not run": [
            (
                0,
                lambda: cli(
                    ["evaluate", "--run", tiny_run(), "--out", out, "--sanity-images", "3"]
                ),
            ),
        ],
        "Methods checked twice": [
            (0, lambda: _evaluate(tiny_run(), "--check-methods", "gradcam,gradcam", "--sanity")),
        ],
        "A config.json edited by hand": [
            (0, lambda: _evaluate(run_copy({"classes": ["a"]}))),
            (1, lambda: _evaluate(run_copy(drop=("classes",)))),
            (2, lambda: _evaluate(run_copy({"image_size": 32.7}))),
        ],
        "A run from a newer torchlap": [(0, lambda: _evaluate(run_copy({"format_version": 99})))],
        "A folder that is not a finished run": [(0, lambda: _evaluate(scratch()))],
        "A badly typed integrity record": [(0, lambda: _evaluate(run_copy({"integrity": ["x"]})))],
        "A run's `train` record edited by hand": [
            (0, lambda: _evaluate(run_copy({"train": "lesions"}))),
        ],
        "Methods that apply to none of the runs": [],
        "Impossible grids": [
            (0, lambda: _evaluate(tiny_run(), "--grid-pg", "--grid-pg-grids", "1000000000")),
            (1, lambda: _evaluate(tiny_run(), "--grid-pg", "--grid-pg-shape", "2x2")),
        ],
        "Evaluation seeds and sizes out of range": [
            (1, lambda: _evaluate(tiny_run(), "--tie-draws", "99999999999999")),
        ],
        "A train, evaluate or compare --out inside a file": [
            (0, lambda: _out_inside_a_file()),
        ],
        "Sizes past any real use in train and evaluate": [
            (0, lambda: cli([*TRAIN, "--num-workers", "100000", "--out", out])),
        ],
    }


def _out_inside_a_file() -> str:
    folder = scratch()
    (folder / "x.png").write_bytes(b"not a folder")
    out = folder / "x.png" / "sub"
    return cli(["evaluate", "--run", tiny_run(), "--out", out], {folder / "x.png": "x.png"})
