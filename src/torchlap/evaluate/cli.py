"""``torchlap evaluate`` and ``torchlap compare``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from torchlap.cli_style import given_options, key_values, listed_names, nonblank_path
from torchlap.evaluate.bla_comparison import LIME_CHECK_DEFAULTS, LIME_CHECK_FIELDS
from torchlap.evaluate.checks import MAX_GRID_PG_GRIDS
from torchlap.evaluate.cli_paths import check_data, lime_baseline_path, run_paths
from torchlap.evaluate.cli_refusals import refuse_ignored
from torchlap.evaluate.common import (
    COMPARE_OUTPUTS,
    EVALUATE_OUTPUTS,
    clear_output_folder,
    guard_output_folder,
)
from torchlap.evaluate.compare import compare_runs, run_names
from torchlap.evaluate.core import evaluate_run
from torchlap.evaluate.options import DEFAULT_METHODS, MAX_TIE_DRAWS, EvaluateOptions
from torchlap.evaluate.output_owner import COMPARISON
from torchlap.evaluate.shard import ShardPlan, check_sharding, launch_sharded
from torchlap.explainers import available
from torchlap.io import loads_strict
from torchlap.logs import log_file, process_rank
from torchlap.metrics.uncertainty import MAX_RESAMPLES
from torchlap.runs import load_run

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _parse_methods(methods: str, option: str = "--methods") -> tuple[str, ...]:
    """The names of ``--methods`` (or ``--check-methods``), each a known method."""
    try:
        names = tuple(listed_names(methods, option))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if not names:
        raise typer.BadParameter(f"{option} needs at least one method name, got {methods!r}")
    unknown = [name for name in names if name not in available()]
    if unknown:
        raise typer.BadParameter(
            f"{option} names unknown method(s) {', '.join(unknown)}; available: "
            f"{', '.join(available())}"
        )
    return names


def _parse_method_options(text: str | None) -> dict:
    """``--method-options``: a JSON object of method name -> option object, with finite
    numbers only and each key once."""
    if text is None:
        return {}
    try:
        value = loads_strict(text, "--method-options", "method and option")
    except json.JSONDecodeError as error:
        raise typer.BadParameter(
            f"--method-options is not valid JSON ({error}), got {text!r}; pass a JSON object "
            'of method names and option objects, e.g. {"rise": {"n_masks": 1000}}'
        ) from None
    except ValueError as error:  # NaN/Infinity, a repeated key
        raise typer.BadParameter(str(error)) from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise typer.BadParameter(
            '--method-options must map method names to option objects, e.g. {"rise": '
            f'{{"n_masks": 1000}}}}, got {text!r}'
        )
    return value


# the command parameters that are EvaluateOptions fields under the same name (evaluate and
# compare share them; methods and method_options are parsed first)
_OPTION_FIELDS = (
    "split", "batch_size", "max_images", "max_val_images", "stability_images", "baseline",
    "target", "lime_images", "device", "seed", "threshold_fit", "threshold_classifier", "ties",
    "tie_draws", "bootstrap_resamples", "bootstrap_level",
    "lap_all_ranking", "sanity", "sanity_images", "sanity_threshold", "grid_pg",
    "grid_pg_shape", "grid_pg_grids", "grid_pg_confidence",
)  # fmt: skip


def _parse_check_methods(text: str | None) -> tuple[str, ...] | None:
    """``--check-methods``: ``None`` (every evaluated method) or the listed names."""
    return None if text is None else _parse_methods(text, "--check-methods")


def _parse_lime_options(items: list[str] | None) -> tuple[dict, dict]:
    """``--lime-option KEY=VALUE`` (repeatable): the LIME check's options, each value parsed
    as JSON when it is (``baseline=0.5``, ``cam_relu=false``), else kept as its text
    (``score=logit``), as ``(lime_options, fields)``: the keys of ``LIME_CHECK_FIELDS``
    (``n_samples``, ``patch``) go to their ``EvaluateOptions`` fields (``lime_samples``,
    ``lime_patch``), the others to ``lime_options``; an unknown key is refused here (the
    flag accepts both kinds), the values are checked by ``EvaluateOptions.validate``."""
    try:
        given = key_values(items, "--lime-option")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    unknown = sorted(set(given) - set(LIME_CHECK_DEFAULTS) - set(LIME_CHECK_FIELDS))
    if unknown:
        accepted = ", ".join([*LIME_CHECK_DEFAULTS, *LIME_CHECK_FIELDS])
        raise typer.BadParameter(
            f"--lime-option: unknown LIME check option(s) {unknown}; accepted: {accepted}"
        )
    fields = {name: given.pop(key) for key, name in LIME_CHECK_FIELDS.items() if key in given}
    return given, fields


def _options(params: dict[str, object]) -> EvaluateOptions:
    """The command's ``EvaluateOptions`` from its parameters (``locals()`` of the command,
    whose ``ctx`` tells the options the user gave from their defaults)."""
    if params["data"] is not None:
        check_data(str(params["data"]))
    lime_options, lime_fields = _parse_lime_options(params["lime_option"])  # type: ignore[arg-type]
    options = EvaluateOptions(
        methods=_parse_methods(str(params["methods"])),
        method_options=_parse_method_options(params["method_options"]),  # type: ignore[arg-type]
        check_methods=_parse_check_methods(params["check_methods"]),  # type: ignore[arg-type]
        lime_options=lime_options,
        **lime_fields,
        **{name: params[name] for name in _OPTION_FIELDS},  # type: ignore[arg-type]
    )
    try:
        options.validate()
        refuse_ignored(options, given_options(params.get("ctx")))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return options


_METHODS_HELP = "Comma-separated explainer names."
_DEFAULT_METHODS = ",".join(DEFAULT_METHODS)

# the options evaluate and compare share, declared once
Split = Annotated[
    str,
    typer.Option(
        "--split",
        help="train, val or test. Global thresholds and the learned LAP predictor are always "
        "fitted on val: --split val scores them on their own fitting images (warned, noted).",
    ),
]
Methods = Annotated[str, typer.Option("--methods", help=_METHODS_HELP)]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Recompute methods already computed, and replace output files torchlap did not "
        "write (it names them).",
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size")]
MaxImages = Annotated[int | None, typer.Option("--max-images", help="Cap on evaluation images.")]
MaxValImages = Annotated[int, typer.Option("--max-val-images")]
StabilityImages = Annotated[int, typer.Option("--stability-images")]
Baseline = Annotated[
    str,
    typer.Option(
        "--baseline",
        help="Fill of the pixels keep-k% and Drop%/Increase% remove: zero (papers'), mean, blur.",
    ),
]
Target = Annotated[str, typer.Option("--target", help="prediction or label.")]
MethodOptions = Annotated[
    str | None,
    typer.Option("--method-options", help='JSON, e.g. {"rise": {"n_masks": 500}}'),
]
LimeImages = Annotated[
    int,
    typer.Option(
        "--lime-images",
        help="BLA models: images for paper 002's LIME rank correlation (0: off).",
    ),
]
#: the LIME check's options as --lime-option writes them, with their defaults
_LIME_DEFAULTS = ", ".join(
    f"{key}={value if isinstance(value, str) else json.dumps(value)}"
    for key, value in {
        **LIME_CHECK_DEFAULTS,
        **{key: getattr(EvaluateOptions(), name) for key, name in LIME_CHECK_FIELDS.items()},
    }.items()
)
LimeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--lime-option",
        help="KEY=VALUE of paper 002's LIME check (repeatable; BLA runs, bla among --methods), "
        f"the keys and their defaults: {_LIME_DEFAULTS} (n_samples: LIME's occlusion "
        "patterns; patch: square cells of N px, null: the cells of BLA's feature map); e.g. "
        "--lime-option weighting=none --lime-option cam_relu=false. A cached check computed "
        "with other options is recomputed.",
    ),
]
Device = Annotated[str, typer.Option("--device")]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed of every random draw: tie-breaks, stability noise (both seeded per image), "
        "threshold-fit subsample, bootstrap, LIME, sanity checks, grid pointing game, and "
        "RISE's masks unless --method-options gives rise a seed.",
    ),
]
ThresholdFit = Annotated[
    str,
    typer.Option(
        "--threshold-fit",
        help="Validation images that fit the other methods' global threshold: all (paper 000) "
        "or with_region.",
    ),
]
ThresholdClassifier = Annotated[
    str,
    typer.Option(
        "--threshold-classifier",
        help="The classifier whose boundary is the global threshold: ridge (paper 000's "
        "RidgeClassifier) or logistic.",
    ),
]
Ties = Annotated[
    str,
    typer.Option(
        "--ties",
        help="keep-k% and Drop/Increase ties at the k-th score: random (mean of --tie-draws "
        "seeded draws) or index (raster order).",
    ),
]
TieDraws = Annotated[
    int,
    typer.Option(
        "--tie-draws",
        help=f"--ties random: tie-breaks averaged, 1 to {MAX_TIE_DRAWS} (the mean of "
        f"{MAX_TIE_DRAWS} is within 1% of one draw's spread; each draw re-runs the model on "
        "every tied image).",
    ),
]
BootstrapResamples = Annotated[
    int,
    typer.Option(
        "--bootstrap-resamples",
        help="Draws of the images for the percentile bootstrap intervals of the localization "
        "means and of each own-map method's lead over the others, 0 (no intervals) to "
        f"{MAX_RESAMPLES}.",
    ),
]
BootstrapLevel = Annotated[
    float,
    typer.Option("--bootstrap-level", help="Coverage of the bootstrap intervals, in (0, 1)."),
]
LapAllRanking = Annotated[
    str,
    typer.Option(
        "--lap-all-ranking",
        help="LAP All of the top-k metrics: unclipped_sum (paper 000's supplement) or algorithm1.",
    ),
]

Sanity = Annotated[
    bool,
    typer.Option(
        "--sanity",
        help="Sanity checks (Adebayo et al. 2018): model-parameter randomization, cascading "
        "and independent, per method (results key 'sanity').",
    ),
]
SanityImages = Annotated[int, typer.Option("--sanity-images", help="Images of the sanity checks.")]
SanityThreshold = Annotated[
    float,
    typer.Option(
        "--sanity-threshold",
        help="A method passes when its Spearman |map| correlation at full randomization is "
        "below this.",
    ),
]
CheckMethods = Annotated[
    str | None,
    typer.Option(
        "--check-methods",
        help="Comma-separated methods of --sanity and --grid-pg, among --methods (default: "
        "every --methods); only with --sanity or --grid-pg.",
    ),
]
GridPg = Annotated[
    bool,
    typer.Option(
        "--grid-pg",
        help="Synthetic grid pointing game: grids of confidently classified images of distinct "
        "classes (results key 'grid_pointing_game').",
    ),
]
GridPgShape = Annotated[
    str,
    typer.Option("--grid-pg-shape", help="auto (2x2, or 1xK with K < 4 classes) or RxC."),
]
GridPgGrids = Annotated[
    int, typer.Option("--grid-pg-grids", help=f"Grids to build, 1 to {MAX_GRID_PG_GRIDS}.")
]
GridPgConfidence = Annotated[
    float, typer.Option("--grid-pg-confidence", help="Minimum softmax probability of a cell.")
]
Devices = Annotated[
    str,
    typer.Option(
        "--devices",
        help="Processes per node that share the images (CPU: a count; CUDA: a count or GPU ids "
        "such as 0,1). Rank 0 writes what one process writes.",
    ),
]
NumNodes = Annotated[int, typer.Option("--num-nodes", help="Nodes (torchrun/SLURM; DDP).")]


def _out_folder(out: str | None) -> Path | None:
    """``--out`` as a path (``None`` when not given); an empty value is refused: as a path it
    is the current folder, which would receive results.json, figures/ and methods/ (an unset
    shell variable, ``--out "$OUT"``, not a request), as ``torchlap train`` refuses it."""
    if out is None:
        return None
    try:
        return Path(nonblank_path(out, "--out"))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _shard_plan(devices: str, num_nodes: int, device: str) -> ShardPlan:
    """``--devices``/``--num-nodes`` checked before any process starts."""
    try:
        return check_sharding(devices, num_nodes, device)
    except (ValueError, TypeError) as error:
        raise typer.BadParameter(str(error)) from None


def _is_rank_zero() -> bool:
    return process_rank() == 0


def _launch(
    plan: ShardPlan,
    log_path: Path,
    call: Callable[[Callable[[], None] | None], T],
    foreign: Sequence[Path] = (),
) -> T | None:
    """Run ``call(on_checked)`` on every process of ``plan``; rank 0 logs every line to
    ``log_path``, from when ``call`` says (``on_checked()``) that every check passed: then the
    user's log among ``foreign`` (``--force``) is removed and the log opens (once the folder
    exists). A refused command removes nothing and writes no log.

    Returns ``call``'s result on rank 0 and None on the other ranks (which print nothing)."""
    rank_zero = _is_rank_zero()  # with --devices N the other ranks re-run the command
    checked: list[bool] = []

    def on_checked() -> None:
        clear_output_folder(log_path.parent, [p for p in foreign if p.name == log_path.name])
        checked.append(True)

    def work() -> T:
        if not rank_zero:
            return call(None)
        with log_file(log_path, ready=lambda: bool(checked) and log_path.parent.is_dir()):
            return call(on_checked)

    return launch_sharded(plan, work)


