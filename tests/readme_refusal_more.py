"""Triggers of further README refusal rows: outputs, data layouts, importers, lapify and
weights (not a test module; see ``readme_refusal_cases``)."""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import shutil
from collections.abc import Iterator

import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from readme_refusal_cases import Trigger, message, scratch, tiny_cnn
from readme_refusal_cli import TRAIN, cli, evaluate, image_file, run_copy, tiny_run
from readme_refusal_data import annotated_folder, class_folders, load
from torchlap.cli import app


def _overwrite_stray_checkpoint() -> str:
    run = run_copy()
    stray = run / "checkpoints" / "phase2" / "last.ckpt"
    stray.parent.mkdir()
    stray.write_bytes(b"not torchlap's")
    return cli([*TRAIN, "--epochs", "1", "--out", run, "--overwrite"], {run: "RUN"})


def _checkpoints_link() -> str:
    run = run_copy()
    elsewhere = scratch() / "ckpts"
    shutil.move(run / "checkpoints", elsewhere)
    os.symlink(elsewhere, run / "checkpoints")
    line = cli([*TRAIN, "--epochs", "1", "--out", run], {run: "RUN", elsewhere: "/scratch/ckpts"})
    return line


def _long_out() -> str:
    return cli([*TRAIN, "--out", "x" * 5000])


def _empty_mask_next_to_boxes() -> str:
    root = annotated_folder()
    Image.new("L", (20, 20), 0).save(root / "img" / "mask1.png")
    rows = {3: "img/1.png,pos,train,2,2,10,10,img/mask1.png"}
    lines = (root / "annotations.csv").read_text().splitlines()
    lines[2] = rows[3]
    lines.append("img/1.png,pos,train,4,4,12,12,img/mask1.png")
    (root / "annotations.csv").write_text("\n".join(lines) + "\n")
    return load(root)


def _backslash_path() -> str:
    root = annotated_folder({2: "img\\0.png,neg,train,2,2,10,10,"})
    return load(root)


@contextlib.contextmanager
def _may_not_read(path: os.PathLike) -> Iterator[None]:
    """Opening ``path`` is denied (the tests run as root, who may read a ``chmod 000`` file)."""
    locked, real = os.path.realpath(path), io.open

    def denied(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real(file, *args, **kwargs)

    builtins.open = io.open = denied
    try:
        yield
    finally:
        builtins.open = io.open = real


def _unreadable_config() -> str:
    run = run_copy()
    with _may_not_read(run / "config.json"):
        return evaluate(run)


def _unreadable_results() -> str:
    out = scratch() / "OUT"
    args = ["evaluate", "--run", tiny_run(), "--methods", "gradcam", "--max-images", "4"]
    args += ["--max-val-images", "4", "--stability-images", "1", "--out", out]
    if CliRunner().invoke(app, [str(a) for a in args]).exit_code != 0:
        raise RuntimeError("the evaluation whose results.json is locked failed")
    with _may_not_read(out / "results.json"):
        return cli(args, {out: "OUT"})


def _own_results_json() -> str:
    out = scratch() / "OUT"
    out.mkdir()
    (out / "report.html").mkdir()
    return cli(["evaluate", "--run", tiny_run(), "--out", out], {out: "OUT"})


def _demo_methods(methods: tuple[str, ...]) -> str:
    from torchlap.demo import run_demo

    return message(lambda: run_demo(scratch() / "out", methods=methods))


def _colliding_outputs() -> str:
    a, b = scratch() / "a", scratch() / "b"
    a.mkdir()
    b.mkdir()
    image_file().rename(a / "x.png")
    image_file().rename(b / "x.png")
    return cli(["explain", a / "x.png", b / "x.png", "--run", tiny_run(), "--out", scratch() / "o"])


def _one_output_name() -> str:
    folder = scratch() / "xin"
    folder.mkdir()
    image_file().rename(folder / "a.png")
    Image.new("L", (32, 32), 50).save(folder / "a.jpg")
    return cli(
        [
            "explain",
            folder / "a.png",
            folder / "a.jpg",
            "--run",
            tiny_run(),
            "--out",
            scratch() / "o",
        ]
    )


def _split_without_val() -> str:
    root = scratch() / "DATA"
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            Image.new("L", (8, 8), 40).save(root / split / label / "0.png")
    return cli(["data", "check", root], {root: "DATA"})


def _one_class() -> str:
    return cli(["data", "check", class_folders("cats")])


def _v1_transform() -> str:
    from torchvision import transforms

    return load(annotated_folder(), transform=transforms.Resize(32))


def _rsna_images_dir() -> str:
    from torchlap.data import rsna_pneumonia

    root = scratch()
    (root / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\n")
    return message(lambda: rsna_pneumonia(root, images_dir="/scratch/images"))


def _own_demo_log() -> str:
    out = scratch() / "D"
    out.mkdir()
    (out / "demo.log").write_text("mine\n")
    return cli(["demo", "--out", out, "--epochs", "1", "--scale", "1"])


class NanLogits(nn.Module):
    """``tiny_cnn`` whose logits are NaN for the images listed."""

    def __init__(self, rows: list[int], masked: bool = False) -> None:
        super().__init__()
        self.net, self.rows, self.masked = tiny_cnn(), rows, masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if x.shape[0] > max(self.rows):
            bad = torch.zeros(x.shape[0], dtype=torch.bool)
            bad[self.rows] = True
            if self.masked:  # only on copies with occluded (zero) pixels
                bad &= (x == 0).flatten(1).any(1)
            logits = torch.where(bad[:, None], float("nan"), logits)
        return logits


def _imagenet(val: str, train_extra: str | None = None) -> str:
    from torchlap.data import imagenet_folder

    root = scratch()
    for split, wnids in (("train", ["n01", "n02"]), ("val", [val])):
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / wnid / "0.JPEG")
    if train_extra:
        (root / "train" / train_extra).mkdir()
    split = "train" if train_extra else "val"
    return message(lambda: imagenet_folder(root, split=split)).replace(str(root), "...")


class TwicePooled(nn.Module):
    """One max pool called on two feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(self.pool(self.conv1(x)))).mean((2, 3))


class StdConv2d(nn.Conv2d):
    """A weight-standardised convolution (as timm's), with its own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


def _std_conv() -> str:
    from torchlap import lapify

    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 4, 3))
    model.add_module("conv2", StdConv2d(4, 4, 3, stride=2))
    return message(lambda: lapify(model, ["conv2"]))


