"""The backbones of the model families: how the classifier network itself is built.

``smallcnn``/``smallcnn-gn`` (:class:`~torchlap.models.wrapping.SmallCNN`), every other name
through :func:`~torchlap.models.build_model` (torchvision/timm), each with LAP layers put in by
:func:`~torchlap.lapify` when ``lap`` asks for them; the record of each (its ``"builder"``)
and the inverse, :func:`rebuild_backbone`. The families (:mod:`torchlap.models.recipes`) add
their peers on top.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from torchlap.models.bcos import build_bcos
from torchlap.models.build import (
    apply_lapify_config,
    build_model,
    check_pretrained_name,
    lapify_lap,
    load_pretrained_file,
)
from torchlap.models.build import model_from_config as _model_from_config
from torchlap.models.presets import PRESETS
from torchlap.models.records import model_record, set_model_record
from torchlap.models.wrapping import SmallCNN

__all__ = [
    "BCOS_BUILDER",
    "PLAIN_BUILDERS",
    "SMALL_ARCHS",
    "ModelSpec",
    "build_backbone",
    "check_pretrained",
    "json_copy",
    "lap_sites",
    "rebuild_backbone",
]

SMALL_ARCHS = {"smallcnn": "batch", "smallcnn-gn": "group"}
_SMALL_BUILDER = "torchlap.train.SmallCNN"  # (the name config.json has always recorded)
_TORCHVISION_BUILDER = "torchlap.models.build_model"
BCOS_BUILDER = "torchlap.models.bcos"
#: the builders of networks without a peer of their own (LAP or vanilla)
PLAIN_BUILDERS = (_SMALL_BUILDER, _TORCHVISION_BUILDER)


def json_copy(value: Any) -> Any:
    """``value`` through JSON (as config.json will hold it)."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class ModelSpec:
    """What a family's network is built from (the data gives the classes and channels).

    ``pretrained`` is the ``--pretrained`` value as the record keeps it; ``pretrained_file``,
    when given, is what is loaded for it (a run folder resolved to its weights file by the
    caller, :func:`torchlap.runs.pretrained_weights`: ``models`` does not know a run's files).
    """

    arch: str
    num_classes: int
    in_channels: int
    lap: str = "none"
    n_concepts: int = 1
    pretrained: str | None = None
    image_size: int | None = None
    lap_options: dict[str, Any] = field(default_factory=dict)
    pretrained_file: str | None = None

    @property
    def weights_source(self) -> str | None:
        """What to load: ``pretrained_file``, else ``pretrained`` (a weights name or a file)."""
        return self.pretrained if self.pretrained_file is None else self.pretrained_file


def lap_sites(lap: str) -> str | list[str]:
    """``--lap`` as :func:`lapify`'s ``where``: a word or preset, or a comma list of modules."""
    known = ("auto", "global", "none", *PRESETS)
    if not isinstance(lap, str) or (lap not in known and "," not in lap):
        raise ValueError(
            f"unknown lap={lap!r}: expected 'auto', 'global', 'none', a preset "
            f"{sorted(PRESETS)} or a comma list of module names"
        )
    return lap if lap in known else [n.strip() for n in lap.split(",")]


def _looks_like_path(value: str) -> bool:
    """Whether a ``--pretrained`` value is meant as a path (a suffix or a separator), not a
    weights name."""
    return bool(Path(value).suffix) or "/" in value or os.sep in value


def _no_published_weights(arch: str, pretrained: object) -> str:
    return (
        f"--pretrained {pretrained!r}: {arch!r} has no published weights; pass a torchlap run "
        "folder or a .safetensors file of the same architecture"
    )


def check_pretrained(arch: str, pretrained: object) -> None:
    """``--pretrained`` checked before any data is read or model built: a torchvision weights
    name ``arch`` lacks (:func:`check_pretrained_name`), or a name (not a path, nothing there)
    for torchlap's small CNNs, which have no published weights."""
    check_pretrained_name(arch, pretrained)
    if (
        arch in SMALL_ARCHS
        and isinstance(pretrained, str)
        and not _looks_like_path(pretrained)
        and not Path(pretrained).exists()
    ):
        raise ValueError(_no_published_weights(arch, pretrained))