def evaluate_command(
    ctx: typer.Context,
    run: str = typer.Option(
        ..., "--run", metavar="<path>", help="A run folder written by `torchlap train`."
    ),
    data: str = typer.Option(None, "--data", help="Built-in name or folder (default: the run's)."),
    split: Split = "test",
    methods: Methods = _DEFAULT_METHODS,
    out: str = typer.Option(
        None, "--out", metavar="<path>", help="Output folder (default RUN/eval-SPLIT)."
    ),
    force: Force = False,
    batch_size: BatchSize = 32,
    max_images: MaxImages = None,
    max_val_images: MaxValImages = 200,
    stability_images: StabilityImages = 16,
    baseline: Baseline = "zero",
    target: Target = "prediction",
    method_options: MethodOptions = None,
    lime_images: LimeImages = 8,
    lime_option: LimeOption = None,
    device: Device = "cpu",
    seed: Seed = 0,
    threshold_fit: ThresholdFit = "all",
    threshold_classifier: ThresholdClassifier = "ridge",
    ties: Ties = "random",
    tie_draws: TieDraws = 4,
    bootstrap_resamples: BootstrapResamples = 2000,
    bootstrap_level: BootstrapLevel = 0.95,
    lap_all_ranking: LapAllRanking = "unclipped_sum",
    sanity: Sanity = False,
    sanity_images: SanityImages = 8,
    sanity_threshold: SanityThreshold = 0.5,
    grid_pg: GridPg = False,
    grid_pg_shape: GridPgShape = "auto",
    grid_pg_grids: GridPgGrids = 16,
    grid_pg_confidence: GridPgConfidence = 0.9,
    check_methods: CheckMethods = None,
    lime_baseline: str = typer.Option(
        None,
        "--lime-baseline",
        help="BLA runs: a vanilla run of the same data on which paper 002's LIME check "
        "computes LIME and Grad-CAM (default: the BLA model itself, as the report says).",
    ),
    devices: Devices = "1",
    num_nodes: NumNodes = 1,
) -> None:
    """Every metric of the papers for one run and every method, with a report.

    Writes results.json, tables.md, plots and report.html into `--out` (default
    RUN/eval-SPLIT) and a log, evaluate.log. Methods already computed are reused.

    Example: `torchlap evaluate --run runs/bb-lap --max-images 32 --methods lap,gradcam,rise`

    Cost on a 2-core CPU: about 3 min per run at 64 px for 32 images with the demo's
    settings (200 RISE masks); the defaults (every test image, every method, 4000 RISE
    masks) take tens of minutes: start with `--max-images` and `--methods`.

    `--devices N` (and `--num-nodes`) splits the images over N processes (GPUs with
    `--device cuda`; torchrun and SLURM too): rank 0 writes what one process writes.
    """
    options = _options(locals())
    (run_dir,) = run_paths([run], "--run")  # (as text: typer turns "" into Path("."))
    baseline = lime_baseline_path(lime_baseline, options)
    out_dir = _out_folder(out) or run_dir / f"eval-{split}"
    plan = _shard_plan(devices, num_nodes, device)
    foreign = []  # refused now; a user's evaluate.log is removed once everything is checked
    if _is_rank_zero():
        names = (*EVALUATE_OUTPUTS, "evaluate.log")
        foreign = guard_output_folder(out_dir, force, names=names, apply=False, owner=run_dir)
    if plan.world_size > 1:
        load_run(run_dir)  # a bad run folder is reported once, before the processes start
    call = partial(evaluate_run, run_dir, data, out_dir, options, force, lime_baseline=baseline)
    log = out_dir / "evaluate.log"
    results = _launch(plan, log, lambda checked: call(on_checked=checked), foreign)
    if results is None:  # not rank 0
        return
    typer.echo(f"results: {out_dir / 'results.json'}")
    typer.echo(f"report:  {out_dir / 'report.html'}")


