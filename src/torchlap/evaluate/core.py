"""``torchlap evaluate``: every metric of the papers for one trained run, every explainer.

The flow for one run (each step batched on the model's device):

1. the run's facts are read from its ``config.json`` (:func:`torchlap.runs.read_run_facts`),
   the evaluation splits opened and checked against them (classes, channels: the way the run
   saw them, same built-in seed and size when ``--data`` is the run's own data), then the model
   is rebuilt (:func:`torchlap.load_run`) and the images decoded;
2. model metrics (paper 000 Table I), and the LAP layers as standalone predictors;
3. per explainer: maps of the validation images (to fit the global threshold of the paper's
   "binarization by thresholding") and of the evaluation images, then localization, keep-k%,
   Drop/Increase (SISE), Drop/Inc/Win (ante-hoc) and stability;
4. ``results.json``, ``tables.md``, plots, overlays and ``report.html``.

Each method's results are cached in ``methods/<method>.json`` with a fingerprint of everything
they depend on, so an interrupted evaluation resumes where it stopped; ``force=True`` recomputes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.environment import run_environment
from torchlap.evaluate.checks import check_grid_request, method_fingerprint_options, run_checks
from torchlap.evaluate.common import (
    EVALUATE_OUTPUTS,
    METRICS_REVISION,
    EvalData,
    atomic_write_json,
    clear_output_folder,
    explain_all,
    fingerprint,
    flat_map_counts,
    guard_output_folder,
    load_eval_data,
    method_options,
    metric,
    model_stamp,
    read_cache,
    write_cache,
)
from torchlap.evaluate.intervals import add_intervals, check_per_sample
from torchlap.evaluate.lap_predictors import lap_predictor_results
from torchlap.evaluate.lime_check import lime_applies, lime_results, load_lime_baseline
from torchlap.evaluate.method import evaluate_method, protocol
from torchlap.evaluate.options import DEFAULT_METHODS, THRESHOLD_FIT_SETS, EvaluateOptions
from torchlap.evaluate.provenance import (
    DataSettings,
    tensor_fingerprint,
)
from torchlap.evaluate.shard import active, broadcast_from_zero, is_writer
from torchlap.evaluate.split_data import decode_shared, open_run_splits
from torchlap.explainers import applicability, available, get, method_facts
from torchlap.logs import track
from torchlap.metrics import binary_classification_metrics, multiclass_classification_metrics
from torchlap.runs import LoadedRun, RunFacts, load_run, read_run_facts

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METHODS",
    "METRICS_REVISION",
    "RESULTS_FORMAT",
    "THRESHOLD_FIT_SETS",
    "EvalData",
    "EvaluateOptions",
    "evaluate_method",
    "evaluate_run",
    "explain_all",
    "flat_map_counts",
    "lap_predictor_results",
    "load_eval_data",
    "model_metrics",
    "protocol",
]

RESULTS_FORMAT = "torchlap-results"


@torch.no_grad()
def _logits(model: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    outs = [
        model(images[i : i + batch_size].to(device)).float()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outs)


def model_metrics(logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """Paper 000 Table I: accuracy/sensitivity/specificity/BA (2 classes) or top-1/top-5."""
    if logits.shape[1] == 2:
        results = binary_classification_metrics(logits, labels)
    else:
        results = multiclass_classification_metrics(logits, labels)
    return {name: metric(value) for name, value in results.items()}


_METHOD_SECTIONS = ("localization", "faithfulness", "stability", "timing", "notes")


def _check_method_cache(method: str, n_images: int) -> Callable[[Any], None]:
    """The check of a cached ``methods/<method>.json``: its sections as the report reads them,
    a score per image (a damaged cache is recomputed, not failing the report after the work)."""

    def check(cached: Any) -> None:
        # lazily: torchlap.report loads matplotlib (not at `torchlap --help`)
        from torchlap.report._common import check_results

        if not isinstance(cached, dict):
            raise TypeError(f"its results must be a dict, got {type(cached).__name__}")
        trial = {name: {method: cached[name]} for name in _METHOD_SECTIONS if name in cached}
        check_results(trial, "results")
        check_per_sample(cached, n_images)

    return check


def _example_indices(per_sample: Sequence[float | None]) -> dict[str, int]:
    """Best, median and worst IoU (top-scored selection) among samples with a region."""
    scored = sorted((v, i) for i, v in enumerate(per_sample) if v is not None)
    if not scored:
        return {}
    return {"best": scored[-1][1], "median": scored[len(scored) // 2][1], "worst": scored[0][1]}


# ------------------------------------------------------------------------------------- driver


@dataclass
class _Evaluation:
    """What every step of :func:`evaluate_run` reads: the run, its model and the two splits."""

    run: Any
    run_dir: Path
    data: str
    out_dir: Path
    options: EvaluateOptions
    device: torch.device
    model: nn.Module
    test: EvalData
    val: EvalData
    test_targets: Tensor
    val_targets: Tensor
    stamp: dict[str, Any]
    force: bool
    #: the model's class per test image (the keep-k% "vs prediction" maps' class)
    test_predictions: Tensor | None = None
    #: hash of the test and validation tensors evaluated (the caches' data key)
    data_key: str = ""
    #: paper 002's uninterpretable baseline for the LIME check (a LoadedRun), if any
    lime_baseline: Any = None
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: the model's logits of the test images (computed once, when the splits are read)
    test_logits: Tensor | None = None
    #: whether paper 002's LIME check runs (its cells checked)
    lime: bool = False
    #: the entries of ``out_dir`` torchlap did not write that ``--force`` replaces
    foreign: list[Path] = field(default_factory=list)

    def method_options(self, method: str) -> dict[str, Any]:
        """The explainer options of ``method`` with the run's facts (concept sets)."""
        return method_options(method, self.options, {"concept_sets": self.run.concept_sets})


