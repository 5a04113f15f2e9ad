"""What an evaluation was computed on: the data settings a split is read with, the identity of
the data a run was trained on, a fingerprint of the tensors actually evaluated, and the
uninterpretable baseline of paper 002's LIME check.

- :func:`data_settings`: the seed, image count and data options a split of ``data`` is read
  with for a run: the run's own (those it was trained with) when ``data`` is the run's data
  (the same built-in name, or the same folder however spelled: paths are compared resolved),
  else the defaults (split seed 0, the data's own image count, no data options);
- :func:`data_identity` / :func:`common_data_settings`: which runs saw the same images
  (``torchlap compare``);
- :func:`tensor_fingerprint`: a hash of the images, labels and region masks evaluated (the
  per-method cache key; an edited ``annotations.csv`` misses the cache);
- :func:`lime_baseline_of`: the vanilla run of the same architecture and data that a BLA run's
  LIME correlation is computed on (paper 002, section 4.3).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchlap.data import builtin_names
from torchlap.models.recipes import recipe_of_record
from torchlap.runs.facts import image_side

logger = logging.getLogger(__name__)

__all__ = [
    "DataSettings",
    "check_lime_baseline",
    "common_data_settings",
    "data_identity",
    "data_settings",
    "describe_identities",
    "lime_baseline_of",
    "same_data",
    "source_key",
    "tensor_fingerprint",
]


@dataclass(frozen=True)
class DataSettings:
    """How a split is read: the split/generation ``seed``, ``n_images`` (``None``: the data's
    default) and ``data_options`` (keyword arguments of :func:`torchlap.data.load_dataset`).
    ``own``: whether these are the run's own training settings."""

    seed: int = 0
    n_images: int | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    own: bool = False

    def describe(self) -> str:
        """One phrase for logs and notes: ``split seed 0, n_images default, no data options``."""
        images = "default" if self.n_images is None else str(self.n_images)
        options = (
            "data options " + ", ".join(f"{k}={v!r}" for k, v in sorted(self.data_options.items()))
            if self.data_options
            else "no data options"
        )
        return f"split seed {self.seed}, n_images {images}, {options}"

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``results.json["data"]`` records them."""
        return {
            "seed": self.seed,
            "n_images_option": self.n_images,
            "data_options": dict(self.data_options),
            "own_training_settings": self.own,
        }

    def reading(self) -> tuple:
        """What decides the images read (``own`` aside): equal readings read equal images."""
        return (self.seed, self.n_images, tuple(sorted(map(str, self.data_options.items()))))


def source_key(data: str | os.PathLike[str] | None) -> str:
    """A data source in one spelling: a built-in's name, or a folder's resolved path (relative
    paths are read from the current folder, as :func:`torchlap.data.load_dataset` does)."""
    text = "" if data is None else str(data)
    if not text or text in builtin_names():  # load_dataset takes a built-in name first
        return text
    return str(Path(text).expanduser().resolve())


def same_data(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    """Whether ``a`` and ``b`` name the same data (``data`` and ``./data`` and its absolute
    path are one folder)."""
    return bool(a) and bool(b) and source_key(a) == source_key(b)


def data_settings(config: Mapping[str, Any], data: str | os.PathLike[str]) -> DataSettings:
    """The settings of ``data`` for the run of ``config`` (its ``config.json``): the run's own
    seed, image count and data options when ``data`` is the data it was trained on, else the
    defaults (split seed 0)."""
    train = config.get("train", {}) or {}
    if not same_data(data, train.get("data")):
        return DataSettings()
    n_images = train.get("n_images")
    return DataSettings(
        seed=int(train.get("seed", 0) or 0),
        n_images=None if n_images is None else int(n_images),
        data_options=dict(train.get("data_options") or {}),
        own=True,
    )


def data_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What decides which images a run was trained and tested on: its data (one spelling),
    ``n_images``, ``seed``, ``image_size`` (the side: a square pair ``[n, n]`` is ``n``) and
    data options."""
    train = config.get("train", {}) or {}
    return {
        "data": source_key(train.get("data")),
        "n_images": train.get("n_images"),
        "seed": train.get("seed", 0),
        "image_size": image_side(config.get("image_size", train.get("image_size"))),
        "data_options": dict(train.get("data_options") or {}),
    }


