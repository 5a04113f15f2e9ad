"""``torchlap demo`` / ``make demo``: the main job on the built-in ``lesions`` benchmark.

Trains a vanilla ResNet18, a weakly supervised LAP-ResNet18 (Eq. 5 + Eq. 6) and an
expert-supervised LAP-ResNet18 (boxes), evaluates all three with every explainer, and writes one
comparison report. Sized to finish in under 15 minutes on a 2-core CPU (see
:class:`DemoSettings`); ``scale`` grows or shrinks the data and the number of evaluated images
together.

The ``peers`` suite adds the self-explaining peers on the same backbone, data and schedule:
BLA, BLA-T, L2X-F (paper 002, trained end to end), BLA-PH (paper 002's post-hoc setup: the
trained vanilla run frozen, only the BLA module trained) and the ante-hoc weight network
(paper 004), evaluated with their own maps and the gradient explainers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchlap._checks import check_number
from torchlap.evaluate import DEFAULT_METHODS, EvaluateOptions, compare_runs
from torchlap.evaluate.common import (
    COMPARE_OUTPUTS,
    EVALUATE_OUTPUTS,
    clear_output_folder,
    guard_output_folder,
)
from torchlap.evaluate.output_owner import COMPARISON
from torchlap.explainers import comparison_methods, get, table_order
from torchlap.models.bcos import bcos_available
from torchlap.runs import CONFIG_FILE, WEIGHTS_FILE, is_run_config
from torchlap.train import TrainConfig, fit
from torchlap.train.folder import check_finished_run, prepare_folder

logger = logging.getLogger(__name__)

__all__ = ["CHECK_METHODS", "DEMO_OUTPUTS", "SUITES", "DemoSettings", "run_demo", "suite_runs"]


def _own_and_gradient_methods() -> tuple[str, ...]:
    """The models' own maps (LAP, BLA, ante-hoc, B-cos: each applies to its own family) and the
    gradient methods of the comparison set, in the tables' order (the explainer registry)."""
    own = [m for m in table_order() if get(m).kind == "own map"]
    gradient = [m for m in comparison_methods() if get(m).kind == "gradient"]
    return tuple(table_order([*own, *gradient]))


#: the methods of the demo's sanity checks and grid pointing game: the models' own maps and the
#: gradient methods (not Score-CAM, RISE and SISE: their full price on every randomized copy)
CHECK_METHODS = _own_and_gradient_methods()
#: what the demo writes into its ``--out`` (the comparison's files and its log; the runs go
#: to ``runs/``, each run's evaluation to a folder of its name)
DEMO_OUTPUTS = (*COMPARE_OUTPUTS, "demo.log")
#: the largest ``--scale`` (x 600 training images of the default demo)
MAX_SCALE = 100.0


