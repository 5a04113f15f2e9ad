"""Valid arguments of the training configuration, the dataset loaders and writers and the model
builder for the API fuzzer (``api_fuzz``); files live in fresh temporary folders."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from api_fuzz import Spec

import torchlap
from torchlap import data, io, models, runs
from torchlap.train import PhaseConfig, TrainConfig, set_trainable


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="api_fuzz_"))


def train_config(
    epochs: int = 1,
    lr: float = 1e-3,
    image_size: int = 32,
    batch_size: int = 16,
    n_images: int | None = 40,
    min_ar: float = 0.1,
    max_ar: float = 0.5,
    iar: float = 0.1,
    seed: int = 0,
    num_workers: int = 0,
    optimizer: str = "adam",
    schedule: str = "cosine",
    supervision: str = "weak",
    keep_epoch: str = "best",
    shuffle_labels: bool = False,
    use_discriminative: bool = True,
) -> TrainConfig:
    """A :class:`TrainConfig` of the tiny run, validated (the fields a user sets most)."""
    config = TrainConfig(
        data="lesions", out=str(_folder() / "run"), arch="smallcnn", epochs=epochs, lr=lr,
        image_size=image_size, batch_size=batch_size, n_images=n_images, min_ar=min_ar,
        max_ar=max_ar, iar=iar, seed=seed, num_workers=num_workers, optimizer=optimizer,
        schedule=schedule, supervision=supervision, keep_epoch=keep_epoch,
        shuffle_labels=shuffle_labels, use_discriminative=use_discriminative,
    )  # fmt: skip
    config.validate()
    return config


def _records() -> list[data.ImageRecord]:
    return [
        data.ImageRecord("a.png", "cat", "train", [(1.0, 2.0, 5.0, 6.0)]),
        data.ImageRecord("b.png", "dog", "val"),
    ]


def _lapified() -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = torchlap.lapify(models.SmallCNN(num_classes=3, width=4))
    return model


def write_annotations(path: str, *, regions: bool = True, overwrite: bool = False) -> Any:
    """:func:`torchlap.data.write_annotations` of two records."""
    return data.write_annotations(path, _records(), regions=regions, overwrite=overwrite)


def _written() -> str:
    path = _folder() / "file.txt"
    path.write_text("torchlap\n")
    return str(path)


SPECS = [
    Spec(
        "TrainConfig",
        train_config,
        lambda: {
            "epochs": 1,
            "lr": 1e-3,
            "image_size": 32,
            "batch_size": 16,
            "n_images": 40,
            "min_ar": 0.1,
            "max_ar": 0.5,
            "iar": 0.1,
            "seed": 0,
            "num_workers": 0,
            "optimizer": "adam",
            "schedule": "cosine",
            "supervision": "weak",
            "keep_epoch": "best",
            "shuffle_labels": False,
            "use_discriminative": True,
        },
        positives=(
            "epochs",
            "lr",
            "image_size",
            "batch_size",
            "n_images",
            "min_ar",
            "max_ar",
            "iar",
        ),
        choices=("optimizer", "schedule", "supervision", "keep_epoch"),
    ),
    Spec(
        "write_annotations",
        write_annotations,
        lambda: {"path": str(_folder() / "annotations.csv"), "regions": True, "overwrite": False},
        writes="path",
    ),
    Spec(
        "load_dataset",
        data.load_dataset,
        lambda: {
            "name_or_path": "lesions",
            "split": "val",
            "image_size": 32,
            "n_images": 20,
            "seed": 0,
        },
        positives=("image_size", "n_images"),
        choices=("split", "name_or_path"),
        names={"name_or_path": "dataset"},
    ),
    Spec(
        "set_trainable",
        set_trainable,
        lambda: {"model": _lapified(), "phase": PhaseConfig(1, train="lap")},
    ),
    Spec(
        "build_model",
        models.build_model,
        lambda: {
            "arch": "resnet18",
            "num_classes": 3,
            "in_channels": 3,
            "lap": "auto",
            "n_concepts": 1,
            "hidden_channels": 4,
            "aggregation": "max",
            "alpha": 1.0,
            "eps": 1e-6,
            "head_hidden": "shared",
            "arch_kwargs": {"zero_init_residual": False},
        },
        positives=("num_classes", "in_channels", "n_concepts", "eps"),
        choices=("arch", "lap", "aggregation", "head_hidden"),
        keywords=("arch_kwargs",),
        slow=True,
    ),
    Spec(
        "export_builtin",
        data.export_builtin,
        lambda: {
            "name": "lesions",
            "out": str(_folder() / "exported"),
            "n_images": 20,
            "image_size": 32,
        },
        writes="out",
        positives=("n_images", "image_size"),
        choices=("name",),
        names={"name": "dataset"},
        slow=True,
    ),
    Spec("is_run_config", runs.is_run_config, lambda: {"path": _written()}),
    Spec(
        "pretrained_weights",
        runs.pretrained_weights,
        lambda: {"pretrained": "DEFAULT"},
        names={"pretrained": "pretrained"},
    ),
    Spec("not_a_file", io.not_a_file, lambda: {"path": _written()}),
    Spec("is_stale_temp", io.is_stale_temp, lambda: {"path": _written()}),
    Spec(
        "clean_stale_temps",
        io.clean_stale_temps,
        lambda: {"folder": str(_folder()), "recursive": True},
    ),
    Spec(
        "atomic_write",
        io.atomic_write,
        lambda: {"path": str(_folder() / "out.txt"), "data": "text", "replace": True},
        writes="path",
    ),
]