def describe_identities(identities: Mapping[str, dict[str, Any]]) -> str:
    """``name: data`` per run, with the settings that differ between runs (``lap: lesions
    n_images=60, other: lesions n_images=40``)."""
    keys = [k for k in ("n_images", "seed", "image_size", "data_options")
            if len({repr(i[k]) for i in identities.values()}) > 1]  # fmt: skip
    shown = []
    for name, identity in identities.items():
        extra = "".join(f" {k}={identity[k]!r}" for k in keys)
        shown.append(f"{name}: {identity['data']}{extra}")
    return ", ".join(shown)


def common_data_settings(
    data: str | os.PathLike[str], configs: Mapping[str, Mapping[str, Any]]
) -> tuple[DataSettings, str | None]:
    """The one setting every run of ``configs`` reads ``data`` with in ``torchlap compare
    --data``, so that all runs are evaluated on the same images: the runs' own when they all
    read ``data`` alike, else the defaults (split seed 0, n_images default, no data options).
    Returns the settings and, when they are not every run's own, a sentence saying so."""
    each = {name: data_settings(config, data) for name, config in configs.items()}
    distinct = {s.reading(): s for s in each.values()}
    sizes = {name: image_side(config.get("image_size")) for name, config in configs.items()}
    size_note = ""
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{n}: {s} px" for n, s in sizes.items())
        size_note = f"; each run reads it at its own image size ({listed})"
    if len(distinct) == 1:
        (settings,) = distinct.values()
        owners = [name for name, each_settings in each.items() if each_settings.own]
        if len(owners) == len(each):
            return settings, (f"evaluated on {data} with {settings.describe()}{size_note}"
                              if size_note else None)  # fmt: skip
        whose = f"the data of {', '.join(owners)}" if owners else "which no run was trained on"
        return settings, f"evaluated on {data}, {whose}, with {settings.describe()}{size_note}"
    chosen = DataSettings()
    own = ", ".join(f"{n}: {s.describe()}" for n, s in each.items())
    return chosen, (
        f"evaluated on {data} with {chosen.describe()} for every run, so that all see the same "
        f"images (the runs read {data} differently: {own}){size_note}"
    )


def tensor_fingerprint(*tensors: Tensor) -> str:
    """A short SHA-256 of the tensors' shapes, dtypes and values (CPU copies, in order)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        cpu = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(cpu.shape)}:{cpu.dtype};".encode())
        digest.update(cpu.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


# -------------------------------------------------------------------------- LIME baseline


def _model_identity(config: Mapping[str, Any]) -> tuple:
    model = config.get("model", {}) or {}
    return (model.get("builder"), model.get("arch"), model.get("in_channels"),
            model.get("num_classes"), tuple(config.get("classes") or ()))  # fmt: skip


def is_vanilla(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a vanilla run (``--model lap --lap none``), real labels."""
    try:
        family = recipe_of_record(config.get("model", {})).name
    except (TypeError, ValueError):
        return False
    return family == "vanilla" and not config.get("shuffle_labels")


def lime_baseline_of(name: str, configs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first vanilla run of ``configs`` with ``name``'s architecture and data (the
    uninterpretable baseline of paper 002, section 4.3), or ``None``."""
    own = configs[name]
    for other, config in configs.items():
        if (
            other != name
            and is_vanilla(config)
            and _model_identity(config) == _model_identity(own)
            and data_identity(config) == data_identity(own)
        ):
            return other
    return None


def check_lime_baseline(bla_config: Mapping[str, Any], baseline: Any, where: str) -> None:
    """Refuse a LIME baseline run (``baseline``: a :class:`~torchlap.runs.LoadedRun`) that is
    not a vanilla run with the BLA run's classes, channels and image size."""
    config = baseline.config
    if not is_vanilla(config):
        raise ValueError(
            f"{where} {baseline.run_dir} is not a vanilla run; paper 002 computes LIME on the "
            "uninterpretable baseline: pass a run trained with --model lap --lap none"
        )
    theirs, ours = _checked_facts(config), _checked_facts(bla_config)
    for key, value in theirs.items():
        if value != ours[key]:
            raise ValueError(
                f"{where} {baseline.run_dir} has {key} {value!r}, the BLA run {ours[key]!r}: "
                "pass a vanilla run of the same data and image size"
            )


def _checked_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a LIME baseline run shares with its BLA run: classes, channels, image side."""
    return {"classes": config.get("classes"), "in_channels": config.get("in_channels"),
            "image_size": image_side(config.get("image_size"))}  # fmt: skip