@dataclass
class DemoSettings:
    """What the demo trains and evaluates (defaults: the numbers the README quotes).

    Size: 128 px, 600 images (480 for training), 4 epochs, the epoch with the lowest validation
    cross-entropy kept. 128 px is the smallest size at which no LAP map of the paper's ResNet18
    preset is coarser than 4x4 before the global pool (at 64 px the deepest is 2x2 and LAP All
    comes out as quadrants); the README's resolution study compares 64 and 128 px. The images
    were cut from 1000 (at 64 px) to fit 15 minutes at 128 px, measured on the expert-supervised
    run (test balanced accuracy; LAP's IoU by thresholding on the demo's 16 test images): 400
    images and 4 epochs reached 80%; 600 images and 3 epochs 98% (94% on the demo's 16 test
    images) and an IoU of 13.8 (the whole demo took 648 s from a fresh clone); 600 images and 5
    epochs 100% and 21.4, but about 14 minutes in all. 4 epochs keep a margin on a 2-core CPU.

    The evaluation is sized for 15 minutes on a 2-core CPU, including the venv install of a
    fresh clone: 16 test images (8 with a lesion), 8 validation images for the thresholds
    (fitted on all of them, as paper 000 does: 131 000 pixels at 128 px, for a one-dimensional
    threshold), 1 image at 3 noise levels for stability. The explainers are the models' own
    maps and the gradient methods (``check_methods``); ``perturbation=True`` (``torchlap demo
    --perturbation``) adds Score-CAM, RISE (``rise_masks``) and SISE (``sise_mu``): one
    forward per feature map or mask, about 500 per image on ResNet18, about 25 s per image and
    run at 128 px on a 2-core CPU, so they would take the demo past 15 minutes (the images were
    cut first: 32 test and 16 validation images at 64 px before). The README's resolution study
    runs all nine methods; ``torchlap compare`` with its defaults evaluates at full size.

    Checks (issue 13): the sanity checks on ``sanity_images`` images and the grid pointing game
    on ``grid_pg_grids`` grids run for ``check_methods`` (the models' own maps and the gradient
    methods; ``torchlap compare --sanity`` runs them for every method).
    ``bcos`` (off by default; ``torchlap demo --bcos``): a B-cos network (``bcos_arch``: the
    ``bcos`` package's small-input ResNet-20 with the uncentered batch norm, the recipe that
    learns ``lesions`` at 64 px in 4 epochs, where a B-cos ResNet18 stays at chance;
    extra ``torchlap[bcos]``, which ``make demo`` installs) joins the runs when the package is
    installed, else the demo says so and goes on. Off by default for its cost (README: "A B-cos
    recipe that learns": its training took 3x the vanilla ResNet18's in the per-dataset study).
    """

    image_size: int = 128
    n_images: int = 600
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    eval_images: int = 16
    val_images: int = 8
    stability_images: int = 1
    stability_fractions: tuple[float, ...] = (0.1, 0.3, 0.5)
    rise_masks: int = 200
    sise_mu: float = 0.3
    seed: int = 0
    arch: str = "resnet18"
    data: str = "lesions"
    select_metric: str = "cross_entropy"
    sanity: bool = True
    sanity_images: int = 2
    grid_pg: bool = True
    grid_pg_grids: int = 4
    check_methods: tuple[str, ...] | None = CHECK_METHODS
    perturbation: bool = False
    bcos: bool = False
    bcos_arch: str = "cifar10_resnet20"

    def scaled(self, scale: float) -> DemoSettings:
        """The same demo with data and evaluation sizes multiplied by ``scale``: a finite
        number in (0, 100] (100: 60000 training images; inf/nan and larger values refused,
        they could not be turned into image counts)."""
        check_number(scale, "scale", minimum=0.0, maximum=MAX_SCALE, strict_minimum=True,
                     accepted=f"a finite number in (0, {MAX_SCALE:g}]")  # fmt: skip
        return dataclasses.replace(
            self,
            n_images=max(60, round(self.n_images * scale)),
            eval_images=max(8, round(self.eval_images * scale)),
            val_images=max(8, round(self.val_images * scale)),
            stability_images=max(1, round(self.stability_images * min(scale, 1.0))),
            rise_masks=max(50, round(self.rise_masks * min(scale, 1.0))),
            sanity_images=max(2, round(self.sanity_images * min(scale, 1.0))),
            grid_pg_grids=max(2, round(self.grid_pg_grids * min(scale, 1.0))),
        )


_MAIN = (
    ("vanilla", {"lap": "none", "supervision": "none"}),
    ("ws-lap", {"lap": "resnet18", "supervision": "weak"}),
    ("bb-lap", {"lap": "resnet18", "supervision": "expert"}),
)
_PEERS = tuple(
    (name, {"lap": "none", "supervision": "none", "model": name})
    for name in ("bla", "bla-t", "bla-ph", "l2x-f", "antehoc")
)
#: the B-cos run that joins every suite with ``DemoSettings.bcos`` (``torchlap demo --bcos``)
#: when the ``bcos`` package is installed (issue 13)
_BCOS = ("bcos", {"lap": "none", "supervision": "none", "model": "bcos"})
#: run name -> TrainConfig fields of each suite; "peers" = the main runs plus every peer
SUITES = {"main": _MAIN, "peers": _MAIN + _PEERS}
#: explainers of each suite: the models' own maps and the gradient methods; Score-CAM, RISE and
#: SISE join with ``DemoSettings.perturbation`` (every comparison method, see its docstring)
SUITE_METHODS = {"main": CHECK_METHODS, "peers": CHECK_METHODS}


