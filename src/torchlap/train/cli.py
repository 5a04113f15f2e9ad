"""``torchlap train``: the command-line face of :func:`torchlap.train.fit`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from torchlap.train.config import PhaseConfig, TrainConfig, check_head_ratios, parse_phase

__all__ = ["config_from_options", "register_train", "train"]

logger = logging.getLogger(__name__)


def _key_values(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as JSON when they are)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            result[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            result[key.strip()] = raw
    return result


def _parse_ratios(text: str | None) -> dict[str, Any] | None:
    """``--ratios`` JSON ``{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}`` -> dict."""
    if text is None:
        return None
    try:
        ratios = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--ratios must be JSON {{head: [MinAR, MaxAR, IAR]}}, e.g. "
            f'\'{{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}}\': {error}'
        ) from None
    return check_head_ratios(ratios)


def config_from_options(**options: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from the CLI's option values (parsed, validated)."""
    phases: list[PhaseConfig] = [parse_phase(text) for text in options.pop("phase") or []]
    weights = _key_values(options.pop("loss_weight"), "--loss-weight")
    data_options = _key_values(options.pop("data_option"), "--data-option")
    concept_file = options.pop("concept_sets")
    concept_sets = None
    if concept_file is not None:
        path = Path(concept_file)
        if not path.is_file():
            raise FileNotFoundError(f"--concept-sets {path}: no such file")
        concept_sets = json.loads(path.read_text())
    options["use_discriminative"] = not options.pop("no_discriminative")
    options["ratios"] = _parse_ratios(options.pop("ratios"))
    config = TrainConfig(
        phases=phases,
        loss_weights=weights or None,
        data_options=data_options,
        concept_sets=concept_sets,
        **options,
    )
    config.validate()
    return config


