"""Triggers of further README refusal rows: outputs, data layouts, importers, lapify and
weights (not a test module; see ``readme_refusal_cases``)."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

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
        "Paths the file system cannot hold; very long values": [(0, _long_out)],
        "An empty mask next to boxes": [(0, _empty_mask_next_to_boxes)],
        "Missing or unreadable files": [(2, _backslash_path)],
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
        "Changed weights of a `--pretrained` run": [(0, _pretrained_changed)],
        "A planted or altered torchvision weights file": [(0, _planted_hub_file)],
        "Runs that saw other images": [(0, _other_images)],
        "A link to nothing where a report, figure or annotations.csv goes": [(0, _dangling_report)],
    }


def _run_model() -> nn.Module:
    from torchlap import load_run

    return load_run(tiny_run()).model


def _split_layout_extra() -> str:
    from readme_refusal_data import scratch as fresh

    root = fresh()
    for split in ("train", "val", "test", "Validation"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            Image.new("L", (8, 8)).save(root / split / label / "0.png")
    return load(root).replace("DATA", "root")


def _rsna(rows: list[str]) -> str:
    from torchlap.data import rsna_pneumonia

    root = scratch()
    (root / "stage_2_train_images").mkdir()
    Image.new("L", (16, 16)).save(root / "stage_2_train_images" / "p1.png")
    lines = ["patientId,x,y,width,height,Target", *rows]
    (root / "stage_2_train_labels.csv").write_text("\n".join(lines) + "\n")
    return message(lambda: rsna_pneumonia(root))


def _celeba(first_line: str) -> str:
    from torchlap.data import celeba

    root = scratch()
    (root / "img_align_celeba").mkdir()
    (root / "list_attr_celeba.txt").write_text(f"{first_line}\nMale Smiling\n")
    return message(lambda: celeba(root))


@functools.cache
def vanilla_run() -> Path:
    """A vanilla run (no LAP layer) of the small CNN, trained like ``tiny_run``."""
    out = scratch() / "runs" / "vanilla"
    result = CliRunner().invoke(app, [*TRAIN, "--lap", "none", "--epochs", "1", "--out", str(out)])
    if result.exit_code != 0:
        raise RuntimeError(f"the vanilla run failed: {result.output}")
    return out


def _kernel_windows() -> str:
    from torchlap.layers import LocalAttentionPool2d

    old = os.environ.get("TORCHLAP_LAP_WINDOWS")
    os.environ["TORCHLAP_LAP_WINDOWS"] = "rows"
    try:
        return message(lambda: LocalAttentionPool2d(4, 2)(torch.rand(1, 4, 8, 8)))
    finally:
        if old is None:
            del os.environ["TORCHLAP_LAP_WINDOWS"]
        else:
            os.environ["TORCHLAP_LAP_WINDOWS"] = old


def _other_classes() -> str:
    other = run_copy({"classes": ["x", "y"]})
    names = {other: "RC", other.parent: "", tiny_run(): "R"}
    line = cli(["compare", tiny_run(), other, "--data", "lesions", "--out", scratch() / "o"])
    for path, name in names.items():
        line = line.replace(str(path), name)
    return line.replace("run RUN (RC)", "run RC (RC)").replace("'lesions'", "'D'")


def more_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Rows of importers, kernels and extra runs."""
    out = scratch() / "never"
    return {
        "Image folders a split layout would drop": [(2, _split_layout_extra)],
        "An RSNA labels row of the wrong length": [
            (1, lambda: _rsna(["p1,1,2"]).replace("line 2", "line N")),
        ],
        "RSNA box fields and detailed class rows Python would bend or skip": [
            (0, lambda: _rsna(["p1,1_0,2,3,4,1"])),
            (1, lambda: _rsna(["p1,1,2,-10,4,1"])),
        ],
        "A CelebA image count Python would bend, or another file": [(0, lambda: _celeba("8_0"))],
        "Methods that apply to none of the runs": [
            (
                0,
                lambda: cli(["evaluate", "--run", vanilla_run(), "--out", out, "--methods", "lap"]),
            ),
        ],
        "A LIME baseline that is not one": [
            (
                1,
                lambda: evaluate(tiny_run(), "--methods", "gradcam", "--lime-baseline", tiny_run()),
            ),
        ],
        "Unknown kernel settings": [(0, _kernel_windows)],
        "Too few built-in images for every class to train": [
            (0, lambda: cli(["data", "export", "digits", "--n-images", "10", "--out", out])),
        ],
        "A `--pretrained` run of another architecture": [
            (0, lambda: cli([*TRAIN, "--pretrained", tiny_run(), "--lap", "none", "--out", out])),
        ],
        "Compared runs of other classes than `--data`": [(0, _other_classes)],
    }


