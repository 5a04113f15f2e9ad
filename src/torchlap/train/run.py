"""``fit(config)``: one training run, start to end, into a run folder; ``load_run`` reads it back.

Run folder layout::

    RUN_DIR/config.json         what the run is: architecture, lapify settings, classes,
                                normalization, losses, seed and the full TrainConfig
    RUN_DIR/metrics.json        per-epoch train/val metrics, the kept epoch ("selected_epoch"),
                                final test metrics (of the kept epoch's weights)
    RUN_DIR/model.safetensors   the weights of the NormalizedClassifier at the kept epoch (the
                                best validation epoch by default; written at the end)
    RUN_DIR/checkpoints/phaseN/last.ckpt   Lightning checkpoints, for --resume only

``load_run`` needs only ``config.json`` and ``model.safetensors``: JSON and safetensors, no
pickle, so a run folder from anyone is safe to load. The Lightning checkpoints are pickles
(``torch.load`` with ``weights_only=False``): use them only to resume runs you made yourself.

Every file of the folder is written atomically (a temporary file in the same folder, then
``os.replace``), so a killed run never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchlap.runs import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    RUN_FILES,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    WEIGHTS_FILE,
    LoadedRun,
    RunFolderError,
    atomic_write,
    atomic_write_json,
    check_integrity,
    clean_stale_temps,
    is_run_config,
    load_run,
    read_run_config,
    record_integrity,
)
from torchlap.train.config import TrainConfig
from torchlap.train.wrapping import NormalizedClassifier, SmallCNN

__all__ = [
    "RUN_FORMAT",
    "LoadedRun",
    "RunFolderError",
    "atomic_write_bytes",
    "atomic_write_json",
    "build_classifier",
    "fit",
    "load_run",
    "rebuild_model",
]

logger = logging.getLogger(__name__)

SMALL_ARCHS = {"smallcnn": "batch", "smallcnn-gn": "group"}
_ARTEFACTS = RUN_FILES


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (kept name; see :func:`torchlap.runs.atomic_write`)."""
    atomic_write(path, data)


def _atomic_save_safetensors(
    path: Path, state: dict[str, torch.Tensor], meta: dict, run_dir: Path | None = None
) -> str:
    """Write the weights atomically; returns their SHA-256. With ``run_dir``, the digest is
    recorded in its config.json first (a kill in between leaves the old weights valid)."""
    import hashlib

    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    data = save(tensors, metadata={k: str(v) for k, v in meta.items()})
    digest = hashlib.sha256(data).hexdigest()
    if run_dir is not None:
        record_integrity(run_dir, path, digest)
    atomic_write(path, data)
    return digest


# ------------------------------------------------------------------------------------------
# model building
def _default_n_concepts(n_classes: int) -> int:
    """One concept present in the positive class for two classes, one per class otherwise."""
    return 1 if n_classes == 2 else n_classes


def paper_loss_weights(
    n_layers: int,
    supervision: str,
    concept_weight: float | None = None,
    concordance_weight: float | None = None,
) -> dict[str, float]:
    """Loss weights of paper 000, Appendix A, for ``InjectionLoss`` (which weights the means).

    The paper weighs cross-entropy 1, the concept-discrimination (or expert) loss 0.25 per LAP
    layer and, for weak supervision, the concordance 0.25 per pair of consecutive layers (none
    for expert supervision: :func:`torchlap.losses.default_weights`). ``InjectionLoss``
    averages each term over layers (pairs), so the weight of a mean is the per-layer (per-pair)
    weight x layers (pairs). The discriminative scorer's term only trains that module (its
    input is detached); it gets the discrimination weight. ``concept_weight`` /
    ``concordance_weight`` replace the per-layer / per-pair weights (the ImageNet preset's
    0.125, ``--concordance-weight``). ``supervision="none"`` trains with cross-entropy alone.
    """
    from torchlap.losses import default_weights

    per_layer = default_weights(supervision)
    if concept_weight is not None:
        for name in ("discrimination", "discriminative", "expert"):
            per_layer[name] = float(concept_weight)
    if concordance_weight is not None:
        per_layer["concordance"] = float(concordance_weight)
    pairs = max(n_layers - 1, 0)
    return {
        name: value * (pairs if name == "concordance" else n_layers)
        for name, value in per_layer.items()
    }


