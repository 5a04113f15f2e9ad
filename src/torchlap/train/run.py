"""``fit(config)``: one training run, start to end, into a run folder.

Run folder layout (the format is :mod:`torchlap.runs`'s)::

    RUN_DIR/config.json         what the run is: architecture, lapify settings, classes,
                                normalization, losses, seed and the full TrainConfig
    RUN_DIR/metrics.json        per-epoch train/val metrics, the kept epoch ("selected_epoch"),
                                final test metrics (of the kept epoch's weights)
    RUN_DIR/model.safetensors   the weights of the NormalizedClassifier at the kept epoch (the
                                best validation epoch by default; written at the end)
    RUN_DIR/checkpoints/phaseN/last.ckpt   Lightning checkpoints, for --resume only

:func:`torchlap.runs.load_run` needs only ``config.json`` and ``model.safetensors``: JSON and
safetensors, no pickle, so a run folder from anyone is safe to load. The Lightning checkpoints
are pickles; ``--resume`` loads them with ``weights_only=True`` (tensors and plain Python
values only, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says), so a crafted checkpoint
cannot run code, and checks their SHA-256 against ``config.json`` first. Every file of the
folder is written atomically.

``fit`` is a few named steps: check the settings and the folder, load the data
(:mod:`torchlap.train.loaders`), build the model and its objective through its family's recipe
(:mod:`torchlap.models.recipes`), record the run (``config.json``), train the phases, then test
the kept epoch and write its weights and ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchlap import __version__
from torchlap.data import collate_regions
from torchlap.environment import run_environment
from torchlap.launch import parse_devices, require_multi_node_launcher, usable_cpu_cores
from torchlap.layers import lap_modules
from torchlap.layers._state import kept_last_maps
from torchlap.logs import kept_rich_console, lightning_progress_callbacks
from torchlap.metrics._common import eval_mode
from torchlap.models.backbones import check_pretrained
from torchlap.models.recipes import (
    TrainingModel,
    build_for_training,
    default_n_concepts,
    recipe_for,
)
from torchlap.models.wrapping import NormalizedClassifier
from torchlap.runs import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    WEIGHTS_FILE,
    LoadedRun,
    RunFolderError,
    atomic_write_json,
    check_integrity,
    load_run,
    pretrained_weights,
)
from torchlap.train.config import PhaseConfig, TrainConfig
from torchlap.train.folder import (
    integrity_record,
    is_global_zero,
    mark_run_config,
    prepare_folder,
    save_weights,
)
from torchlap.train.loaders import dataset_labels, has_regions, load_splits, loader_factory
from torchlap.train.process import callers_random_state

__all__ = ["RUN_FORMAT", "LoadedRun", "RunFolderError", "fit", "load_run"]

logger = logging.getLogger(__name__)


def _check_launch(config: TrainConfig, devices: Any, accelerated: bool) -> None:
    """Device ids only off the CPU (Lightning's CPU accelerator takes a count; ``accelerated``:
    a CUDA, MPS or TPU device is there for ``--accelerator auto``), and several
    nodes only under a launcher that starts their processes (without one the run would wait
    forever for them, its folder written)."""
    on_cpu = config.accelerator == "cpu" or (config.accelerator == "auto" and not accelerated)
    if isinstance(devices, list) and on_cpu:
        raise ValueError(
            f"--devices {config.devices!r} lists device ids, which the CPU does not have (CUDA, "
            f"MPS and TPU do); with --accelerator {config.accelerator} on the CPU pass a process "
            "count such as --devices 2"
        )
    require_multi_node_launcher(config.num_nodes, "train")


def _check_engine_names(accelerator: str, strategy: str) -> None:
    """``--accelerator`` and ``--strategy`` must name what Lightning registers (read from its
    registries, so a newer Lightning's names pass), checked before the run folder is written.
    The spawning strategies are refused: they pickle the data loaders' factories, which are
    local functions (use ``ddp``, which starts the processes itself, or torchrun)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    accelerators = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if accelerator not in accelerators:
        raise ValueError(
            f"unknown --accelerator {accelerator!r}; expected one of {', '.join(accelerators)}"
        )
    # tpu without torch_xla, mps off a Mac (Lightning said so after config.json was written)
    engine = dict.get(AcceleratorRegistry, accelerator, {}).get("accelerator")
    if engine is not None and accelerator != "cuda" and not engine.is_available():
        raise ValueError(
            f"--accelerator {accelerator!r}: this machine has no such device (Lightning's "
            f"{engine.__name__} is not available here); pass --accelerator cpu (or auto)"
        )
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in strategies:
        shown = [s for s in strategies if "find_unused" not in s]
        raise ValueError(
            f"unknown --strategy {strategy!r}; expected one of {', '.join(shown)} (and the "
            "ddp*_find_unused_parameters_true/false variants)"
        )
    if "spawn" in strategy:
        raise ValueError(
            f"--strategy {strategy} starts its processes by pickling the training objects, which "
            "torchlap's data loaders do not support; use --strategy ddp (or auto), which starts "
            "them itself, or launch with torchrun"
        )


def _check_devices(config: TrainConfig, devices: Any) -> int:
    """Refuse device counts the machine or the batch size cannot take, before any process is
    spawned (an error found by each DDP worker would be printed once per process); return the
    number of processes."""
    _check_engine_names(config.accelerator, config.strategy)
    cuda = _uses_cuda(config.accelerator)
    if cuda and not torch.cuda.is_available():
        raise ValueError(
            f"--accelerator {config.accelerator!r}: no CUDA device is available here "
            "(torch.cuda.is_available() is False); pass --accelerator cpu (or auto)"
        )
    _check_launch(config, devices, cuda or torch.backends.mps.is_available())
    if isinstance(devices, list):
        count = len(devices)
    elif devices == "auto":
        count = torch.cuda.device_count() if cuda else 1
    else:
        count = int(devices)
    available = torch.cuda.device_count() if cuda else usable_cpu_cores()
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
    return world


def _check_split_sizes(datasets: dict[str, Any], world: int) -> None:
    """Every process evaluates at least one validation and test image (the splits are sharded
    without padding, so that the metrics count each image once)."""
    for split in ("val", "test"):
        if len(datasets[split]) < world:
            raise ValueError(
                f"the {split} split has {len(datasets[split])} image(s) for {world} processes; "
                f"each process needs at least one: use fewer --devices or more images"
            )


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _execution(config: TrainConfig) -> tuple[str, str]:
    """The accelerator and precision the run trains with (``"auto"`` resolved)."""
    accelerator = "cuda" if _uses_cuda(config.accelerator) else config.accelerator
    if accelerator == "auto":
        accelerator = "mps" if torch.backends.mps.is_available() else "cpu"
    precision = config.precision
    if precision == "auto":
        precision = "16-mixed" if accelerator == "cuda" else "32-true"
    return accelerator, precision


def _ignore_lightning_pytree_warning() -> None:
    """Inside ``warnings.catch_warnings()``: drop the FutureWarning that recent torch releases
    raise on every ``LeafSpec()`` Lightning's own pytree copy builds (a message for Lightning's
    maintainers, not for our users)."""
    warnings.filterwarnings(
        "ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning
    )


@dataclass
class _Prepared:
    """The run, ready to train: its data, model (normalized), objective, phases and record."""

    datasets: dict[str, Any]
    classes: list[str]
    built: TrainingModel
    model: NormalizedClassifier
    phases: list[PhaseConfig]
    run_config: dict[str, Any]


def fit(config: TrainConfig, callbacks: Sequence[Any] = ()) -> Path:
    """Train one run as ``config`` says and return its folder (section 2 of the design).

    Checks everything (settings, data, model, phases, output folder) before writing anything;
    then runs the phases (each its own Lightning ``Trainer.fit``), tests on the test split,
    and writes ``model.safetensors``, ``config.json`` and ``metrics.json``. ``callbacks`` are
    extra Lightning callbacks given to every phase's Trainer. The run seeds the process for
    itself; the caller's random state and environment are handed back when it returns or
    raises (:func:`~torchlap.train.process.callers_random_state`), and rich's global console
    its settings (:func:`~torchlap.logs.kept_rich_console`: Lightning's rich bar changes them).
    """
    mark_run_config(None)  # (not at its end: the log may open after it raised)
    with callers_random_state(), kept_rich_console():
        return _run(config, callbacks)


def _run(config: TrainConfig, callbacks: Sequence[Any]) -> Path:
    """:func:`fit`, inside the caller's random state."""
    # Lightning loads here, not at module top: importing it takes seconds, and the torchlap
    # command imports this module for every subcommand (measured: `torchlap --help`)
    import lightning as L

    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit expects a TrainConfig, got {type(config).__name__}")
    config.validate()
    # a weights name the arch lacks: before the data is read and the model built
    check_pretrained(config.arch, config.pretrained)
    config = config.with_resolved_data()  # a folder recorded absolute: found from anywhere
    out = Path(config.out)
    global_zero = is_global_zero()
    devices = parse_devices(config.devices, allow_auto=True)
    world = _check_devices(config, devices)
    if global_zero or config.resume:
        prepare_folder(out, config, apply=False)  # refuse before any data is loaded

    L.seed_everything(config.seed, workers=True, verbose=False)
    run = _prepare(config)
    _check_split_sizes(run.datasets, world)
    if global_zero:
        prepare_folder(out, config, apply=True)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / CONFIG_FILE, run.run_config)
        mark_run_config(out)  # the folder holds this run now: its log file may open
    environment = run_environment(*_execution(config))
    logger.info("environment (a run repeats bit for bit with the same): %s", environment)
    write_metrics = _metrics_writer(out / METRICS_FILE, run.classes, global_zero, environment)
    module = _classifier_module(config, run, write_metrics)
    trainer = _train_phases(config, module, devices, callbacks)
    # the paper keeps the best validation epoch: test it and save its weights (keep_epoch)
    module.restore_selected_epoch()
    with warnings.catch_warnings():
        _ignore_lightning_pytree_warning()
        trainer.test(module, verbose=False)
    test = dict(module.test_results)
    if global_zero:
        meta = {"format": RUN_FORMAT, "torchlap_version": __version__}
        save_weights(out / WEIGHTS_FILE, module.model.state_dict(), meta, run_dir=out)
        write_metrics(module.history, test, module.selected_epoch())
    logger.info("test: %s", {k: round(v, 4) for k, v in test.items() if math.isfinite(v)})
    return out