def _pretrained_changed() -> str:
    run = run_copy()
    from safetensors.torch import load_file, save_file

    tensors = load_file(run / "model.safetensors")
    tensors["net.fc.bias"] = tensors["net.fc.bias"] + 1
    save_file(tensors, run / "model.safetensors")
    return cli([*TRAIN, "--pretrained", run, "--out", scratch() / "o"], {run: "RUN"})


def _pretrained_swapped() -> str:
    """The weights swapped right after the integrity check, before the model builder reads
    them."""
    from safetensors.torch import load_file, save_file

    import torchlap.runs.loading as loading

    run = run_copy()
    tensors = load_file(run / "model.safetensors")
    tensors["net.fc.bias"] = tensors["net.fc.bias"] + 1
    check = loading.check_integrity

    def check_then_swap(*args: object) -> str | None:
        digest = check(*args)
        save_file(tensors, run / "model.safetensors")
        return digest

    loading.check_integrity = check_then_swap
    try:
        return cli([*TRAIN, "--pretrained", run, "--out", scratch() / "o"], {run: "RUN"})
    finally:
        loading.check_integrity = check


def _stale_checkpoint() -> str:
    run = run_copy(drop=("integrity",))
    checkpoint = run / "checkpoints" / "phase1" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    return cli([*TRAIN, "--epochs", "1", "--out", run, "--resume"], {run: "RUN"})


def _planted_hub_file() -> str:
    from torchlap.models import build_model

    home = scratch()
    planted = home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    planted.parent.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, planted)
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        return message(lambda: build_model("resnet18", 2, pretrained="IMAGENET1K_V1"))
    finally:
        if old is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = old


def _other_images() -> str:
    a, b = scratch() / "a", scratch() / "b"
    shutil.copytree(tiny_run(), a)
    shutil.copytree(tiny_run(), b)
    config = json.loads((a / "config.json").read_text())
    config["train"]["n_images"] = 60
    (a / "config.json").write_text(json.dumps(config))
    return cli(["compare", a, b, "--out", scratch() / "o"])


