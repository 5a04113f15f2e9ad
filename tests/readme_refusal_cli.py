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
    ``names`` written as its README name. Checked: the exit code is ``code``, and no path among
    ``ARGS`` (a ``Path``) that did not exist before exists after (nothing was written)."""
    absent = [a for a in args if isinstance(a, Path) and not (a.exists() or a.is_symlink())]
    result = CliRunner().invoke(app, [str(a) for a in args])
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    if result.exit_code != code or len(errors) != 1:
        raise NotAnError(f"torchlap {args}: exit {result.exit_code}, stderr {result.stderr!r}")
    if made := [str(a) for a in absent if a.exists() or a.is_symlink()]:
        raise NotAnError(f"torchlap {args} was refused but wrote {made}")
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


def evaluate(run: Path, *more: str) -> str:
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
        "Settings no evaluated method reads": [
            (
                0,
                lambda: evaluate(
                    scratch(), "--methods", "gradcam", "--lap-all-ranking", "algorithm1"
                ),
            ),
            (
                1,
                lambda: evaluate(
                    scratch(),
                    "--methods",
                    "lap",
                    "--threshold-fit",
                    "with_region",
                    "--threshold-classifier",
                    "logistic",
                ),
            ),
        ],
        "Another job's outputs in --out": [
            (0, lambda: _other_jobs_folder("evaluate", "--run", tiny_run())),
            (1, lambda: _other_jobs_folder("compare", tiny_run(), run_copy())),
        ],
        "Methods checked twice": [
            (0, lambda: evaluate(tiny_run(), "--check-methods", "gradcam,gradcam", "--sanity")),
        ],
        "A config.json edited by hand": [
            (0, lambda: evaluate(run_copy({"classes": ["a"]}))),
            (1, lambda: evaluate(run_copy(drop=("classes",)))),
            (2, lambda: evaluate(run_copy({"image_size": 32.7}))),
        ],
        "A run from a newer torchlap": [(0, lambda: evaluate(run_copy({"format_version": 99})))],
        "A folder that is not a finished run": [(0, lambda: evaluate(scratch()))],
        "A badly typed integrity record": [(0, lambda: evaluate(run_copy({"integrity": ["x"]})))],
        "A run's `train` record edited by hand": [
            (0, lambda: evaluate(run_copy({"train": "lesions"}))),
        ],
        "Methods that apply to none of the runs": [],
        "Impossible grids": [
            (0, lambda: evaluate(tiny_run(), "--grid-pg", "--grid-pg-grids", "1000000000")),
            (1, lambda: evaluate(tiny_run(), "--grid-pg", "--grid-pg-shape", "2x2")),
        ],
        "Evaluation seeds and sizes out of range": [
            (1, lambda: evaluate(tiny_run(), "--tie-draws", "99999999999999")),
        ],
        "A train, evaluate or compare --out inside a file": [
            (0, lambda: _out_inside_a_file()),
        ],
        "A file where a folder is expected, and the reverse": [
            (0, lambda: _run_as_file()),
        ],
        "LAP settings for a model without LAP layers, or that change nothing": [
            (0, lambda: cli([*TRAIN, "--model", "bla", "--min-ar", "0.2", "--out", out])),
        ],
        "Lightning names": [
            (0, lambda: cli([*TRAIN, "--strategy", "ddp_spawn", "--out", out])),
        ],
        "BLA-PH without the network it explains": [
            (0, lambda: cli([*TRAIN, "--model", "bla-ph", "--lap", "none", "--out", out])),
        ],
        "freeze_features that does not apply": [
            (0, lambda: cli([*TRAIN, "--freeze-features", "maybe", "--out", out])),
        ],
        "A weights name the architecture does not have": [
            (
                0,
                lambda: cli(
                    [
                        *TRAIN[:-4],
                        "--arch",
                        "resnet18",
                        "--pretrained",
                        "IMAGENET1K_V2",
                        "--out",
                        out,
                    ]
                ),
            ),
            (3, lambda: cli([*TRAIN, "--pretrained", "IMAGENET1K_V1", "--out", out])),
        ],
        "A `--pretrained` path that does not exist": [(0, _missing_pretrained)],
        "An image size the run cannot train at": [
            (0, lambda: _small_images("7")),
            (1, lambda: cli([*TRAIN[:-2], "--image-size", "2", "--out", out])),
        ],
        "Device ids Lightning cannot take": [
            (0, lambda: cli([*TRAIN, "--devices", "-1", "--out", out])),
            (1, lambda: cli([*TRAIN, "--devices", "0,1", "--out", out])),
        ],
        "An accelerator this machine lacks": [
            (0, lambda: cli([*TRAIN, "--accelerator", "tpu", "--out", out])),
        ],
        "JSON and numbers Python would bend in train options": [
            (0, lambda: cli([*TRAIN, "--ratios", '{"0": 0.1, "0": 0.2}', "--out", out])),
            (6, lambda: cli([*TRAIN, "--phase", "all:1_0", "--out", out])),
        ],
        "An empty path that stood for the current folder": [
            (0, lambda: cli(["demo", "--out", ""])),
            (1, lambda: cli(["explain", "", "--run", tiny_run(), "--out", out])),
            (2, lambda: cli(["evaluate", "--run", tiny_run(), "--out", out, "--data", ""])),
        ],
        "Demo scale": [(0, lambda: cli(["demo", "--out", out, "--scale", "inf"]))],
        "Bench options": [
            (0, lambda: cli(["bench", "layer", "--batches", "99999999999999999999999"])),
        ],
        "Repeated bench values": [(0, lambda: cli(["bench", "explain", "--sizes", "32,32"]))],
        "Explainer options that are not finite numbers": [
            (0, lambda: evaluate(tiny_run(), "--method-options", '{"lap": {"threshold": NaN}}')),
        ],
        "Options that would be ignored": [
            (
                0,
                lambda: evaluate(
                    tiny_run(),
                    "--methods",
                    "gradcam",
                    "--method-options",
                    '{"rise": {"n_masks": 0}}',
                ),
            ),
            (3, lambda: evaluate(tiny_run(), "--ties", "index", "--tie-draws", "7")),
            (
                4,
                lambda: cli(
                    [
                        "export",
                        "--run",
                        tiny_run(),
                        "--out",
                        out / "m.pt",
                        "--format",
                        "torchscript",
                        "--verify-images",
                        "50",
                    ]
                ),
            ),
        ],
        "Explainer option values and layers": [
            (
                0,
                lambda: evaluate(
                    tiny_run(),
                    "--methods",
                    "gradcam",
                    "--method-options",
                    '{"gradcam": {"layer": "net.fc"}}',
                ),
            ),
        ],
        "Out-of-range numbers in a run": [
            (0, lambda: evaluate(run_copy({"image_size": 1000000000}))),
            (1, lambda: evaluate(run_copy({"format_version": -1}))),
        ],
        "A file as the export folder; an export seed train refuses": [
            (1, lambda: cli(["data", "export", "lesions", "--out", out, "--seed", "-1"])),
        ],
        "Export folders the rename cannot reach": [
            (0, lambda: cli(["data", "export", "lesions", "--out", "."])),
            (
                4,
                lambda: cli(
                    ["data", "export", "lesions", "--out", out, "--n-images", "999999999999"]
                ),
            ),
        ],
        "Repeated explain methods, export paths": [
            (
                0,
                lambda: cli(
                    [
                        "explain",
                        image_file(),
                        "--run",
                        tiny_run(),
                        "--out",
                        out,
                        "--methods",
                        "lap,lap",
                    ]
                ),
            ),
        ],
        "A damaged explain manifest": [(0, lambda: _explain_manifest({"files": 5}))],
        "A manifest explain did not write": [(0, lambda: _explain_manifest({"files": []}))],
        "An explain --out that cannot be a folder": [(0, _dangling_out)],
        "Sizes past any real use in train and evaluate": [
            (0, lambda: cli([*TRAIN, "--num-workers", "100000", "--out", out])),
        ],
    }


def image_file() -> Path:
    from PIL import Image

    path = scratch() / "x.png"
    Image.new("L", (32, 32), 100).save(path)
    return path


def _small_images(size: str) -> str:
    from readme_refusal_data import annotated_folder

    data = annotated_folder()
    return cli(
        [
            "train",
            "--data",
            data,
            "--arch",
            "smallcnn",
            "--image-size",
            size,
            "--out",
            scratch() / "o",
        ]
    )


def _run_as_file() -> str:
    run = tiny_run()
    return cli(
        ["evaluate", "--run", run / "config.json", "--out", scratch() / "o"], {run: "runs/ws-lap"}
    )


def _missing_pretrained() -> str:
    import os

    line = cli([*TRAIN, "--pretrained", "./nonexist.safetensors", "--out", scratch() / "o"])
    return line.replace(str(Path.cwd().resolve()), "/abs").replace(os.getcwd(), "/abs")


def _explain_manifest(manifest: object) -> str:
    out = scratch() / "OUT"
    out.mkdir()
    (out / ".torchlap-explain.json").write_text(json.dumps(manifest))
    return cli(["explain", image_file(), "--run", tiny_run(), "--out", out], {out: "OUT"})


def _dangling_out() -> str:
    import os

    folder = scratch()
    os.symlink(folder / "nowhere", folder / "dl")
    line = cli(["explain", image_file(), "--run", tiny_run(), "--out", folder / "dl"])
    return line.replace(str(folder) + "/", "")


def _out_inside_a_file() -> str:
    folder = scratch()
    (folder / "x.png").write_bytes(b"not a folder")
    out = folder / "x.png" / "sub"
    return cli(["evaluate", "--run", tiny_run(), "--out", out], {folder / "x.png": "x.png"})


def _other_jobs_folder(*command: object) -> str:
    """``command`` into a folder holding the evaluation of another run (``other``)."""
    out = scratch() / "OUT"
    out.mkdir()
    run = {"name": "other", "run_dir": "/runs/other", "path": "/runs/other"}
    (out / "results.json").write_text(json.dumps({"format": "torchlap-results", "run": run}))
    return cli([*command, "--out", out], {tiny_run(): "RUN", out: "OUT"})