def _prepare(config: TrainConfig) -> _Prepared:
    """Load the data, build the family's model and objective, resolve the phases, and the
    run's ``config.json`` record; everything is checked here, before anything is written."""
    datasets = load_splits(config)
    train_set = datasets["train"]
    classes = [str(c) for c in train_set.classes]
    if len(classes) < 2:
        raise ValueError(
            f"the training split of {config.data!r} has {len(classes)} class ({classes}); a "
            "classifier needs at least 2 (ImageFolder: one subfolder per class; "
            "annotations.csv: at least two labels)"
        )
    _warn_missing_classes(datasets, classes)
    in_channels = int(train_set.n_channels)
    if config.effective_supervision == "expert" and not has_regions(train_set):
        raise ValueError(
            f"--supervision expert needs boxes or masks, but the training split of "
            f"{config.data!r} has none (no image of it has a box or a mask); use --supervision "
            "weak (or none)"
        )
    heads = config.n_concepts or default_n_concepts(len(classes), config.concept_sets)
    if config.uses_lap and config.head_hidden == "per_head" and heads == 1:
        raise ValueError(
            f"--head-hidden per_head gives each concept head its own hidden channels, but the "
            f"LAP layers have one head ({len(classes)} classes, n_concepts 1), which is the "
            "same network as shared: give --n-concepts N > 1, or leave --head-hidden out"
        )
    recipe = recipe_for(config.model, config.lap)
    # a run folder as --pretrained is read here, where the run's files are known
    pretrained_file = None if config.pretrained is None else pretrained_weights(config.pretrained)
    built = build_for_training(config, len(classes), in_channels, pretrained_file)
    _drop_unused_scorers(built, config.pretrained)
    mean, std = recipe.normalization(train_set.mean, train_set.std)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(
            f"the dataset's mean/std have {len(mean)}/{len(std)} entries for {in_channels} channels"
        )
    phases = recipe.phases(config.resolved_phases(), built.record)
    model = NormalizedClassifier(built.net, mean, std)
    # (imported here with Lightning: the module defines the LightningModule)
    from torchlap.train.module import set_trainable

    for index, phase in enumerate(phases):  # unknown module names fail now, not mid-run
        try:
            set_trainable(model, phase)
        except ValueError as error:
            raise ValueError(f"phase {index + 1}: {error}") from None
    _check_one_batch(model, train_set, config)
    facts = {"classes": classes, "in_channels": in_channels, "mean": mean, "std": std}
    run_config = _run_config(config, built, phases, facts, datasets)
    return _Prepared(datasets, classes, built, model, phases, run_config)