def _dicom_writer() -> object:
    """``write_dicom`` of tests/data/dicom_files.py (that folder is not on the path here)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "data" / "dicom_files.py"
    spec = importlib.util.spec_from_file_location("readme_refusal_dicom", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_dicom


def _multi_frame_dicom() -> str:
    import numpy as np

    from torchlap.data import load_image

    path = scratch() / "0.dcm"
    _dicom_writer()(path, np.zeros((3, 8, 8), dtype=np.uint8))
    return message(lambda: load_image(path, 1)).replace("3 frames", "N frames")


def _no_bits_stored() -> str:
    import numpy as np
    import pydicom

    root = annotated_folder()
    path = root / "img" / "0.dcm"
    _dicom_writer()(path, np.zeros((20, 20), dtype=np.uint8))
    dataset = pydicom.dcmread(path)
    del dataset.BitsStored
    dataset.save_as(path)
    text = (root / "annotations.csv").read_text().replace("img/0.png", "img/0.dcm")
    (root / "annotations.csv").write_text(text)
    from torchlap.data import load_dataset

    dataset = load_dataset(root, image_size=16)  # line 2 is the train split's first image
    text = message(lambda: dataset[0]).replace(f"{root}/img", ".../img")
    return text.replace(f"{root}/annotations.csv", "annotations.csv")


def _injection_logits(logits: torch.Tensor) -> str:
    from torchlap.layers import LapMaps
    from torchlap.losses import ConceptSets, InjectionLoss

    loss = InjectionLoss(ConceptSets(torch.eye(2, dtype=torch.bool)), use_discriminative=False)
    maps = {"p": LapMaps(torch.rand(4, 2, 4, 4), torch.rand(4, 1, 4, 4), None, (8, 8))}
    return message(lambda: loss(maps, torch.tensor([0, 1, 0, 1]), logits=logits))


def last_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Rows of DICOM files, losses and dataset options."""
    from torchlap.data import load_dataset

    root = annotated_folder()
    return {
        "A multi-frame DICOM file": [(0, _multi_frame_dicom)],
        "Your file where an interrupted explain would write": [(0, _interrupted_explain)],
        "A DICOM file whose pixels cannot be decoded": [(0, _no_bits_stored)],
        "Logits `InjectionLoss` cannot score": [
            (0, lambda: _injection_logits(torch.rand(3, 2))),
            (1, lambda: _injection_logits(torch.ones(4, 2, dtype=torch.int64))),
        ],
        "An empty dataset name; normalisation and split numbers as texts or bools": [
            (3, lambda: message(lambda: load_dataset(root, mean=["0.5"] * 3, std=[0.2] * 3))),
            (4, lambda: message(lambda: load_dataset(root, split_fractions="0.8,0.1,0.1"))),
        ],
    }


def _interrupted_explain() -> str:
    inputs, out = scratch() / "in", scratch() / "O"
    inputs.mkdir()
    out.mkdir()
    image_file().rename(inputs / "00003.png")
    Image.new("L", (4, 4)).save(out / "00003.png")  # yours, without torchlap's mark
    return cli(["explain", inputs, "--run", tiny_run(), "--out", out], {out: "..."})


def _report_results() -> dict:
    """The synthetic results of tests/report/report_synthetic.py."""
    import importlib.util

    path = Path(__file__).resolve().parent / "report" / "report_synthetic.py"
    spec = importlib.util.spec_from_file_location("readme_refusal_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.results_by_run()


def _report_refusal(key: str, value: object) -> str:
    from torchlap.report import tables_markdown

    runs = _report_results()
    first = next(iter(runs))
    runs[first][key] = value
    return message(lambda: tables_markdown(runs)).replace(f"[{first!r}]", "['run']")


def _resnet50_weights() -> str:
    import torchvision
    from safetensors.torch import save_file

    path = scratch() / "resnet50.safetensors"
    weights = torchvision.models.resnet50().state_dict()
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, path)
    data = scratch()
    for label in ("a", "b", "c"):  # three classes, as the row's ResNet18
        (data / label).mkdir()
        for i in range(10):
            Image.new("RGB", (8, 8), (20 * i, 0, 0)).save(data / label / f"{i}.png")
    args = ["train", "--data", data, "--arch", "resnet18", "--image-size", "32"]
    return cli([*args, "--pretrained", path, "--out", scratch() / "o"])


def report_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Rows of the report's input and of foreign weights."""
    return {
        "Results the report cannot read": [
            (0, lambda: _report_refusal("notes", {"gradcam": 5})),
        ],
        "Weights of another architecture": [(0, _resnet50_weights)],
    }