def _dangling_report() -> str:
    from torchlap.report import write_report

    out = scratch()
    os.symlink(out / "missing.html", out / "report.html")
    return message(lambda: write_report(out, {})).replace(str(out), "...")


def cases() -> dict[str, list[tuple[int, Trigger]]]:
    """These rows' triggers."""
    from torchlap import explain, lapify
    from torchlap.explainers import LapExplainer
    from torchlap.layers import LocalAttentionPool2d
    from torchlap.metrics import keep_top_k

    x = torch.rand(4, 3, 16, 16)
    return {
        "Data a classifier cannot learn": [(2, _one_class)],
        "Checkpoints the run did not write, on --overwrite": [(0, _overwrite_stray_checkpoint)],
        "A `checkpoints` link leading out of the run": [(0, _checkpoints_link)],
        "Paths the file system cannot hold; very long values": [
            (0, _long_out),
            (2, lambda: load(annotated_folder({3: "x" * 300 + ".png,pos,train,2,2,10,10,"}))),
        ],
        "An empty mask next to boxes": [(0, _empty_mask_next_to_boxes)],
        "Missing or unreadable files": [(2, _backslash_path)],
        "Files torchlap may not read": [(0, _unreadable_config), (2, _unreadable_results)],
        "An output entry of the other kind": [(4, _own_results_json)],
        "Bad methods for the demo's comparison": [
            (0, lambda: _demo_methods(("lap", "nosuch"))),
            (1, lambda: _demo_methods(("lap", "lap"))),
        ],
        "Output names that would collide": [(0, _colliding_outputs)],
        "Files with one output name": [(0, _one_output_name)],
        "A dataset split without images": [(1, _split_without_val)],
        "Transforms that do not take the sample dict": [(0, _v1_transform)],
        "An importer image folder outside its root": [(0, _rsna_images_dir)],
        "Several nodes without a launcher": [
            (0, lambda: cli([*TRAIN, "--num-nodes", "2", "--out", scratch() / "o"]))
        ],
        "Your own demo.log in --out": [(0, _own_demo_log)],
        "Non-finite model outputs": [
            (
                0,
                lambda: message(lambda: explain(NanLogits([1]).eval(), x[:2], "gradcam")),
            ),
        ],
        "Model outputs a metric cannot score": [
            (
                0,
                lambda: message(
                    lambda: keep_top_k(
                        NanLogits([1, 3], masked=True).eval(),
                        x,
                        x[:, 0],
                        torch.tensor([0, 1, 0, 1]),
                        ks=(2.5,),
                    )
                ),
            ),
        ],
        "An ImageNet val class without training images": [(0, lambda: _imagenet("n03"))],
        "ImageNet folders that would shift the class indices": [
            (0, lambda: _imagenet("n01", ".ipynb_checkpoints")),
        ],
        "Modules with several uses in `lapify`": [
            (
                0,
                lambda: message(lambda: lapify(TwicePooled(), ["pool"], input_size=(3, 16, 16))),
            ),
        ],
        "Convolutions and pools with their own forward in `lapify`": [(0, _std_conv)],
        "LAP settings at the edge of the float range": [
            (3, lambda: message(lambda: LocalAttentionPool2d(4, 2, eps=1e-50))),
        ],
        "A damaged checkpoint of a run from before the digest record": [(0, _stale_checkpoint)],
        "Concept sets that fit no LAP layer": [
            (0, lambda: message(lambda: LapExplainer(_run_model(), concept_sets={0: [0, 3]}))),
        ],
        "A LAP run's concept sets edited away": [
            (0, lambda: evaluate(run_copy({"concept_sets": None}))),
            (1, lambda: evaluate(run_copy({"lap_layers": []}))),
        ],
        "Changed weights of a `--pretrained` run": [
            (0, _pretrained_changed),
            (2, _pretrained_swapped),
        ],
        "A planted or altered torchvision weights file": [(0, _planted_hub_file)],
        "Runs that saw other images": [(0, _other_images)],
        "A link to nothing where a report, figure or annotations.csv goes": [(0, _dangling_report)],
    }


def _run_model() -> nn.Module:
    from torchlap import load_run

    return load_run(tiny_run()).model