def _warn_missing_classes(datasets: dict[str, Any], classes: list[str]) -> None:
    """Say when a validation or test split lacks a class of the training split: its balanced
    accuracy (which keeps the best epoch) then averages the classes it has, and the metrics
    of a missing class (sensitivity or specificity) are NaN."""
    for split in ("val", "test"):
        dataset = datasets.get(split)
        if dataset is None or len(dataset) == 0:
            continue
        present = set(dataset_labels(dataset).tolist())
        missing = [name for index, name in enumerate(classes) if index not in present]
        if missing:
            logger.warning(
                "the %s split has no image of class(es) %s: its balanced accuracy averages the "
                "classes it has, and the metrics of a missing class are NaN",
                split,
                missing,
            )


def _check_one_batch(model: torch.nn.Module, train_set: Any, config: TrainConfig) -> None:
    """Two training samples, collated as training collates them, through the model (eval mode,
    no gradient; the RNG streams, flags and maps as they were): an ``--image-size`` too small
    for the data's transforms or for the architecture fails here, before the run folder is
    written, not in the first training step."""
    try:
        with (
            torch.random.fork_rng(devices=[]),
            torch.no_grad(),
            kept_last_maps(model),
            eval_mode(model),
        ):
            batch = collate_regions([train_set[i] for i in range(min(2, len(train_set)))])
            model(batch["image"])
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"one training batch at --image-size {config.image_size} does not go through "
            f"--arch {config.arch} ({error}); use a larger --image-size (e.g. 32 or more)"
        ) from None