class SkipsAPool(nn.Module):
    """Pools ``p1, p2, p3, g``, of which ``p3`` runs only on inputs over 40 px."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.p1, self.p2, self.p3 = nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.g, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.p2(self.p1(self.conv(x)))
        if x.shape[-1] > 10:
            x = self.p3(x)
        return self.fc(self.g(x).flatten(1))


def _skipped_lap_layer() -> str:
    from torchlap import explain, lapify

    model = SkipsAPool()
    lapify(model, ["p1", "p2", "p3", "g"], input_size=(3, 64, 64))
    model.eval()
    return message(lambda: explain(model, torch.rand(2, 3, 16, 16), "lap", layer=3))


def _rsna_saved() -> str:
    from torchlap.data import rsna_pneumonia

    root = scratch()
    (root / "stage_2_train_images").mkdir()
    rows = ["patientId,x,y,width,height,Target"]
    for i in range(20):
        Image.new("L", (16, 16)).save(root / "stage_2_train_images" / f"p{i}.png")
        rows.append(f"p{i},1,2,3,4,1" if i % 2 else f"p{i},,,,,0")
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    dataset = rsna_pneumonia(root)
    return message(lambda: dataset.save_annotations(scratch() / "annotations.csv"))


def model_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Rows of LAP layers that did not run and of RSNA's normal images."""
    return {
        "A LAP layer index past the layers that ran": [(0, _skipped_lap_layer)],
        "Saving RSNA to annotations.csv": [(0, _rsna_saved)],
        "An RSNA labels row of the wrong length": [
            (0, lambda: _rsna(["p1,1,2,3,4,1,7"]).replace("line 2", "line N"))
        ],
    }


@functools.cache
def _onnx_file() -> Path:
    out = scratch() / "m.onnx"
    args = ["export", "--run", str(tiny_run()), "--out", str(out), "--verify-images", "0"]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"the export failed: {result.output}")
    return out


def _verify(images: torch.Tensor) -> str:
    from torchlap import load_run
    from torchlap.export import LapExportModule, verify_onnx

    module = LapExportModule(load_run(tiny_run()).model)
    path = _onnx_file()
    return message(lambda: verify_onnx(path, module, images)).replace(str(path), "m.onnx")


def export_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Rows of the ONNX check."""
    return {
        "An ONNX check that compares nothing": [
            (0, lambda: _verify(torch.rand(0, 1, 32, 32))),
            (1, lambda: _verify(torch.rand(2, 1, 64, 64))),
        ],
    }


def _relative_data_export() -> str:
    config = json.loads((tiny_run() / "config.json").read_text())
    train = {**config["train"], "data": "nosplit-of-an-older-run"}  # saved as a relative path
    run = run_copy({"train": train})
    line = cli(["export", "--run", run, "--out", scratch() / "m.onnx"], {run: "x/runs/ns"})
    return line.replace("nosplit-of-an-older-run", "nosplit")


def relative_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The row of an older run's relative data folder, as export says it."""
    return {
        "A data folder the ONNX check cannot read, or no onnxruntime": [
            (0, _relative_data_export),
        ],
    }


def _malformed_check_section() -> str:
    from torchlap.report import write_report

    runs = _report_results()
    first = next(iter(runs))
    runs[first]["data_randomization"] = {"methods": {"gradcam": {"spearman_abs": [0.2]}}}
    out = scratch() / "report"
    text = message(lambda: write_report(out, runs))
    if out.exists():
        raise AssertionError(f"write_report refused {out} but wrote into it")
    return text


def section_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The row of a malformed check section."""
    return {"Malformed check sections in results": [(3, _malformed_check_section)]}


def _imagenet_meta(kind: str) -> str:
    from torchlap.data import imagenet_folder

    root = scratch()
    for split in ("train", "val"):
        for wnid in ("n01443537", "n02"):
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / wnid / "0.JPEG")
    if kind == "missing wnid":
        torch.save(({"n02": ("b",)}, []), root / "meta.bin")
    elif kind == "not torchvision's":
        (root / "meta.bin").write_bytes(b"not a torch file")
    else:
        (root / "ILSVRC2012_devkit_t12").mkdir()
    text = message(lambda: imagenet_folder(root))
    return text.replace(str(root), "...").replace("for 1 wnid", "for N wnid")


def imagenet_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The rows of ImageNet's meta.bin."""
    return {
        "ImageNet `meta.bin` problems": [
            (0, lambda: _imagenet_meta("missing wnid")),
            (1, lambda: _imagenet_meta("not torchvision's")),
            (3, lambda: _imagenet_meta("devkit folder")),
        ],
    }