def _build_small(spec: ModelSpec) -> tuple[nn.Module, dict[str, Any]]:
    """``smallcnn``/``smallcnn-gn``: :class:`SmallCNN`, LAP put in by :func:`lapify`."""
    where = lap_sites(spec.lap)
    net: nn.Module = SmallCNN(spec.num_classes, spec.in_channels, norm=SMALL_ARCHS[spec.arch])
    calls: list[dict[str, Any]] = []
    if str(spec.lap).lower() != "none":
        lapify_lap(net, where, spec.lap, n_concepts=spec.n_concepts, **spec.lap_options)
        calls = json_copy(model_record(net)["lapify"])  # lapify's record of its calls
    source = spec.weights_source
    if source is not None:
        if not Path(source).exists():
            if _looks_like_path(source):
                raise FileNotFoundError(
                    f"--pretrained {spec.pretrained!r}: no such file or folder "
                    f"({Path(source).absolute()}); pass a torchlap run folder or a "
                    ".safetensors file of the same architecture"
                )
            raise ValueError(_no_published_weights(spec.arch, spec.pretrained))
        load_pretrained_file(net, source, spec.in_channels)
    record = {
        "builder": _SMALL_BUILDER,
        "arch": spec.arch,
        "num_classes": spec.num_classes,
        "in_channels": spec.in_channels,
        "lap": spec.lap,
        "lapify": calls,
        "pretrained": spec.pretrained,
    }
    return net, record


def _build_torchvision(spec: ModelSpec) -> tuple[nn.Module, dict[str, Any]]:
    """Every other ``arch``: :func:`build_model`, whose record it writes on the model."""
    net = build_model(
        spec.arch,
        spec.num_classes,
        in_channels=spec.in_channels,
        lap=lap_sites(spec.lap),
        n_concepts=spec.n_concepts,
        pretrained=spec.weights_source,
        **spec.lap_options,
    )
    if spec.pretrained_file is not None:  # the record names what was asked for (a run folder)
        set_model_record(net, {**model_record(net), "pretrained": spec.pretrained})
    return net, {"builder": _TORCHVISION_BUILDER, **json_copy(model_record(net))}


def build_backbone(spec: ModelSpec) -> tuple[nn.Module, dict[str, Any]]:
    """The network ``spec`` describes (LAP layers in) and its record."""
    if spec.arch in SMALL_ARCHS:
        return _build_small(spec)
    return _build_torchvision(spec)


def rebuild_backbone(record: dict[str, Any]) -> nn.Module:
    """The untrained backbone of a ``"model"`` record (peers not added)."""
    builder = record.get("builder")
    if builder == _SMALL_BUILDER:
        arch = record.get("arch")
        if not isinstance(arch, str) or arch not in SMALL_ARCHS:  # (a list is unhashable)
            raise ValueError(
                f"config.json: the model record's builder is {_SMALL_BUILDER!r} but its arch "
                f"{arch!r} is none of that builder's ({', '.join(SMALL_ARCHS)}); "
                "the file was edited: restore the arch the run was trained with"
            )
        _check_record_keys(record, ("num_classes", "in_channels"))
        net = SmallCNN(
            record["num_classes"], record["in_channels"], norm=SMALL_ARCHS[record["arch"]]
        )
        return apply_lapify_config(net, record.get("lapify", []))
    if builder == BCOS_BUILDER:
        # records written before the norm option existed used the package's position norm
        norm = record.get("norm", "position")
        _check_record_keys(record, ("arch", "num_classes", "in_channels"))
        return build_bcos(record["arch"], record["num_classes"], record["in_channels"], norm)
    if builder == _TORCHVISION_BUILDER:
        fields = {k: v for k, v in record.items() if k not in ("builder", "blaify", "antehoc")}
        return _torchvision_from_record(fields)
    raise ValueError(f"config.json names an unknown model builder {builder!r}")


def _check_record_keys(record: dict[str, Any], keys: tuple[str, ...]) -> None:
    """ValueError naming the ``keys`` a model record lacks (each a key torchlap train writes)."""
    if missing := [key for key in keys if key not in record]:
        raise ValueError(
            f"config.json: the model record lacks {', '.join(missing)} (torchlap train records "
            f"{', '.join(keys)}); the file was edited: restore them"
        )


def _torchvision_from_record(fields: dict[str, Any]) -> nn.Module:
    """The torchvision network of a ``"model"`` record; its ``arch_kwargs`` (keyword
    arguments of the torchvision constructor, or null) checked to be that, naming the key."""
    kwargs = fields.get("arch_kwargs")
    accepted = "a dict of keyword arguments of the torchvision constructor (or null)"
    if kwargs is not None and not (
        isinstance(kwargs, dict) and all(isinstance(key, str) for key in kwargs)
    ):
        raise ValueError(
            f"config.json: the model record's arch_kwargs must be {accepted}, got {kwargs!r}; "
            "the file was edited: restore it"
        )
    try:
        return _model_from_config(fields)
    except TypeError as error:
        if not kwargs or "keyword argument" not in str(error):
            raise
        raise ValueError(
            f"config.json: the model record's arch_kwargs {kwargs!r} are not all keyword "
            f"arguments of torchvision's {fields.get('arch')!r}; arch_kwargs must be {accepted}: "
            "restore them"
        ) from None