def _drop_unused_scorers(built: TrainingModel, pretrained: str | None) -> None:
    """A ``--pretrained`` LAP run brings its discriminative scorers (weak supervision); a run
    that does not use them (``--supervision none``/``expert`` or ``--no-discriminative``)
    drops them, so that its weights match the model its ``config.json`` describes."""
    if built.discriminative:
        return
    dropped = []
    for name, layer in lap_modules(built.net).items():
        if layer.discriminative_scorer is not None:
            layer.disable_discriminative_scorer()
            dropped.append(name)
    if dropped:
        logger.info(
            "--pretrained %s: dropped the discriminative scorers of %s (this run does not use "
            "them)", pretrained, ", ".join(dropped),
        )  # fmt: skip


def _run_config(
    config: TrainConfig,
    built: TrainingModel,
    phases: list[PhaseConfig],
    facts: dict[str, Any],
    datasets: dict[str, Any],
) -> dict[str, Any]:
    """The run's ``config.json``: what the model is and how it was trained."""
    injection, head_ratios = built.injection, built.head_ratios
    run_config = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "torchlap_version": __version__,
        "model": built.record,
        "lap_layers": built.lap_names,
        "discriminative_scorers": built.discriminative,
        "input": "images in [0, 1]; the model normalizes them with mean/std",
        "classes": facts["classes"],
        "in_channels": facts["in_channels"],
        "image_size": config.image_size,
        "mean": facts["mean"],
        "std": facts["std"],
        "concept_sets": None if built.concept_sets is None else built.concept_sets.to_dict(),
        "losses": {
            "cross_entropy": True,
            "task_loss": built.objective.task_loss,
            "supervision": config.effective_supervision,
            "min_ar": config.min_ar,
            "max_ar": config.max_ar,
            "iar": config.iar,
            "use_discriminative": built.discriminative,
            "expert_positive_fraction": config.expert_positive_fraction,
            "head_ratios": None
            if head_ratios is None
            else [list(r) for r in zip(*head_ratios, strict=True)],
            "weights": None if injection is None else dict(injection.weights),
            "concordance_threshold": None if injection is None else injection.concordance_threshold,
            "concordance_mode": None if injection is None else injection.concordance_mode,
            "common_head_sets": None if injection is None else injection.common_head_sets,
        },
        "seed": config.seed,
        "shuffle_labels": config.shuffle_labels,
        "data": {
            "source": config.data,
            "sizes": {split: len(ds) for split, ds in datasets.items()},
        },
        "phases": [phase.to_dict() for phase in phases],
        "lap_options": built.lap_options,
        "selection": {"keep_epoch": config.keep_epoch, "select_metric": config.select_metric},
        "balanced_batches": config.uses_balanced_batches,
        "train": config.to_dict(),
    }
    # SHA-256 of the weights and checkpoints (see torchlap.runs): a new run starts an empty
    # record; a resumed one keeps the digests of the checkpoints it resumes, and a run from
    # before the record (none, or an empty one) stays without, so its checkpoints still load
    record = integrity_record(config.out) if config.resume else {}
    if record or not config.resume:
        run_config["integrity"] = record
    return run_config