def evaluate_run(
    run_dir: str | os.PathLike[str],
    data: str | None = None,
    out: str | os.PathLike[str] | None = None,
    options: EvaluateOptions | None = None,
    force: bool = False,
    write_report: bool = True,
    on_method: Callable[[str, float], None] | None = None,
    *,
    data_settings: DataSettings | None = None,
    lime_baseline: str | os.PathLike[str] | None = None,
    require_applicable: bool = True,
    on_checked: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Evaluate one run; write ``results.json`` (and tables, plots, report) into ``out``.

    ``data`` defaults to the run's own data, read with the run's own split seed, image count
    and data options; other data is read with ``data_settings`` (default: split seed 0, the
    data's default image count, no data options; ``results.json["data"]`` and the log say
    which). ``options.split`` is the split evaluated; the post-hoc methods' global thresholds
    and the learned LAP predictor are always fitted on the ``"val"`` split (paper 000), so
    ``split="val"`` scores them on the images they were fitted on: allowed, logged as a warning
    and noted in ``results["notes"]["thresholds"]``. ``out`` defaults to
    ``RUN_DIR/eval-<split>``. Methods that do not apply to the
    model (``lap`` on a model without LAP layers, ``bla`` without a BLA module, ``antehoc``
    without an AnteHocModel: :func:`torchlap.explainers.applicability`) are skipped with a
    warning; when none applies the request is refused before any work (unless
    ``require_applicable=False``, as ``compare`` passes for a vanilla run among LAP runs).

    ``lime_baseline``: a vanilla run of the same data and image size on which paper 002's LIME
    check (section 4.3) computes LIME and Grad-CAM for a BLA run; without it they are computed
    on the BLA model itself, and ``results.json`` and the report say so. Returns the results
    dict (the content of ``results.json``).

    Everything (options, output folder, run, data, methods) is checked before any file is
    written or removed; ``on_checked()`` is called then (the command line removes a user's log
    it was told to replace there, and opens its own).
    """
    job = prepare_evaluation(
        run_dir, data, out, options, force, data_settings=data_settings,
        lime_baseline=lime_baseline, require_applicable=require_applicable,
    )  # fmt: skip
    if is_writer():  # every check passed: what --force replaces is said, stale temps go
        clear_output_folder(job.out_dir, job.foreign)
    if on_checked is not None:
        on_checked()
    return finish_evaluation(job, write_report, on_method)


def prepare_evaluation(
    run_dir: str | os.PathLike[str],
    data: str | None = None,
    out: str | os.PathLike[str] | None = None,
    options: EvaluateOptions | None = None,
    force: bool = False,
    *,
    data_settings: DataSettings | None = None,
    lime_baseline: str | os.PathLike[str] | None = None,
    require_applicable: bool = True,
    loaded: dict[tuple, Any] | None = None,
    run: RunFacts | None = None,
) -> _Evaluation:
    """:func:`evaluate_run`'s checks (same arguments) and what its work reads (model, splits,
    test logits), writing and removing nothing (compare prepares every run before writing);
    ``loaded``: splits opened and read so far, filled here, shared by runs reading the same
    images; ``run``: ``run_dir``'s facts (or the run loaded) when the caller read them already
    (its ``config.json`` is not read again). ``lime_baseline`` may be a loaded run.
    Then ``clear_output_folder(job.out_dir, job.foreign)`` and :func:`finish_evaluation`."""
    options = options or EvaluateOptions()
    options.validate()
    folder = Path(out) if out is not None else Path(run_dir) / f"eval-{options.split}"
    foreign = []  # before any work: a user's own results.json... in out is not replaced
    if is_writer():
        foreign = guard_output_folder(
            folder, force, names=EVALUATE_OUTPUTS, apply=False, owner=run_dir
        )
    if (shard := active()) is not None:
        logger.info(
            "sharded evaluation: rank %d of %d processes (%s)",
            shard.rank, shard.world_size, "nccl" if shard.device.type == "cuda" else "gloo",
        )  # fmt: skip
    request = _Request(data, data_settings, lime_baseline, require_applicable, loaded, run)
    job = _prepare(Path(run_dir), request, out, options, force)
    job.lime = lime_applies(job)  # (its cells checked before any method runs)
    job.foreign = foreign
    return job


def finish_evaluation(
    job: _Evaluation,
    write_report: bool = True,
    on_method: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_run`'s work on a :func:`prepare_evaluation`: returns the results,
    written to ``results.json`` (with ``write_report``, the tables, plots and report too)."""
    results = _results_head(job, job.test_logits)
    example_maps = _evaluate_methods(job, results, on_method)
    if job.lime:
        results["lime_spearman"], results["lime_reference"] = lime_results(job)
    for topic, texts in job.notes.items():  # data and LIME notes, after the methods' own
        results.setdefault("notes", {}).setdefault(topic, []).extend(texts)
    if job.options.sanity or job.options.grid_pg:  # sanity checks, grid pointing game (issue 13)
        results.update(_checks(job, results["skipped"]))
    from torchlap.report._common import check_results  # lazily: loads matplotlib

    check_results(results, "results")  # as the report reads it, before results.json is replaced
    atomic_write_json(job.out_dir / "results.json", results)
    if write_report and is_writer():  # sharded evaluation: rank 0 alone writes
        # matplotlib loads with the first figure, not at `torchlap --help` (measured: importing
        # torchlap.report.plots costs about half of torch's own import time)
        from torchlap.evaluate.outputs import write_run_outputs

        name = results["run"]["name"]
        write_run_outputs(
            job.out_dir, {name: results}, {name: job.run.config}, job.test, example_maps, job.model
        )
    return results