def compare_command(
    ctx: typer.Context,
    runs_text: list[str] = typer.Argument(
        ..., metavar="RUNS", help="Run folders to put side by side.", show_default=False
    ),
    data: str = typer.Option(None, "--data", help="Built-in name or folder (default: each run's)."),
    out_text: str = typer.Option("comparison", "--out", metavar="<path>", help="Output folder."),
    split: Split = "test",
    methods: Methods = _DEFAULT_METHODS,
    force: Force = False,
    batch_size: BatchSize = 32,
    max_images: MaxImages = None,
    max_val_images: MaxValImages = 200,
    stability_images: StabilityImages = 16,
    baseline: Baseline = "zero",
    target: Target = "prediction",
    method_options: MethodOptions = None,
    lime_images: LimeImages = 8,
    lime_option: LimeOption = None,
    device: Device = "cpu",
    seed: Seed = 0,
    threshold_fit: ThresholdFit = "all",
    threshold_classifier: ThresholdClassifier = "ridge",
    ties: Ties = "random",
    tie_draws: TieDraws = 4,
    bootstrap_resamples: BootstrapResamples = 2000,
    bootstrap_level: BootstrapLevel = 0.95,
    lap_all_ranking: LapAllRanking = "unclipped_sum",
    sanity: Sanity = False,
    sanity_images: SanityImages = 8,
    sanity_threshold: SanityThreshold = 0.5,
    grid_pg: GridPg = False,
    grid_pg_shape: GridPgShape = "auto",
    grid_pg_grids: GridPgGrids = 16,
    grid_pg_confidence: GridPgConfidence = 0.9,
    check_methods: CheckMethods = None,
    devices: Devices = "1",
    num_nodes: NumNodes = 1,
) -> None:
    """Evaluate several runs (vanilla, weak, expert, ...) into one table and report.

    Example: `torchlap compare runs/vanilla runs/ws-lap runs/bb-lap --out comparison`

    Cost on a 2-core CPU: `torchlap evaluate`'s for each run (about 3 min per run for 32
    images with the demo's settings; tens of minutes per run with the defaults).
    """
    options = _options(locals())
    runs = run_paths(runs_text, "RUNS")  # text: typer made '' the current folder
    out = _out_folder(out_text) or Path("comparison")
    plan = _shard_plan(devices, num_nodes, device)
    names = run_names(runs)  # refused before a guard replaces anything under --force
    foreign = []  # refused now; a user's compare.log is removed once everything is checked
    if _is_rank_zero():
        foreign = guard_output_folder(
            out, force, names=(*COMPARE_OUTPUTS, "compare.log"), apply=False, owner=COMPARISON
        )
        for name, run in zip(names, runs, strict=True):
            guard_output_folder(out / name, force, names=EVALUATE_OUTPUTS, apply=False, owner=run)
    report = _launch(
        plan,
        out / "compare.log",
        lambda on_checked: compare_runs(
            runs, data, out, options, force=force, on_checked=on_checked
        ),
        foreign,
    )
    if report is None:  # not rank 0
        return
    typer.echo(f"tables: {out / 'tables.md'}")
    typer.echo(f"report: {report}")


def register_evaluate(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``compare`` to the ``torchlap`` command."""
    app.command("evaluate")(evaluate_command)
    app.command("compare")(compare_command)