def _metrics_writer(
    path: Path, classes: list[str], enabled: bool, environment: dict[str, Any]
) -> Callable[..., None]:
    """``write(history, test=None, selected=None)``: ``metrics.json`` (rank zero only)."""

    def write(
        history: list[dict[str, Any]], test: dict | None = None, selected: dict | None = None
    ) -> None:
        if enabled:
            atomic_write_json(
                path,
                {
                    "status": "finished" if test is not None else "running",
                    "classes": classes,
                    "epochs": history,
                    "selected_epoch": selected if test is not None else None,
                    "test": test,
                    "environment": environment,
                },
            )

    return write


def _classifier_module(
    config: TrainConfig, run: _Prepared, write_metrics: Callable[..., None]
) -> Any:
    """The :class:`~torchlap.train.ClassifierModule` training ``run`` with its objective."""
    # (imported here with Lightning, see fit)
    from torchlap.train.module import ClassifierModule

    make_loader = loader_factory(run.datasets, config, pin_memory=_uses_cuda(config.accelerator))
    return ClassifierModule(
        run.model,
        len(run.classes),
        run.built.objective,
        run.phases,
        config.seed,
        make_loader=make_loader,
        on_epoch_end=write_metrics,
        keep_epoch=config.keep_epoch,
        select_metric=config.select_metric,
    )


def _resume_point(config: TrainConfig, phases: int) -> tuple[int, Path | None]:
    """``(first phase to run, checkpoint to resume it from)``: the latest phase checkpoint of
    a ``--resume``, else the start."""
    out = Path(config.out)
    if not config.resume:
        return 0, None
    for index in reversed(range(phases)):
        candidate = out / CHECKPOINTS_DIR / f"phase{index + 1}" / LAST_CHECKPOINT
        if candidate.is_file():
            # checked by prepare_folder too; a checkpoint replaced since then is named here
            if integrity_record(out):  # (an empty record is a run from before the record)
                check_integrity(out, candidate)
            return index, candidate
    logger.info("--resume: no checkpoint in %s, starting from the beginning", out)
    return 0, None