def build_classifier(
    arch: str,
    num_classes: int,
    in_channels: int,
    lap: str,
    n_concepts: int,
    pretrained: str | None = None,
    model: str = "lap",
    image_size: int | None = None,
    lap_options: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier (without normalization) and the JSON record that rebuilds it.

    ``lap_options``: ``hidden_channels``, ``aggregation``, ``alpha`` of every LAP layer (see
    :meth:`TrainConfig.lap_options`; absent keys take :func:`torchlap.lapify`'s defaults).

    ``smallcnn``/``smallcnn-gn`` are built here (:class:`SmallCNN`, LAP put in by
    :func:`torchlap.lapify`); every other name goes to :func:`torchlap.models.build_model`,
    whose ``model.torchlap_config`` is the record. ``model`` (see
    :class:`~torchlap.train.TrainConfig`) other than ``"lap"`` builds the vanilla network
    (``lap`` must be ``"none"`` or ``"auto"``, then ignored) and adds a peer, see
    :func:`_add_peer`; ``image_size`` is the input side BLA's channel probe uses.
    """
    from torchlap.models import PRESETS
    from torchlap.train.config import MODELS

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if model != "lap":
        if str(lap).lower() not in ("auto", "none"):
            raise ValueError(
                f"model {model!r} builds a network without LAP layers; lap must be 'none', "
                f"got {lap!r}"
            )
        lap = "none"
    known = ("auto", "global", "none", *PRESETS)
    if not isinstance(lap, str) or (lap not in known and "," not in lap):
        raise ValueError(
            f"unknown lap={lap!r}: expected 'auto', 'global', 'none', a preset "
            f"{sorted(PRESETS)} or a comma list of module names"
        )
    where: str | list[str] = lap if lap in known else [n.strip() for n in lap.split(",")]
    if model == "bcos":
        return _build_bcos(arch, num_classes, in_channels, pretrained)
    if arch in SMALL_ARCHS:
        net: nn.Module = SmallCNN(num_classes, in_channels, norm=SMALL_ARCHS[arch])
        calls: list[dict[str, Any]] = []
        if str(lap).lower() != "none":
            from torchlap.models import lapify

            lapify(net, where=where, n_concepts=n_concepts, **(lap_options or {}))
            calls = json.loads(json.dumps(net.torchlap_config["lapify"]))
        if pretrained is not None:
            from torchlap.models.build import load_pretrained_file

            if not Path(pretrained).exists():
                raise ValueError(
                    f"--pretrained {pretrained!r}: {arch!r} has no published weights; pass a "
                    "torchlap run folder or a .safetensors file of the same architecture"
                )
            load_pretrained_file(net, pretrained, in_channels)
        record = {
            "builder": "torchlap.train.SmallCNN",
            "arch": arch,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "lap": lap,
            "lapify": calls,
            "pretrained": pretrained,
        }
        return _add_peer(net, record, model, image_size)
    from torchlap.models import build_model

    net = build_model(
        arch,
        num_classes,
        in_channels=in_channels,
        lap=where,
        n_concepts=n_concepts,
        pretrained=pretrained,
        **(lap_options or {}),
    )
    record = getattr(net, "torchlap_config", None)
    if not isinstance(record, dict):
        raise TypeError(f"build_model({arch!r}) returned a model without a torchlap_config dict")
    record = {"builder": "torchlap.models.build_model", **json.loads(json.dumps(record))}
    return _add_peer(net, record, model, image_size)


def _build_bcos(
    arch: str, num_classes: int, in_channels: int, pretrained: str | None
) -> tuple[nn.Module, dict[str, Any]]:
    """A B-cos network of the ``bcos`` package (``--model bcos``) and its record."""
    from torchlap.models.bcos import build_bcos

    if pretrained is not None:
        raise ValueError(
            "--model bcos trains from scratch here: torchlap does not load B-cos weights "
            "(--pretrained is not supported with it)"
        )
    net = build_bcos(arch, num_classes, in_channels)
    return net, {"builder": "torchlap.models.bcos", **net.torchlap_config}


def antehoc_eta(net: nn.Module) -> int:
    """The number of soft attention maps of ``--model antehoc``: paper 004's 8, or every
    convolution of a network with fewer (SmallCNN has 3)."""
    n_convs = sum(1 for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and name)
    if n_convs == 0:
        raise ValueError("--model antehoc needs a network with nn.Conv2d layers; found none")
    return min(8, n_convs)


def _add_peer(
    net: nn.Module, record: dict[str, Any], model: str, image_size: int | None
) -> tuple[nn.Module, dict[str, Any]]:
    """Add ``model``'s peer module to the vanilla ``net``; record how in ``record``.

    BLA family (paper 002): :func:`torchlap.models.blaify` (``init="glorot"``) in place of the
    global pool, its JSON entry recorded under ``"blaify"`` (BLA-PH: everything but BLA is
    frozen by ``blaify``). Ante-hoc (paper 004): the network wrapped in an ``AnteHocModel`` with
    :func:`antehoc_eta` layers, its layers recorded under ``"antehoc"``.
    """
    if model in ("bla", "bla-t", "bla-ph", "l2x-f"):
        from torchlap.models import blaify

        # Glorot-uniform scorer, as the paper initialises new parameters (section 4.2); the
        # default zero scorer gives logits exactly 0, where min(g, 0) has zero gradient
        # (torch's clamp), so the scorer would never learn from scratch
        # L2X-F keeps the paper's share of positions (8 of 7x7) on this input size's map
        extra: dict[str, Any] = {"k": "auto"} if model == "l2x-f" else {}
        blaify(net, variant=model, input_size=image_size, init="glorot", **extra)
        record["blaify"] = json.loads(json.dumps(net.torchlap_config["blaify"]))
    elif model == "antehoc":
        from torchlap.models.antehoc import AnteHocModel

        net = AnteHocModel(net, eta=antehoc_eta(net))
        record["antehoc"] = json.loads(json.dumps(net.torchlap_config["antehoc"]))
    return net, record


def rebuild_model(run_config: dict[str, Any]) -> NormalizedClassifier:
    """The untrained model a run's ``config.json`` describes (weights not loaded)."""
    record = dict(run_config["model"])
    builder = record.pop("builder", None)
    bla_entry = record.pop("blaify", None)
    antehoc_entry = record.pop("antehoc", None)
    if builder == "torchlap.train.SmallCNN":
        from torchlap.models import apply_lapify_config

        if record.get("arch") not in SMALL_ARCHS:
            raise ValueError(f"config.json names an unknown small architecture {record!r}")
        net = SmallCNN(
            record["num_classes"], record["in_channels"], norm=SMALL_ARCHS[record["arch"]]
        )
        apply_lapify_config(net, record.get("lapify", []))
    elif builder == "torchlap.models.bcos":
        from torchlap.models.bcos import build_bcos

        net = build_bcos(record["arch"], record["num_classes"], record["in_channels"])
    elif builder == "torchlap.models.build_model":
        from torchlap.models import model_from_config

        net = model_from_config(record)
    else:
        raise ValueError(f"config.json names an unknown model builder {builder!r}")
    if bla_entry is not None:
        from torchlap.models import apply_blaify_config

        apply_blaify_config(net, bla_entry)
    if antehoc_entry is not None:
        from torchlap.models.antehoc import AnteHocModel

        net = AnteHocModel(
            net,
            layer_names=antehoc_entry["layer_names"],
            autoencoder_channels=antehoc_entry["autoencoder_channels"],
        )
    if run_config.get("discriminative_scorers"):
        from torchlap.losses import enable_discriminative_scorers

        enable_discriminative_scorers(net)
    return NormalizedClassifier(net, run_config["mean"], run_config["std"])


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    """Kept name of :func:`torchlap.runs.read_run_config`."""
    return read_run_config(run_dir)


# ------------------------------------------------------------------------------------------
# data
def _load_splits(config: TrainConfig) -> dict[str, Any]:
    from torchlap.data import load_dataset

    datasets = {}
    for split in ("train", "val", "test"):
        kwargs = dict(config.data_options)
        if config.n_images is not None:
            kwargs["n_images"] = config.n_images
        datasets[split] = load_dataset(
            config.data, split=split, image_size=config.image_size, seed=config.seed, **kwargs
        )
        if len(datasets[split]) == 0:
            raise ValueError(f"the {split} split of {config.data!r} is empty")
    if config.shuffle_labels:  # data randomization test: permuted training labels only
        from torchlap.train.shuffled import ShuffledLabels

        datasets["train"] = ShuffledLabels(datasets["train"], seed=config.seed)
    classes = list(datasets["train"].classes)
    for split in ("val", "test"):
        if list(datasets[split].classes) != classes:
            raise ValueError(
                f"the {split} split of {config.data!r} has classes {datasets[split].classes}, "
                f"the train split {classes}"
            )
    return datasets


def _has_regions(dataset: Any) -> bool:
    """Whether any sample of ``dataset`` carries a known region (boxes or a mask)."""
    from torchlap.data import SyntheticBenchmark

    if isinstance(dataset, SyntheticBenchmark):
        return True  # the built-in benchmarks all have exact regions
    flag = getattr(dataset, "has_regions", None)  # annotated and image folders say it
    if isinstance(flag, bool):
        return flag
    # no summary attribute: look at the samples (a generic dataset only gives whole samples)
    return any(bool(dataset[i]["has_region"]) for i in range(len(dataset)))


def _loader_factory(
    datasets: dict[str, Any], config: TrainConfig, pin_memory: bool
) -> Callable[..., Any]:
    from torch.utils.data import DataLoader

    from torchlap.data import collate_regions
    from torchlap.train.sampling import EpochOrderSampler, ResumableBatchSampler, SeededItems

    wrapped = {split: SeededItems(ds) for split, ds in datasets.items()}

    def make_loader(split: str, phase: int, rank: int, world_size: int, skip: int) -> Any:
        if config.batch_size % world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} is the global batch; it must be divisible "
                f"by the number of processes ({world_size})"
            )
        per_rank = config.batch_size // world_size
        train = split == "train"
        sampler = EpochOrderSampler(
            len(wrapped[split]),
            config.seed,
            phase if train else 0,
            shuffle=True,
            rank=rank,
            world_size=world_size,
            follow_epoch=train,
        )
        # a last training batch of one sample would break batch norm: drop it
        drop_last = train and len(sampler) % per_rank == 1
        batches = ResumableBatchSampler(sampler, per_rank, drop_last=drop_last)
        if skip:
            batches.skip_batches(skip)
        return DataLoader(
            wrapped[split],
            batch_sampler=batches,
            num_workers=config.num_workers,
            collate_fn=collate_regions,
            pin_memory=pin_memory,
            persistent_workers=False,
        )

    return make_loader


