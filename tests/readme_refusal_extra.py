"""Triggers of the README refusal rows of importers, DICOM and ImageNet files, the report's
input, ONNX checks and older runs (not a test module; see ``readme_refusal_cases``)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from readme_refusal_cases import Trigger, message, scratch
from readme_refusal_cli import TRAIN, cli, evaluate, image_file, run_copy, tiny_run
from readme_refusal_data import annotated_folder, load
from torchlap.cli import app


def _split_layout_extra() -> str:
    from readme_refusal_data import scratch as fresh

    root = fresh()
    for split in ("train", "val", "test", "Validation"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            Image.new("L", (8, 8)).save(root / split / label / "0.png")
    return load(root).replace("DATA", "root")


def _rsna(rows: list[str], header: str = "patientId,x,y,width,height,Target") -> str:
    from torchlap.data import rsna_pneumonia

    root = scratch()
    (root / "stage_2_train_images").mkdir()
    Image.new("L", (16, 16)).save(root / "stage_2_train_images" / "p1.png")
    lines = [header, *rows]
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


def _learned_images() -> str:
    """``compare A B --data lesions``: B (a copy of A said to be trained on 2500 images) read
    with the default 2000, whose test images are among its training images."""
    train = json.loads((tiny_run() / "config.json").read_text())["train"]
    other = run_copy({"train": {**train, "n_images": 2500}})
    line = cli(["compare", tiny_run(), other, "--data", "lesions", "--out", scratch() / "o"])
    return line.replace(str(other), "B").replace("run RUN (B)", "run B (B)")


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
        "An RSNA patient id that is a path, or a column named twice": [
            (0, lambda: _rsna(["../p1,1,2,3,4,1"])),
            (1, lambda: _rsna(["p1,1,2,3,4,1,5"], header="patientId,x,y,width,height,Target,x")),
        ],
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
        "Compared runs scored on images they learned from": [(0, _learned_images)],
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


def cases() -> dict[str, list[tuple[int, Trigger]]]:
    """Every row of this module, by row key."""
    rows: dict[str, list[tuple[int, Trigger]]] = {}
    for group in (
        more_cases,
        last_cases,
        report_cases,
        model_cases,
        export_cases,
        relative_cases,
        section_cases,
        imagenet_cases,
        process_cases,
        resume_cases,
        checkpoint_cases,
        lime_cases,
    ):
        for key, triggers in group().items():
            rows.setdefault(key, []).extend(triggers)
    return rows


def _one_val_image_two_processes() -> str:
    data = annotated_folder({8: "img/6.png,neg,train,2,2,10,10,"})  # one val image is left
    args = ["train", "--data", data, "--arch", "smallcnn", "--image-size", "32"]
    return cli([*args, "--devices", "2", "--out", scratch() / "o"])


def process_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The row of splits too small for the processes."""
    return {"Fewer val/test images than processes": [(0, _one_val_image_two_processes)]}


def _resume_before_balanced_batches() -> str:
    config = json.loads((tiny_run() / "config.json").read_text())
    train = {k: v for k, v in config["train"].items() if k != "balanced_batches"}
    run = run_copy({"train": train}, drop=("balanced_batches",))  # as runs made before the flag
    return cli([*TRAIN, "--epochs", "1", "--out", run, "--resume"])


def resume_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The row of an older run resumed."""
    return {"An older run resumed with balanced batches": [(0, _resume_before_balanced_batches)]}


class Planted:
    """An object whose unpickling would run code (``print``)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("a planted checkpoint ran code",))


def _crafted_checkpoint() -> str:
    import hashlib

    run = run_copy()
    checkpoint = run / "checkpoints" / "phase1" / "last.ckpt"
    torch.save({"state_dict": {}, "planted": Planted()}, checkpoint)
    config = json.loads((run / "config.json").read_text())
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()  # recorded: it passes the SHA
    config["integrity"]["checkpoints/phase1/last.ckpt"]["sha256"] = digest
    (run / "config.json").write_text(json.dumps(config))
    old = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        return cli([*TRAIN, "--epochs", "1", "--out", run, "--resume"])
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = old


def checkpoint_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The row of a crafted checkpoint."""
    return {"A crafted resume checkpoint": [(1, _crafted_checkpoint)]}


@functools.cache
def bla_run() -> Path:
    """A BLA-T run of ResNet18 on 40 lesions images of 32 px (its BLA map: one cell)."""
    out = scratch() / "runs" / "bla"
    args = ["train", "--data", "lesions", "--arch", "resnet18", "--model", "bla-t", "--lap"]
    args += ["none", "--n-images", "40", "--image-size", "32", "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"the BLA run failed: {result.output}")
    return out


def _evaluate_bla(*more: object) -> str:
    return evaluate(bla_run(), "--methods", "bla", *more)


def lime_cases() -> dict[str, list[tuple[int, Trigger]]]:
    """The rows of paper 002's LIME check, on a BLA run."""
    return {
        "A BLA map of one cell in the LIME check": [(0, _evaluate_bla)],
        "A LIME baseline that is not one": [
            (0, lambda: _evaluate_bla("--lime-baseline", tiny_run()))
        ],
        "Bad LIME options": [
            (3, lambda: _evaluate_bla("--lime-option", "kernel=1")),
            (4, lambda: _evaluate_bla("--lime-option", "n_samples=0")),
        ],
    }