def _trainer(config: TrainConfig, devices: Any, **options: Any) -> Any:
    """A Lightning Trainer with the run's execution settings (``options`` added)."""
    import lightning as L  # (see fit)

    precision = _execution(config)[1]
    # rich bar (epochs from 1) on a terminal, plain periodic lines otherwise; off with -q
    progress, enabled = lightning_progress_callbacks(config.progress_bar)  # a bar per Trainer
    return L.Trainer(
        accelerator=config.accelerator,
        devices=devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=precision,
        logger=False,
        callbacks=[*options.pop("callbacks", []), *progress, *options.pop("extra", [])],
        enable_progress_bar=enabled,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=str(config.out),
        **options,
    )


def _train_phases(config: TrainConfig, module: Any, devices: Any, callbacks: Sequence[Any]) -> Any:
    """Run the phases (from the resume point), each its own ``Trainer.fit``; return the last
    Trainer (a fresh one when a resumed run had no phase left, for the test)."""
    # (imported here with Lightning, see fit)
    from torchlap.train.checkpoint import AtomicCheckpoint

    out = Path(config.out)
    phases = module.phases
    start_phase, resume_path = _resume_point(config, len(phases))
    use_cuda = _uses_cuda(config.accelerator)
    trainer = None
    for index in range(start_phase, len(phases)):
        phase = phases[index]
        trainable = module.set_phase(index)
        logger.info(
            "phase %d/%d: training %s (%d parameter tensors) for %d epochs at lr %g",
            index + 1, len(phases), phase.train, len(trainable), phase.epochs, phase.lr,
        )  # fmt: skip
        checkpoint = AtomicCheckpoint(
            out / CHECKPOINTS_DIR / f"phase{index + 1}",
            every_n_train_steps=config.checkpoint_every_n_steps,
            run_dir=out,
        )
        trainer = _trainer(
            config,
            devices,
            callbacks=[checkpoint],
            extra=list(callbacks),
            max_epochs=phase.epochs,
            num_sanity_val_steps=0,
            sync_batchnorm=use_cuda and (devices not in (1, [0]) or config.num_nodes > 1),
            log_every_n_steps=1,
        )
        ckpt = str(resume_path) if index == start_phase and resume_path is not None else None
        _fit(trainer, module, ckpt)
        if trainer.interrupted:
            raise KeyboardInterrupt("training was interrupted; resume it with --resume")
    if trainer is None:  # resumed a run whose phases were all done: test needs a Trainer
        trainer = _trainer(config, devices)
    return trainer


def _fit(trainer: Any, module: Any, ckpt: str | None) -> None:
    """``trainer.fit``, resuming from ``ckpt`` (loaded with ``weights_only=True``: tensors and
    plain values only, so a crafted checkpoint cannot run code; one that holds anything else
    is refused as a ``RunFolderError``)."""
    with warnings.catch_warnings():
        # our batch sampler skips the batches a mid-epoch checkpoint already trained on
        # (ClassifierModule.on_load_checkpoint), which Lightning cannot see
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that")
        _ignore_lightning_pytree_warning()
        try:
            trainer.fit(module, ckpt_path=ckpt, weights_only=True)
        except pickle.UnpicklingError as error:
            # torch names the refused object on a line of its own (else: its first line)
            lines = [line for line in str(error).splitlines() if line.strip()] or ["refused"]
            reason = next((line for line in lines if "GLOBAL" in line), lines[0])
            raise RunFolderError(
                f"--resume: {ckpt} holds objects other than tensors and plain values, which "
                f"torchlap does not unpickle ({reason.strip()[:200]}); train the run again "
                "(--overwrite) or restore the checkpoint it wrote"
            ) from None