def _checks(job: _Evaluation, skipped: Any) -> dict[str, Any]:
    """The sanity checks' and grid pointing game's results of the applicable methods."""
    options, chosen = job.options, job.options.check_methods
    applicable = [
        m for m in options.methods if m not in skipped and (chosen is None or m in chosen)
    ]
    return run_checks(
        job.model, job.test, job.test_targets, options, applicable, job.method_options,
        job.out_dir, job.stamp, job.data_key, job.force,
    )  # fmt: skip


@dataclass(frozen=True)
class _Request:
    """What :func:`evaluate_run` was asked beyond the options: the data and how to read it,
    the LIME baseline run, and whether a request without any applicable method is refused."""

    data: str | None
    settings: DataSettings | None
    lime_baseline: str | os.PathLike[str] | None
    require_applicable: bool
    loaded: dict[tuple, Any] | None = None
    run: RunFacts | None = None


def _warn_idle_ranks(n_images: int, batch_size: int) -> None:
    """Say so when a sharded evaluation has fewer batches of images than processes: sharding
    deals whole batches, so the processes without one only wait for the others."""
    shard = active()
    batches = -(-n_images // batch_size)
    if shard is None or shard.rank != 0 or batches >= shard.world_size:
        return
    logger.warning(
        "sharded evaluation: %d images in batches of %d make %d batch(es) for %d processes, so "
        "%d process(es) will only wait; pass --batch-size %d to give every process images",
        n_images, batch_size, batches, shard.world_size, shard.world_size - batches,
        -(-n_images // shard.world_size),
    )  # fmt: skip


def _prepare(
    run_dir: Path, request: _Request, out: Any, options: EvaluateOptions, force: bool
) -> _Evaluation:
    """The run's facts read and its splits opened (the data checked against them), then the
    model rebuilt, the images decoded, the test logits computed and the targets chosen."""
    facts = request.run if request.run is not None else read_run_facts(run_dir)
    check_grid_request(options, facts)  # before any work
    # the splits opened: data of other classes or channels refused before a model is built
    shared = request.loaded
    splits = open_run_splits(facts, request.data, options, request.settings, shared)
    for text in splits.notes.get("data", []):
        logger.warning("%s: %s", run_dir, text)
    run = facts if isinstance(facts, LoadedRun) else load_run(facts)
    device = torch.device(options.device)
    model = run.model.to(device).eval()
    _check_applicable(run_dir, model, options, request.require_applicable)
    baseline = load_lime_baseline(run, model, options, request.lime_baseline, device)
    test = decode_shared(run, splits.test, options.batch_size, shared)
    _build_explainers(model, options, run.concept_sets, test.images[:1].to(device))
    val = decode_shared(run, splits.val, options.batch_size, shared)
    data_key = tensor_fingerprint(test.images, test.labels, test.masks, test.has_region,
                                  val.images, val.labels, val.masks, val.has_region)  # fmt: skip
    _warn_idle_ranks(len(test), options.batch_size)
    test_logits = _logits(model, test.images, options.batch_size, device)
    val_logits = _logits(model, val.images, options.batch_size, device)
    label = options.target == "label"
    # rank 0's predictions on every rank: which images are explained again for another class
    # decides how many (collective) explanation calls each rank makes, and a near tie could
    # round differently on another GPU, leaving the ranks waiting for each other
    test_predictions = broadcast_from_zero(test_logits.argmax(1).cpu())
    val_predictions = broadcast_from_zero(val_logits.argmax(1).cpu())
    if options.split == "val":
        _note_fit_on_evaluated(run_dir, splits.notes)
    job = _Evaluation(
        run=run,
        run_dir=run_dir,
        data=splits.data,
        out_dir=Path(out) if out is not None else run_dir / f"eval-{options.split}",
        options=options,
        device=device,
        model=model,
        test=test,
        val=val,
        test_targets=test.labels if label else test_predictions,
        val_targets=val.labels if label else val_predictions,
        stamp=model_stamp(run),
        force=force,
        test_predictions=test_predictions,
        data_key=data_key,
        lime_baseline=baseline,
        notes=splits.notes,
        test_logits=test_logits,
    )
    return job


#: results["notes"]["thresholds"] of an evaluation of the validation split
_FIT_ON_EVALUATED_NOTE = (
    "--split val: the post-hoc methods' global thresholds and the learned LAP predictor were "
    "fitted on the validation images, the very images evaluated (paper 000 fits on the "
    "validation set and evaluates the test set), which favours them over LAP's fixed 0.5; "
    "evaluate --split test for the paper's protocol"
)


def _note_fit_on_evaluated(run_dir: Path, notes: dict[str, list[str]]) -> None:
    """``--split val``: say (log warning, ``results["notes"]["thresholds"]``) that what is
    fitted on the validation images is scored on those same images."""
    logger.warning("%s: %s", run_dir, _FIT_ON_EVALUATED_NOTE)
    notes.setdefault("thresholds", []).append(_FIT_ON_EVALUATED_NOTE)


def _check_applicable(
    run_dir: Path, model: nn.Module, options: EvaluateOptions, require: bool
) -> None:
    """Refuse a request none of whose methods applies to the model; else warn per skip."""
    skipped = {m: why for m in options.methods if (why := applicability(m, model)) is not None}
    if require and len(skipped) == len(options.methods):
        listed = "; ".join(f"{method} ({why})" for method, why in skipped.items())
        fitting = [m for m in available() if applicability(m, model) is None]
        raise ValueError(
            f"{run_dir}: no requested method applies to its model: {listed}; pass --methods "
            f"with methods that apply to it: {', '.join(fitting)}"
        )
    for method, why in skipped.items():
        logger.warning("%s: skipped, it does not apply to the model of %s (%s)", method,
                       run_dir, why)  # fmt: skip


def _build_explainers(
    model: nn.Module, options: EvaluateOptions, concept_sets: Any, probe: Tensor
) -> None:
    """Build every applicable method's explainer once with its options (``--method-options``
    and the run's facts) and resolve its layers on ``probe`` (one image): a bad value or layer
    is named here, before any work, not when the method's turn comes after the others ran."""
    for method in options.methods:
        if applicability(method, model) is None:
            chosen = method_options(method, options, {"concept_sets": concept_sets})
            try:
                get(method)(model, **chosen).check_layers(probe)
            except (TypeError, ValueError) as error:
                kind = TypeError if isinstance(error, TypeError) else ValueError
                raise kind(f"the options of {method} (--method-options): {error}") from None


def _chance_facts(labels: Tensor, masks: Tensor, n_classes: int) -> dict[str, Any]:
    """The facts of ``results["data"]`` the report's chance levels read: ``n_classes``;
    ``label_counts``, the number of test images per class index (the majority share is the
    chance of top-1 accuracy, the k largest counts that of top-k); ``n_with_region``, the
    images whose mask is non-empty, the ones EBPG and the pointing game score (a negative
    image flagged ``has_region`` with an empty mask is not among them); ``region_fraction``,
    their mean region share (a constant map's EBPG, a random point's pointing game), ``None``
    without one."""
    scored = masks.flatten(1).bool().any(dim=1)
    return {
        "n_with_region": int(scored.sum()),
        "n_classes": n_classes,
        "label_counts": torch.bincount(labels.long().cpu(), minlength=n_classes).tolist(),
        "region_fraction": float(masks[scored].float().mean()) if bool(scored.any()) else None,
    }


def _environment(device: torch.device) -> dict[str, Any]:
    """``results["environment"]``: the software and threads of the evaluation (rank 0's in a
    sharded one; :func:`~torchlap.environment.run_environment`; the weights load in float32)
    and ``processes``, the number of processes that shared its images."""
    shard = active()
    processes = 1 if shard is None else shard.world_size
    return {**run_environment(device.type, "32-true"), "processes": processes}


def _results_head(job: _Evaluation, test_logits: Tensor) -> dict[str, Any]:
    """``results.json`` before the methods: run, data, options, protocol, model metrics, LAP
    predictors, the facts of the methods (display name, kind) the report reads."""
    test, options = job.test, job.options
    return {
        "format": RESULTS_FORMAT,
        "run": {
            "name": job.run_dir.resolve().name,
            "run_dir": str(job.run_dir),
            "path": str(job.run_dir.resolve()),  # whose folder out is (evaluate.output_owner)
        },
        "data": {
            "name": str(job.data),
            **(test.settings.to_dict() if test.settings is not None else {}),
            "fingerprint": job.data_key,
            "split": options.split,
            "n_images": len(test),
            "n_val_images": len(job.val),
            **_chance_facts(test.labels, test.masks, len(test.classes)),
        },
        "options": asdict(options),
        "protocol": protocol(options, job.run.concept_sets),
        "environment": _environment(job.device),
        "model": model_metrics(test_logits.cpu(), test.labels),
        "lap_predictors": lap_predictor_results(
            job.model,
            test,
            job.val,
            test_logits.argmax(1).cpu(),
            job.run.concept_sets,
            options.batch_size,
            job.device,
            options.seed,
        ),
        "localization": {},
        "faithfulness": {},
        "stability": {},
        "timing": {},
        "examples": {},
        "skipped": {},
        "methods": method_facts(options.methods),
    }


def _evaluate_methods(
    job: _Evaluation, results: dict[str, Any], on_method: Callable[[str, float], None] | None
) -> dict[str, tuple[Tensor, Tensor]]:
    """Every method into ``results`` (cached per method), then the bootstrap intervals of their
    localization and faithfulness metrics (:func:`~torchlap.evaluate.intervals.add_intervals`,
    from each method's per-image scores); returns the maps of the example images (best,
    median, worst IoU) per method."""
    example_maps: dict[str, tuple[Tensor, Tensor]] = {}
    per_sample: dict[str, dict[str, list]] = {}
    concept_sets = protocol(job.options, job.run.concept_sets)["lap_concept_sets"]
    runnable = []
    for method in job.options.methods:  # skipped methods are recorded, not counted as progress
        reason = applicability(method, job.model)
        if reason is None:
            runnable.append(method)
        else:
            results["skipped"][method] = reason
    for method in track(runnable, description="evaluating", unit="methods", describe=str):
        cache = job.out_dir / "methods" / f"{method}.json"
        parts = {
            "method": method,
            "options": method_fingerprint_options(job.options),
            "weights": job.stamp,
            "data": job.data_key,  # the images, labels and regions evaluated
            "concept_sets": concept_sets,
        }
        key = fingerprint(parts)
        method_results = (
            None
            if job.force
            else read_cache(cache, key, method, parts, _check_method_cache(method, len(job.test)))
        )
        maps = None
        if method_results is None:
            started = time.perf_counter()
            method_results, maps = evaluate_method(
                method, job.model, job.test, job.val, job.test_targets, job.val_targets,
                job.options, job.device, job.run.concept_sets,
                predictions=job.test_predictions,
            )  # fmt: skip
            write_cache(cache, key, parts, method_results)
            if on_method is not None:
                on_method(method, time.perf_counter() - started)
        for section in ("localization", "faithfulness", "stability", "timing", "maps"):
            if section in method_results:
                results.setdefault(section, {})[method] = method_results[section]
        if method_results.get("notes"):
            results.setdefault("notes", {})[method] = method_results["notes"]
        if "per_sample" in method_results:
            per_sample[method] = method_results["per_sample"]
        chosen = _example_indices(per_sample.get(method, {}).get("iou_topk", []))
        if chosen:
            results["examples"][method] = chosen
            if job.options.examples:
                example_maps[method] = _examples(job, method, chosen, maps)
    add_intervals(results, per_sample, job.options)
    return example_maps


def _examples(
    job: _Evaluation, method: str, chosen: dict[str, int], maps: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The example images' indices and maps (recomputed when the results came from cache)."""
    indices = torch.tensor(sorted(set(chosen.values())), device="cpu")  # rows of host tensors
    if maps is not None:
        return indices, maps[indices]
    return indices, explain_all(
        job.model, job.test.images[indices], job.test_targets[indices], method,
        job.method_options(method), job.options.batch_size, job.device,
    )  # fmt: skip