def train(
    data: str = typer.Option(
        ..., "--data", help="Built-in benchmark (lesions, concepts, digits) or annotated folder."
    ),
    out: str = typer.Option(..., "--out", help="Run folder to write (config, weights, metrics)."),
    arch: str = typer.Option(
        "resnet18", "--arch", help="Architecture (torchvision/timm name, or smallcnn)."
    ),
    lap: str = typer.Option(
        "auto", "--lap", help="LAP preset of the architecture, 'auto', or 'none' (vanilla)."
    ),
    model: str = typer.Option(
        "lap",
        "--model",
        help="lap (LAP layers of --lap), bla, bla-t, bla-ph, l2x-f (paper 002), antehoc "
        "(paper 004; the peers are built on the vanilla network) or bcos (a B-cos network of "
        "the bcos package, --arch one of its models; extra torchlap[bcos]).",
    ),
    supervision: str = typer.Option(
        "weak", "--supervision", help="weak (Eq. 5 + Eq. 6), expert (boxes) or none."
    ),
    epochs: int = typer.Option(10, "--epochs", help="Epochs (when no --phase is given)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (when no --phase is given)."),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam, adamw or sgd."),
    weight_decay: float = typer.Option(1e-6, "--weight-decay", help="Weight decay."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine or constant."),
    phase: list[str] | None = typer.Option(
        None,
        "--phase",
        help="A phase TRAIN:EPOCHS[:LR[:OPTIMIZER]], repeatable, e.g. --phase lap:2:1e-4 "
        "--phase layer4,fc:3:1e-3:sgd (TRAIN: all, lap, or module names). Overrides --epochs.",
    ),
    image_size: int = typer.Option(64, "--image-size", help="Image side in pixels."),
    batch_size: int = typer.Option(
        32, "--batch-size", help="Global batch size (split over processes)."
    ),
    n_images: int | None = typer.Option(
        None, "--n-images", help="Images of a built-in benchmark, over all splits."
    ),
    data_option: list[str] | None = typer.Option(
        None, "--data-option", help="KEY=VALUE passed to load_dataset (repeatable)."
    ),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="torchvision weights name (e.g. IMAGENET1K_V1), a .safetensors file, or a torchlap "
        "run folder (e.g. a vanilla run as the frozen network of --model bla-ph).",
    ),
    n_concepts: int | None = typer.Option(
        None, "--n-concepts", help="Concept heads per LAP (default: 1 for 2 classes, else C)."
    ),
    concept_sets: str | None = typer.Option(
        None, "--concept-sets", help="JSON file of ConceptSets.to_dict() (which class has which)."
    ),
    min_ar: float = typer.Option(0.1, "--min-ar", help="MinAR of Eq. 5, in (0, 1]."),
    max_ar: float = typer.Option(0.5, "--max-ar", help="MaxAR of Eq. 5, in (0, 1]."),
    iar: float = typer.Option(0.1, "--iar", help="IAR of Eq. 5, in (0, 1]."),
    ratios: str | None = typer.Option(
        None,
        "--ratios",
        help='Per-head [MinAR, MaxAR, IAR] as JSON, null = term off for that head, "*" = every '
        'head, e.g. \'{"0": [0.02, 0.2, 0.01], "2": [null, 0.1, null]}\' (the paper\'s CelebA '
        "common head); other heads use --min-ar/--max-ar/--iar.",
    ),
    hidden_channels: int | None = typer.Option(
        None,
        "--hidden-channels",
        help="Hidden channels of each LAP head (0: one 1x1 conv). Default: the --lap preset's "
        "paper value (8 for resnet18/inception_v3, 0 for resnet50-imagenet), else 8.",
    ),
    aggregation: str | None = typer.Option(
        None,
        "--aggregation",
        help="How LAP combines its concept heads: max, sum, mean or conv. Default: the preset's "
        "paper value (sum for resnet18/inception_v3, conv for resnet50-imagenet), else max.",
    ),
    alpha: float | None = typer.Option(
        None, "--alpha", help="Initial LAP sharpness alpha of Eq. 4 (trainable; default 1)."
    ),
    concordance_weight: float | None = typer.Option(
        None,
        "--concordance-weight",
        help="Concordance (Eq. 6) weight per LAP pair. Default: 0.25 for weak supervision, "
        "0 for expert (the paper's appendix names no concordance term there).",
    ),
    keep_epoch: str = typer.Option(
        "best",
        "--keep-epoch",
        help="best: keep the epoch with the best validation --select-metric (the paper); "
        "last: the last epoch.",
    ),
    select_metric: str = typer.Option(
        "balanced_accuracy",
        "--select-metric",
        help="Validation value ranking epochs: balanced_accuracy, accuracy, loss (total) or "
        "cross_entropy (steadier than accuracy on a small validation split).",
    ),
    no_discriminative: bool = typer.Option(
        False, "--no-discriminative", help="Choose Eq. 5's pixels on the heads themselves."
    ),
    loss_weight: list[str] | None = typer.Option(
        None, "--loss-weight", help="TERM=WEIGHT for InjectionLoss (repeatable)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of everything (data order, init)."),
    shuffle_labels: bool = typer.Option(
        False,
        "--shuffle-labels",
        help="Data randomization test (Adebayo et al. 2018): train on permuted labels "
        "(val/test keep the real ones); compare its maps with the real run's.",
    ),
    devices: str = typer.Option("auto", "--devices", help="auto, a count, or ids '0,1'."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Number of nodes (DDP)."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy (auto, ddp, ...)."),
    accelerator: str = typer.Option("auto", "--accelerator", help="auto, cpu, gpu, ..."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (16-mixed on CUDA), 32-true, 16-mixed, bf16-mixed."
    ),
    num_workers: int = typer.Option(0, "--num-workers", help="DataLoader worker processes."),
    checkpoint_every_n_steps: int | None = typer.Option(
        None, "--checkpoint-every", help="Also checkpoint every N steps (epoch ends always)."
    ),
    progress_bar: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on when a TTY)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out."),
    resume: bool = typer.Option(False, "--resume", help="Resume the run in --out."),
) -> None:
    """Train a classifier (vanilla or LAP) with cross-entropy and knowledge injection.

    Writes model.safetensors, config.json and metrics.json into --out.
    torchlap.load_run(RUN_DIR) rebuilds the model from them, without pickle.
    RUN_DIR/checkpoints/ holds Lightning checkpoints (pickles): --resume only.
    RUN_DIR/train.log keeps every log line of the run.

    Example: `torchlap train --data lesions --out runs/bb-lap --lap resnet18 --supervision expert`

    Cost with the defaults (ResNet18, 10 epochs, 64 px, lesions): about 2 min on a 2-core CPU
    (the demo's 4 epochs take about 50 s).
    """
    options = dict(locals())  # first: the option values only

    from torchlap.logs import log_file
    from torchlap.train.run import fit

    # errors reach the torchlap command's one-line handler (exit 2 input, 1 failure)
    config = config_from_options(**options)
    out_dir = Path(config.out)
    # RUN/train.log: every line of the run (Lightning's too), once torchlap owns the folder
    with log_file(out_dir / "train.log", ready=(out_dir / "config.json").is_file):
        run_dir = fit(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics.get("test") or {}
    summary = ", ".join(
        f"{k}={test[k]:.4f}"
        for k in ("accuracy", "balanced_accuracy", "sensitivity", "specificity")
        if k in test
    )
    typer.echo(f"run saved to {run_dir} (test: {summary})")


def register_train(app: typer.Typer) -> None:
    """Add ``torchlap train`` to the ``torchlap`` command."""
    app.command("train")(train)
