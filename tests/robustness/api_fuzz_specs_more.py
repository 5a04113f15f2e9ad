"""Valid arguments of the file helpers (:mod:`torchlap.io`, images, annotations, run
folders), the explanation pools and the remaining model and data builders, for the API fuzzer
(``api_fuzz``). Files live in fresh temporary folders, one per call of ``args``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from api_fuzz import Spec, counted
from PIL import Image
from torch import Tensor

import torchlap
from torchlap import data, io, models, report
from torchlap.export import LapExportModule, output_names


def _g(*shape: int) -> Tensor:
    """A seeded random tensor (uniform in [0, 1))."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="api_fuzz_"))


def _png() -> str:
    path = _folder() / "image.png"
    Image.new("RGB", (12, 10), (200, 30, 90)).save(path)
    return str(path)


def _text_file() -> str:
    path = _folder() / "file.txt"
    path.write_text("torchlap\n")
    return str(path)


def _csv() -> str:
    path = _folder() / "annotations.csv"
    path.write_text("image,label\na.png,cat\nb.png,dog\n")
    return str(path)


def _bla_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = torchlap.blaify(models.SmallCNN(num_classes=3, width=4))
    model.eval()(_g(2, 3, 16, 16))
    return counted(model)


def _export_module() -> LapExportModule:
    torch.manual_seed(0)
    model, _ = torchlap.lapify(models.SmallCNN(num_classes=3, width=4))
    return LapExportModule(model.eval())


def _overlays_path() -> str:
    return str(_folder() / "overlays.png")


_LABEL = "a word of the messages only (the caller's name of the option), never parsed"
_NULL = "None is JSON (null)"

SPECS = [
    Spec(
        "load_image",
        data.load_image,
        lambda: {"path": _png(), "channels": 3, "image_size": 16},
        paths=("path",),
        positives=("image_size",),
    ),
    Spec(
        "read_annotations", data.read_annotations, lambda: {"csv_path": _csv()}, paths=("csv_path",)
    ),
    Spec("sha256_file", io.sha256_file, lambda: {"path": _text_file()}, paths=("path",)),
    Spec(
        "read_file",
        io.read_file,
        lambda: {"path": _text_file(), "what": "the file"},
        paths=("path",),
        fixed=frozenset({"what"}),  # (a word of the message only)
    ),
    Spec(
        "PinnedPath",
        io.PinnedPath,
        lambda: {"path": _text_file(), "sha256": "0123456789abcdef" * 4},
    ),
    Spec(
        "atomic_write_json",
        io.atomic_write_json,
        lambda: {"path": str(_folder() / "out.json"), "data": {"a": 1.5}, "allow_nan": False},
        writes="path",
        allow={"data": {"none": _NULL}},
    ),
    Spec(
        "check_folder_path",
        io.check_folder_path,
        lambda: {"path": str(_folder() / "out"), "option": "--out"},
        names={"path": "--out"},
        allow={"option": {"none": _LABEL, "int": _LABEL}},
    ),
    Spec(
        "BoundedLogitAttention",
        models.BoundedLogitAttention,
        lambda: {
            "in_channels": 4,
            "theta": 0.1,
            "threshold": False,
            "gamma_factor": 1.0,
            "eval_path": "hard",
            "init": "glorot",
            "pool": "sum",
        },
        positives=("in_channels", "theta", "gamma_factor"),
        choices=("eval_path", "init", "pool"),
    ),
    Spec(
        "L2XFeatureSelection",
        models.L2XFeatureSelection,
        lambda: {
            "in_channels": 4,
            "k": 2,
            "tau": 10.0,
            "eval_path": "hard",
            "init": "glorot",
            "pool": "sum",
        },
        positives=("in_channels", "k", "tau"),
        choices=("eval_path", "init", "pool"),
    ),
    Spec(
        "WeightNetwork",
        models.WeightNetwork,
        lambda: {"eta": 2, "channels": (4, 8)},
        positives=("eta",),
    ),
    Spec(
        "AnteHocModel",
        models.AnteHocModel,
        lambda: {
            "backbone": models.SmallCNN(num_classes=3, width=4),
            "eta": 2,
            "autoencoder_channels": (4, 8),
        },
        positives=("eta",),
    ),
    Spec(
        "NormalizedClassifier",
        models.NormalizedClassifier,
        lambda: {
            "net": models.SmallCNN(num_classes=3, width=4),
            "mean": [0.5, 0.5, 0.5],
            "std": [0.2, 0.2, 0.2],
        },
    ),
    Spec(
        "LapConv2d",
        models.LapConv2d,
        lambda: {
            "in_channels": 3,
            "out_channels": 4,
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "dilation": 1,
            "groups": 1,
            "bias": True,
            "padding_mode": "zeros",
            "lap_options": {"hidden_channels": 4},
        },
        positives=("in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups"),
        choices=("padding_mode",),
        keywords=("lap_options",),
    ),
    Spec("bla_maps", models.bla_maps, lambda: {"model": _bla_model(), "detach": True}),
    Spec("bla_modules", models.bla_modules, lambda: {"model": _bla_model()}),
    Spec("freeze_all_but_bla", models.freeze_all_but_bla, lambda: {"model": _bla_model()}),
    Spec(
        "Digits",
        data.Digits,
        lambda: {
            "split": "train",
            "n_images": 20,
            "image_size": 32,
            "split_fractions": (0.8, 0.1, 0.1),
            "seed": 0,
        },
        positives=("n_images", "image_size"),
        choices=("split",),
    ),
    Spec("output_names", output_names, lambda: {"module": _export_module()}),
    Spec(
        "method_display_name",
        report.method_display_name,
        lambda: {"method": "gradcam", "facts": None},
    ),
    Spec(
        "plot_overlays",
        report.plot_overlays,
        lambda: {
            "images": _g(2, 3, 16, 16),
            "maps_by_method": {"gradcam": _g(2, 16, 16)},
            "masks": _g(2, 16, 16) > 0.5,
            "titles": ["a", "b"],
            "path": _overlays_path(),
            "cmap": "jet",
            "alpha": 0.5,
            "overwrite": False,
        },
        batch=("images", "masks", "maps_by_method"),
        writes="path",
        choices=("cmap",),
        names={"cmap": "colormap"},
        slow=True,
    ),
]