def suite_runs(suite: str, settings: DemoSettings) -> tuple[tuple[str, dict[str, str]], ...]:
    """The runs ``(name, TrainConfig fields)`` the demo trains for ``suite`` with ``settings``
    (the B-cos run only when ``settings.bcos`` and the ``bcos`` package is installed)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)}")
    runs = SUITES[suite]
    if settings.bcos:
        if bcos_available():
            runs = (*runs, _BCOS)
        else:
            logger.warning(
                "B-cos run skipped: the bcos package is not installed "
                "(pip install 'torchlap[bcos]'; `make demo` installs it)"
            )
    return runs


def _train_config(
    name: str, model_options: dict[str, str], settings: DemoSettings, out: Path, overwrite: bool
) -> TrainConfig:
    lap = model_options["lap"] if settings.arch == "resnet18" else "auto"
    if model_options["lap"] == "none":
        lap = "none"
    model = model_options.get("model", "lap")
    return TrainConfig(
        data=settings.data,
        out=str(out / "runs" / name),
        arch=settings.bcos_arch if model == "bcos" else settings.arch,
        model=model,
        # BLA-PH explains the trained vanilla network (trained first, frozen)
        pretrained=str(out / "runs" / "vanilla") if model == "bla-ph" else None,
        lap=lap,
        supervision=model_options["supervision"],
        epochs=settings.epochs,
        lr=settings.lr,
        image_size=settings.image_size,
        batch_size=settings.batch_size,
        n_images=settings.n_images,
        seed=settings.seed,
        # the demo's validation split holds ~100 images: balanced accuracy moves by whole
        # images between epochs, the validation cross-entropy ranks epochs smoothly
        select_metric=settings.select_metric,
        overwrite=overwrite,
    )


def _check_run_folders(configs: list[tuple[str, TrainConfig]], overwrite: bool) -> set[str]:
    """The names of the finished runs the demo reuses; every other run's folder is checked as
    ``fit`` checks it (:func:`torchlap.train.folder.prepare_folder`, writing nothing) before the
    first run trains: a folder of someone else's files under ``out/runs`` used to be refused
    only when its turn came, after the runs before it had trained (under ``--overwrite``,
    after their old files were deleted). A finished run is reused only if it was trained
    with this run's settings and its weights are intact (a run of an earlier demo with other
    settings was reused as it was)."""
    reused = set()
    for name, config in configs:
        run_dir = Path(config.out)
        if (
            not overwrite
            and (run_dir / WEIGHTS_FILE).is_file()
            and is_run_config(run_dir / CONFIG_FILE)
        ):
            check_finished_run(run_dir, config)  # this run, intact: else refused, not reused
            reused.add(name)
        else:
            prepare_folder(run_dir, config.with_resolved_data(), apply=False)
    return reused


def run_demo(
    out: str | os.PathLike[str],
    settings: DemoSettings | None = None,
    methods: tuple[str, ...] | None = None,
    overwrite: bool = False,
    suite: str = "main",
    on_checked: Callable[[], None] | None = None,
) -> Path:
    """Train the suite's runs into ``out/runs``, compare them into ``out``; return report.html.

    ``suite``: ``"main"`` (vanilla, WS-LAP, BB-LAP; B-cos too with ``settings.bcos`` when its
    package is installed)
    or ``"peers"`` (those plus BLA, BLA-T, BLA-PH, L2X-F and the ante-hoc network). A finished
    run is reused, so an interrupted demo resumes. ``on_checked()`` is called once the output
    folders passed their checks, before the first run trains or a file is removed.
    """
    settings = settings or DemoSettings()
    runs = suite_runs(suite, settings)
    out = Path(out)
    # the evaluation's options (its methods...) checked before any run trains: they were
    # refused by the comparison, after every run had trained
    options = _evaluate_options(settings, suite, methods)
    options.validate()
    # before any training: the comparison would refuse a user's own report.html... in out
    # (each run's evaluation goes to OUT/<name>, of the run trained in OUT/runs/<name>)
    foreign = {
        folder: guard_output_folder(
            folder, overwrite, flag="--overwrite", names=names, apply=False, owner=owner
        )
        for folder, names, owner in [(out, COMPARE_OUTPUTS, COMPARISON)]
        + [(out / name, EVALUATE_OUTPUTS, out / "runs" / name) for name, _ in runs]
    }
    configs = [
        (name, _train_config(name, fields, settings, out, overwrite)) for name, fields in runs
    ]
    reused = _check_run_folders(configs, overwrite)
    for folder, found in foreign.items():  # every check passed: what is replaced is said
        clear_output_folder(folder, found, "--overwrite")
    if on_checked is not None:
        on_checked()
    run_dirs = []
    for name, config in configs:
        run_dir = Path(config.out)
        if name in reused:
            logger.info("%s: reusing the finished run in %s", name, run_dir)
        else:
            started = time.perf_counter()
            fit(config)
            logger.info("%s: trained in %.0f s", name, time.perf_counter() - started)
        run_dirs.append(run_dir)
    return compare_runs(run_dirs, settings.data, out, options, force=overwrite)


def _evaluate_options(
    settings: DemoSettings, suite: str, methods: tuple[str, ...] | None
) -> EvaluateOptions:
    """The comparison's options: ``methods``, else the suite's (with ``settings.perturbation``
    the perturbation methods too; a B-cos run's ``bcos`` is among them, an own map of
    ``CHECK_METHODS``), at the settings' sizes."""
    chosen = tuple(methods or SUITE_METHODS[suite])
    if settings.perturbation and not methods:
        chosen = (*chosen, *(m for m in DEFAULT_METHODS if m not in chosen))
    return EvaluateOptions(
        methods=chosen,
        max_images=settings.eval_images,
        max_val_images=settings.val_images,
        stability_images=settings.stability_images,
        stability_fractions=settings.stability_fractions,
        # SISE's mu = 0.3 keeps the feature maps with larger gradients only: the SISE paper's
        # ablation reports a 4x shorter run with a barely changed map (section "Complexity")
        method_options={"rise": {"n_masks": settings.rise_masks}, "sise": {"mu": settings.sise_mu}},
        seed=settings.seed,
        sanity=settings.sanity,
        sanity_images=settings.sanity_images,
        grid_pg=settings.grid_pg,
        grid_pg_grids=settings.grid_pg_grids,
        check_methods=settings.check_methods,
    )