# ------------------------------------------------------------------------------------------
# run folder
def _is_global_zero() -> bool:
    """Rank zero before any Trainer exists (Lightning's launchers set these variables)."""
    for name in ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def _prepare_folder(out: Path, config: TrainConfig, apply: bool) -> None:
    """Refuse a folder holding another run (unless overwrite); with ``apply``, clear the old
    run's files for an overwrite (other files in the folder are left alone)."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} exists and is not a folder; pass a folder path")
    config_path = out / CONFIG_FILE
    ours = config_path.is_file() and is_run_config(config_path)
    if config_path.is_file() and not ours:
        raise RunFolderError(
            f"--out {out} holds a {CONFIG_FILE} that torchlap train did not write; torchlap "
            "never replaces files it did not write: choose another (empty or new) folder"
        )
    if config.resume:
        if not config_path.is_file():
            raise RunFolderError(f"--resume: {out} holds no run (no config.json) to resume")
        stored = _read_run_config(out)
        old = TrainConfig.from_dict(stored["train"]).identity()
        new = config.identity()
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new.get(k))
            raise RunFolderError(
                f"--resume: the run in {out} was made with other settings (differing: {diff}); "
                "resume it with its own settings"
            )
        if apply:
            clean_stale_temps(out)
        # a damaged checkpoint is named now, before anything is written or loaded
        checkpoints = sorted(
            (out / CHECKPOINTS_DIR).glob("phase*/last.ckpt"),
            key=lambda p: int(p.parent.name[5:]) if p.parent.name[5:].isdigit() else 0,
        )
        for checkpoint in checkpoints[-1:]:
            check_integrity(out, checkpoint)
        return
    if not out.exists():
        return
    if apply:
        clean_stale_temps(out)
    present = [name for name in _ARTEFACTS if (out / name).exists()]
    others = [p.name for p in out.iterdir() if p.name not in _ARTEFACTS]
    if present and not ours:
        # metrics.json, model.safetensors or checkpoints/ without torchlap's config.json:
        # not a run torchlap can vouch for, so not torchlap's to replace
        raise RunFolderError(
            f"--out {out} holds {sorted(present)} but no {CONFIG_FILE} written by torchlap "
            "train, so torchlap did not write them and will not replace them; choose another "
            "(empty or new) folder"
        )
    if config.overwrite:
        if apply and present:
            logger.warning(
                "--overwrite: replacing the run in %s (%s)", out, ", ".join(sorted(present))
            )
        for name in present if apply else ():
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
        return
    if ours:
        try:
            stored = _read_run_config(out)
            old = TrainConfig.from_dict(stored["train"]).identity()
        except (ValueError, TypeError, KeyError) as error:
            raise RunFolderError(
                f"--out {out}: its {CONFIG_FILE} cannot be read ({error}); pass --overwrite to "
                "replace that run or choose another folder"
            ) from None
        started = [n for n in (METRICS_FILE, WEIGHTS_FILE, CHECKPOINTS_DIR) if (out / n).exists()]
        if old == config.identity() and not started:
            # a run of these settings that stopped before its first epoch (e.g. a failed
            # multi-process start): nothing to resume, nothing lost by starting again
            if apply:
                logger.info("%s holds this run, not started yet: starting it", out)
            return
        if old == config.identity():
            raise RunFolderError(
                f"--out {out} already holds this run; pass --resume to continue it or "
                "--overwrite to start it again"
            )
        diff = sorted(k for k in config.identity() if old.get(k) != config.identity()[k])
        raise RunFolderError(
            f"--out {out} holds a different run (differing settings: {diff}); choose another "
            "folder or pass --overwrite to replace it"
        )
    if present or others:
        raise RunFolderError(
            f"--out {out} is not empty and holds no torchlap run (found "
            f"{sorted(present + others)[:5]}); choose an empty or new folder"
        )


# ------------------------------------------------------------------------------------------
def _resolve_devices(devices: str | int) -> Any:
    if isinstance(devices, int):
        return devices
    text = str(devices).strip()
    if text == "auto":
        return "auto"
    if text.isdigit():
        return int(text)
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--devices must be 'auto', a count (2) or a comma list of ids (0,1), got {devices!r}"
        ) from None


def _check_devices(config: TrainConfig, devices: Any) -> None:
    """Refuse device counts the machine or the batch size cannot take, before any process is
    spawned (an error found by each DDP worker would be printed once per process)."""
    cuda = _uses_cuda(config.accelerator)
    if isinstance(devices, list):
        count = len(devices)
    elif devices == "auto":
        count = torch.cuda.device_count() if cuda else 1
    else:
        count = int(devices)
    if count < 1:
        raise ValueError(f"--devices {config.devices!r} selects no device; pass 'auto', 1, 2, ...")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    available = torch.cuda.device_count() if cuda else (cores or 1)
    kind = "CUDA devices" if cuda else "CPU cores"
    if count > available or (isinstance(devices, list) and max(devices) >= available):
        raise ValueError(
            f"--devices {config.devices!r} asks for {count} processes but this machine has "
            f"{available} {kind}; pass --devices between 1 and {available}"
        )
    world = count * int(config.num_nodes)
    if config.batch_size % world:
        raise ValueError(
            f"--batch-size {config.batch_size} cannot be split over {world} processes "
            f"(--devices {config.devices!r} x --num-nodes {config.num_nodes}); pass a batch size "
            f"divisible by {world}"
        )


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _ignore_lightning_pytree_warning() -> None:
    """Inside ``warnings.catch_warnings()``: drop the FutureWarning that recent torch releases
    raise on every ``LeafSpec()`` Lightning's own pytree copy builds (a message for Lightning's
    maintainers, not for our users)."""
    warnings.filterwarnings(
        "ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning
    )


def fit(config: TrainConfig, callbacks: Sequence[Any] = ()) -> Path:
    """Train one run as ``config`` says and return its folder (section 2 of the design).

    Checks everything (settings, data, model, phases, output folder) before writing anything;
    then runs the phases (each its own Lightning ``Trainer.fit``), tests on the test split,
    and writes ``model.safetensors``, ``config.json`` and ``metrics.json``. ``callbacks`` are
    extra Lightning callbacks given to every phase's Trainer.
    """
    import lightning as L

    from torchlap import __version__
    from torchlap.train.checkpoint import AtomicCheckpoint
    from torchlap.train.module import ClassifierModule, set_trainable

    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit expects a TrainConfig, got {type(config).__name__}")
    config.validate()
    out = Path(config.out)
    global_zero = _is_global_zero()
    phases = config.resolved_phases()
    devices = _resolve_devices(config.devices)
    _check_devices(config, devices)
    if global_zero or config.resume:
        _prepare_folder(out, config, apply=False)  # refuse before any data is loaded

    L.seed_everything(config.seed, workers=True, verbose=False)
    datasets = _load_splits(config)
    train_set = datasets["train"]
    classes = [str(c) for c in train_set.classes]
    n_classes = len(classes)
    in_channels = int(train_set.n_channels)
    supervision = config.effective_supervision
    if supervision == "expert" and not _has_regions(train_set):
        raise ValueError(
            f"--supervision expert needs boxes or masks, but the training split of "
            f"{config.data!r} has none; use --supervision weak (or none)"
        )

    n_concepts = config.n_concepts or _default_n_concepts(n_classes)
    # the --lap preset's paper options (hidden channels, aggregation, ratios, ...) unless given
    lap_options, preset_options = config.lap_options() if config.uses_lap else ({}, {})
    head_ratios = config.head_ratios(n_concepts) if config.uses_lap else None
    net, model_record = build_classifier(
        config.arch,
        n_classes,
        in_channels,
        config.lap,
        n_concepts,
        config.pretrained,
        model=config.model,
        image_size=config.image_size,
        lap_options=lap_options,
    )
    mean = [float(v) for v in train_set.mean]
    std = [float(v) for v in train_set.std]
    if config.model == "bcos":  # B-cos encodes [x, 1 - x] of images in [0, 1]: no mean/std
        mean, std = [0.0] * in_channels, [1.0] * in_channels
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(
            f"the dataset's mean/std have {len(mean)}/{len(std)} entries for {in_channels} channels"
        )

    injection = None
    concept_sets = None
    discriminative = False
    if config.uses_lap:
        from torchlap.layers import lap_modules
        from torchlap.losses import ConceptSets, InjectionLoss, enable_discriminative_scorers

        layers = lap_modules(net)
        if not layers:
            raise ValueError(f"--lap {config.lap!r} put no LAP layer into {config.arch!r}")
        concept_sets = (
            ConceptSets.from_dict(config.concept_sets)
            if config.concept_sets is not None
            else ConceptSets.default(n_classes, n_concepts)
        )
        if concept_sets.n_classes != n_classes or concept_sets.n_concepts != n_concepts:
            raise ValueError(
                f"concept_sets are for {concept_sets.n_classes} classes x "
                f"{concept_sets.n_concepts} concepts; the data has {n_classes} classes and the "
                f"model {n_concepts} concepts"
            )
        weights = paper_loss_weights(
            len(layers),
            supervision,
            concept_weight=preset_options.get("concept_weight"),
            concordance_weight=config.concordance_weight,
        )
        weights.update(config.loss_weights or {})
        if config.use_discriminative and supervision != "none":
            enable_discriminative_scorers(net)
            discriminative = True
        extra: dict[str, Any] = {}
        if config.concordance_threshold is not None:
            extra["concordance_threshold"] = config.concordance_threshold
        if config.concordance_mode is not None:
            extra["concordance_mode"] = config.concordance_mode
        min_ars, max_ars, iars = head_ratios
        injection = InjectionLoss(
            concept_sets,
            min_ar=min_ars,
            max_ar=max_ars,
            iar=iars,
            supervision=supervision,
            use_discriminative=discriminative,
            weights=weights,
            expert_positive_fraction=config.expert_positive_fraction,
            **extra,
        )
        lap_names = list(layers)
    else:
        lap_names = []

    if config.model == "bla-ph":
        # BLA-PH (paper 002, section 4.2): every phase trains the BLA module alone
        # (TrainConfig.validate refused phases training anything but 'all')
        bla_name = model_record["blaify"]["module_name"]
        phases = [dataclasses.replace(phase, train=bla_name) for phase in phases]
    model = NormalizedClassifier(net, mean, std)
    for index, phase in enumerate(phases):  # unknown module names fail now, not mid-run
        try:
            set_trainable(model, phase)
        except ValueError as error:
            raise ValueError(f"phase {index + 1}: {error}") from None

    run_config = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "torchlap_version": __version__,
        "model": model_record,
        "lap_layers": lap_names,
        "discriminative_scorers": discriminative,
        "input": "images in [0, 1]; the model normalizes them with mean/std",
        "classes": classes,
        "in_channels": in_channels,
        "image_size": config.image_size,
        "mean": mean,
        "std": std,
        "concept_sets": None if concept_sets is None else concept_sets.to_dict(),
        "losses": {
            "cross_entropy": True,
            "task_loss": "binary_cross_entropy" if config.model == "bcos" else "cross_entropy",
            "supervision": supervision,
            "min_ar": config.min_ar,
            "max_ar": config.max_ar,
            "iar": config.iar,
            "use_discriminative": discriminative,
            "expert_positive_fraction": config.expert_positive_fraction,
            "head_ratios": None
            if head_ratios is None
            else [list(r) for r in zip(*head_ratios, strict=True)],
            "weights": None if injection is None else dict(injection.weights),
            "concordance_threshold": None if injection is None else injection.concordance_threshold,
            "concordance_mode": None if injection is None else injection.concordance_mode,
        },
        "seed": config.seed,
        "shuffle_labels": config.shuffle_labels,
        "data": {
            "source": config.data,
            "sizes": {split: len(ds) for split, ds in datasets.items()},
        },
        "phases": [phase.to_dict() for phase in phases],
        "lap_options": lap_options,
        "selection": {"keep_epoch": config.keep_epoch, "select_metric": config.select_metric},
        "train": config.to_dict(),
    }

    run_config["integrity"] = {}  # SHA-256 of the weights and checkpoints, see torchlap.runs
    if config.resume:  # keep the recorded digests of the checkpoints being resumed
        run_config["integrity"] = dict(_read_run_config(out).get("integrity") or {})
    if global_zero:
        _prepare_folder(out, config, apply=True)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / CONFIG_FILE, run_config)

    def write_metrics(history: list[dict[str, Any]], test: dict | None = None) -> None:
        if global_zero:
            atomic_write_json(
                out / "metrics.json",
                {
                    "status": "finished" if test is not None else "running",
                    "classes": classes,
                    "epochs": history,
                    "selected_epoch": module.selected_epoch() if test is not None else None,
                    "test": test,
                },
            )

    use_cuda = _uses_cuda(config.accelerator)
    make_loader = _loader_factory(datasets, config, pin_memory=use_cuda)
    module = ClassifierModule(
        model,
        n_classes,
        injection,
        phases,
        config.seed,
        make_loader=make_loader,
        on_epoch_end=write_metrics,
        keep_epoch=config.keep_epoch,
        select_metric=config.select_metric,
    )
    precision = config.precision
    if precision == "auto":
        precision = "16-mixed" if use_cuda else "32-true"
    # rich bar (epochs from 1) on a terminal, plain periodic lines otherwise; off with -q
    from torchlap.logs import lightning_progress_callbacks

    def progress_callbacks() -> list[Any]:  # a new bar per Trainer
        return lightning_progress_callbacks(config.progress_bar)[0]

    progress = lightning_progress_callbacks(config.progress_bar)[1]

    start_phase, resume_path = 0, None
    if config.resume:
        for index in reversed(range(len(phases))):
            candidate = out / "checkpoints" / f"phase{index + 1}" / "last.ckpt"
            if candidate.is_file():
                start_phase, resume_path = index, candidate
                break
        if resume_path is None:
            logger.info("--resume: no checkpoint in %s, starting from the beginning", out)
        else:  # checked by _prepare_folder too; a checkpoint replaced since then is named here
            check_integrity(out, resume_path)

    trainer = None
    for index in range(start_phase, len(phases)):
        phase = phases[index]
        trainable = module.set_phase(index)
        logger.info(
            "phase %d/%d: training %s (%d parameter tensors) for %d epochs at lr %g",
            index + 1,
            len(phases),
            phase.train,
            len(trainable),
            phase.epochs,
            phase.lr,
        )
        checkpoint = AtomicCheckpoint(
            out / "checkpoints" / f"phase{index + 1}",
            every_n_train_steps=config.checkpoint_every_n_steps,
            run_dir=out,
        )
        trainer = L.Trainer(
            max_epochs=phase.epochs,
            accelerator=config.accelerator,
            devices=devices,
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            precision=precision,
            logger=False,
            callbacks=[checkpoint, *progress_callbacks(), *callbacks],
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            sync_batchnorm=use_cuda and (devices not in (1, [0]) or config.num_nodes > 1),
            default_root_dir=str(out),
            log_every_n_steps=1,
        )
        ckpt = str(resume_path) if index == start_phase and resume_path is not None else None
        with warnings.catch_warnings():
            # our batch sampler skips the batches a mid-epoch checkpoint already trained on
            # (ClassifierModule.on_load_checkpoint), which Lightning cannot see
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that")
            _ignore_lightning_pytree_warning()
            trainer.fit(module, ckpt_path=ckpt)
        if trainer.interrupted:
            raise KeyboardInterrupt("training was interrupted; resume it with --resume")

    if trainer is None:  # resumed a run whose phases were all done: test needs a Trainer
        trainer = L.Trainer(
            accelerator=config.accelerator,
            devices=devices,
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            precision=precision,
            logger=False,
            callbacks=progress_callbacks(),
            enable_progress_bar=progress,
            enable_model_summary=False,
            use_distributed_sampler=False,
            default_root_dir=str(out),
        )
    # the paper keeps the best validation epoch: test it and save its weights (keep_epoch)
    module.restore_selected_epoch()
    with warnings.catch_warnings():
        _ignore_lightning_pytree_warning()
        trainer.test(module, verbose=False)
    test = dict(module.test_results)
    if global_zero:
        _atomic_save_safetensors(
            out / WEIGHTS_FILE,
            module.model.state_dict(),
            {"format": RUN_FORMAT, "torchlap_version": __version__},
            run_dir=out,
        )
        write_metrics(module.history, test)
    logger.info("test: %s", {k: round(v, 4) for k, v in test.items() if math.isfinite(v)})
    return out
