"""Triggers of README refusal rows about run folders, explain/export outputs, evaluation and
lapify options (not a test module; see ``readme_refusal_cases``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from readme_refusal_cases import Trigger, message, scratch, tiny_cnn
from readme_refusal_cli import TRAIN, cli, evaluate, image_file, run_copy, tiny_run


def _weights(run: Path, edit: str) -> str:
    from safetensors.torch import load_file, save_file

    tensors = load_file(run / "model.safetensors")
    name = "net.layer1.conv.weight"
    if edit == "int64":
        tensors[name] = tensors[name].to(torch.int64)
    else:
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = math.nan
    save_file(tensors, run / "model.safetensors")
    config = json.loads((run / "config.json").read_text())
    config.pop("integrity", None)  # the weights' recorded digest would refuse them first
    (run / "config.json").write_text(json.dumps(config))
    return evaluate(run).replace(name, "net.conv1.weight")


def _lapify_record(value: object) -> str:
    run = run_copy()
    config = json.loads((run / "config.json").read_text())
    config["model"]["lapify"] = value
    (run / "config.json").write_text(json.dumps(config))
    return evaluate(run)


def _recorded_lapify(drop: str) -> dict[str, object]:
    config = json.loads((tiny_run() / "config.json").read_text())
    record = dict(config["model"]["lapify"][0])
    del record[drop]
    return record


def _dangling_weights() -> str:
    run = run_copy()
    (run / "model.safetensors").unlink()
    os.symlink(run / "gone.safetensors", run / "model.safetensors")
    return evaluate(run)


def _weights_elsewhere() -> str:
    run = run_copy()
    elsewhere = scratch() / "w.safetensors"
    (run / "model.safetensors").rename(elsewhere)
    os.symlink(elsewhere, run / "model.safetensors")
    return evaluate(run)


def _damaged_weights() -> str:
    run = run_copy()
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    return evaluate(run)


def _resume(edit: str) -> str:
    run = run_copy({"integrity": "sha"} if edit == "integrity" else None)
    if edit == "checkpoint":
        checkpoint = run / "checkpoints" / "phase1" / "last.ckpt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        if checkpoint.exists():
            checkpoint.unlink()
        checkpoint.mkdir()
    return cli([*TRAIN, "--epochs", "1", "--out", run, "--resume"], {run: "RUN"})


def _overwrite_into(entry: str, kind: str) -> str:
    run = run_copy()
    path = run / entry
    path.unlink()
    if kind == "folder":
        path.mkdir()
    else:
        os.symlink(run / "config.json", path)
    return cli([*TRAIN, "--epochs", "1", "--out", run, "--overwrite"], {run: "O"})


def _dangling_in_new_out() -> str:
    out = scratch() / "O"
    out.mkdir()
    os.symlink(out / "missing", out / "model.safetensors")
    return cli([*TRAIN, "--out", out], {out: "O"})


def _explain_link_to_nothing() -> str:
    out = scratch() / "O"
    out.mkdir()
    image = image_file()
    os.symlink(out / "missing.npz", out / "x.npz")
    return cli(["explain", image, "--run", tiny_run(), "--out", out], {out: "O"})


def _explain_subfolder_blocked() -> str:
    images = scratch() / "images"
    (images / "train").mkdir(parents=True)
    image_file().rename(images / "train" / "0.png")
    out = scratch() / "O"
    out.mkdir()
    (out / "train").write_text("mine")
    return cli(["explain", images, "--run", tiny_run(), "--out", out], {out: "O"})


def _export(target: str) -> str:
    folder = scratch()
    if target == "dangling":
        os.symlink(folder / "gone.onnx", folder / "m.onnx")
        out = folder / "m.onnx"
    elif target == "afile":
        (folder / "afile").write_text("mine")
        out = folder / "afile" / "m.onnx"
    else:
        out = folder / "folder.onnx"
        out.mkdir()
    line = cli(["export", "--run", tiny_run(), "--out", out, "--verify-images", "0"])
    return line.replace(str(folder) + "/", "")


def _compare_named_report() -> str:
    import shutil

    runs = scratch()
    shutil.copytree(tiny_run(), runs / "report.html")
    shutil.copytree(tiny_run(), runs / "a")
    out = scratch() / "OUT"
    return cli(["compare", runs / "a", runs / "report.html", "--out", out], {out: "OUT"})


def _options(**values: object) -> str:
    from torchlap.evaluate import EvaluateOptions

    return message(lambda: EvaluateOptions(**values).validate())


def _lapify_parametrized() -> str:
    from torch.nn.utils.parametrizations import spectral_norm

    from torchlap import lapify

    model = nn.Sequential(nn.Conv2d(3, 4, 3), spectral_norm(nn.Conv2d(4, 4, 3, stride=2)))
    model.append(nn.AdaptiveAvgPool2d(1))
    return message(lambda: lapify(model, ["1"]))


def cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The run, output and option rows' triggers."""
    from torchlap import lapify
    from torchlap.evaluate.bla_comparison import bla_lime_faithfulness
    from torchlap.evaluate.explain import explain_files
    from torchlap.explainers import applicability, rise_masks
    from torchlap.losses import resize_region_masks
    from torchlap.metrics import LearnedConceptPredictor
    from torchlap.metrics.lime_faithfulness import lime_cell_scores

    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    cells = torch.arange(4).reshape(2, 2).repeat_interleave(8, 0).repeat_interleave(8, 1)
    return {
        "Weights of another dtype, or not finite": [
            (0, lambda: _weights(run_copy(), "int64").replace("RUN/", "RUN/")),
            (1, lambda: _weights(run_copy(), "nan")),
        ],
        "An edited `model.lapify` record": [
            (0, lambda: _lapify_record("resnet18")),
            (1, lambda: _lapify_record([_recorded_lapify(drop="sites")])),
        ],
        "Something else where a run's file goes": [(0, _dangling_weights)],
        "Weights leading out of the run folder": [(0, _weights_elsewhere)],
        "A damaged run": [(0, _damaged_weights)],
        "A damaged digest record on resume": [(0, lambda: _resume("integrity"))],
        "Something else where a checkpoint goes": [(0, lambda: _resume("checkpoint"))],
        "A run entry of the wrong kind": [(0, lambda: _overwrite_into("metrics.json", "folder"))],
        "A run log torchlap did not write": [(0, lambda: _overwrite_into("train.log", "link"))],
        "A run file name that is a link to nothing": [(0, _dangling_in_new_out)],
        "An explain output name that is a link to nothing": [(0, _explain_link_to_nothing)],
        "A file where explain's subfolder goes": [(0, _explain_subfolder_blocked)],
        "A dangling symlink as the export's file": [(0, lambda: _export("dangling"))],
        "Repeated explain methods, export paths": [
            (1, lambda: _export("afile")),
            (2, lambda: _export("folder")),
        ],
        "A compared run named as a compare output": [(0, _compare_named_report)],
        "RISE options that make constant masks, or masks that cannot fit": [
            (0, lambda: message(lambda: rise_masks(100000000000, (16, 16)))),
            (
                3,
                lambda: evaluate(
                    tiny_run(),
                    "--methods",
                    "rise",
                    "--method-options",
                    '{"rise": {"grid_size": 1}}',
                ),
            ),
            (
                4,
                lambda: evaluate(
                    tiny_run(), "--methods", "rise", "--method-options", '{"rise": {"p": 1}}'
                ),
            ),
        ],
        "Evaluation levels and flags of the wrong kind": [
            (1, lambda: _options(ks=(50, 50))),
            (2, lambda: _options(ks=("a",))),
            (3, lambda: _options(split="foo")),
            (4, lambda: _options(methods="gradcam")),
        ],
        "Non-finite or wrong-kind values in other helpers": [
            (
                0,
                lambda: message(
                    lambda: LearnedConceptPredictor(2, 2).fit(
                        torch.full((4, 2), math.nan), torch.tensor([0, 1, 0, 1])
                    )
                ),
            ),
            (
                1,
                lambda: message(
                    lambda: resize_region_masks(
                        cells.expand(2, 16, 16).clamp(max=1) * 255.0, (8, 8)
                    )
                ),
            ),
            (3, lambda: message(lambda: rise_masks(4, (8, 8), device="bogus"))),
            (4, lambda: message(lambda: applicability("gradcam", "resnet18"))),
        ],
        "Models `lapify` cannot change in place": [
            (0, lambda: message(lambda: lapify(torch.jit.script(tiny_cnn())))),
            (1, lambda: message(lambda: lapify(torch.compile(tiny_cnn())))),
        ],
        "Modules with parametrizations or hooks in `lapify`": [(0, _lapify_parametrized)],
        "Bad LIME options": [
            (0, lambda: message(lambda: bla_lime_faithfulness(model, x, kernel=1))),
            (5, lambda: evaluate(tiny_run(), "--lime-option", "weighting")),
        ],
        "Bad LIME inputs": [
            (0, lambda: message(lambda: lime_cell_scores(model, x, cells, target=-1))),
            (2, lambda: message(lambda: lime_cell_scores(model, x[:0], cells))),
            (3, lambda: message(lambda: lime_cell_scores(model, x, cells, baseline="x"))),
            (4, lambda: message(lambda: lime_cell_scores(model, x, cells, seed=-1))),
        ],
        "One path or name where explain takes a list": [
            (
                0,
                lambda: message(
                    lambda: explain_files(tiny_run(), "scans", ["lap"], scratch() / "o")
                ),
            ),
            (
                1,
                lambda: message(
                    lambda: explain_files(tiny_run(), [Path("scans")], [], scratch() / "o")
                ),
            ),
        ],
        "A figure path holding your file": [(0, _mine_png)],
    }


def _mine_png() -> str:
    from torchlap.report import plot_keep_k

    folder = scratch()
    (folder / "mine.png").write_bytes(b"my picture")
    return message(lambda: plot_keep_k({}, folder / "mine.png")).replace(str(folder) + "/", "")
