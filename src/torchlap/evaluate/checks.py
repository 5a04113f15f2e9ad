"""The extra checks of ``torchlap evaluate --sanity --grid-pg`` and ``torchlap compare``: the
model-parameter randomization test per method, the grid pointing game, and the data
randomization test (Adebayo et al. 2018; the measurements are in
:mod:`torchlap.evaluate.sanity` and :mod:`torchlap.metrics.grid_pointing`), each cached per
method like the other metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.data.grid import GridSet, build_grids, confident_images, resolve_grid_shape
from torchlap.evaluate.common import (
    atomic_write_json,
    explain_all,
    fingerprint,
    load_eval_data,
    method_options,
    read_cache,
    section_check,
    write_cache,
)
from torchlap.evaluate.sanity import (
    DEFAULT_SANITY_THRESHOLD,
    GRANULARITIES,
    MODES,
    ExplainFn,
    sanity_check,
    spearman_abs,
    ssim_abs,
    summarize,
)
from torchlap.evaluate.shard import is_writer, on_rank_zero
from torchlap.explainers import available, method_facts
from torchlap.logs import track
from torchlap.metrics.grid_pointing import grid_pointing_scores, grid_pointing_summary
from torchlap.runs import load_run

logger = logging.getLogger(__name__)

__all__ = [
    "CHECK_OPTION_FIELDS",
    "MAX_GRID_PG_GRIDS",
    "check_grid_request",
    "compare_data_randomization",
    "data_randomization",
    "method_fingerprint_options",
    "run_checks",
    "validate_check_options",
]


#: EvaluateOptions fields of the sanity checks and the grid pointing game (they have their own
#: caches, so they are left out of the per-method fingerprint of the other metrics)
CHECK_OPTION_FIELDS = (
    "sanity",
    "sanity_images",
    "sanity_modes",
    "sanity_granularity",
    "sanity_threshold",
    "grid_pg",
    "grid_pg_shape",
    "grid_pg_grids",
    "grid_pg_confidence",
    "check_methods",
)


#: EvaluateOptions fields read after every method, from the cached per-image scores (the
#: bootstrap intervals), or only by the LIME check, whose cache keys them: left out of the
#: per-method fingerprint too (a method's maps and scores do not depend on them)
RUN_LEVEL_OPTION_FIELDS = (
    "bootstrap_resamples", "bootstrap_level", "lime_images", "lime_samples", "lime_patch",
    "lime_options",
)  # fmt: skip
#: the most grids of the grid pointing game: every grid is built as an image up front (a 2x2
#: grid of 224 px images is 2.4 MB), so 10**9 asked torch for terabytes and failed in its
#: allocator; the mean of 10000 grids is within 0.5 points of its limit (standard error)
MAX_GRID_PG_GRIDS = 10_000


def method_fingerprint_options(options: Any) -> dict[str, Any]:
    """``asdict(options)`` without ``methods`` and the fields of :data:`CHECK_OPTION_FIELDS`
    and :data:`RUN_LEVEL_OPTION_FIELDS`."""
    data = asdict(options) | {"methods": None}
    left_out = (*CHECK_OPTION_FIELDS, *RUN_LEVEL_OPTION_FIELDS)
    return {k: v for k, v in data.items() if k not in left_out}


def validate_check_options(options: Any) -> None:
    """Raise ``ValueError`` naming the first bad sanity / grid-pointing-game option."""
    chosen = options.check_methods
    if chosen is not None:
        if isinstance(chosen, str) or not all(isinstance(m, str) for m in chosen) or not chosen:
            raise ValueError(
                f"check_methods must be None or a non-empty tuple of method names, got {chosen!r}"
            )
        unknown = [m for m in chosen if m not in available()]
        if unknown:
            raise ValueError(
                f"check_methods: unknown method(s) {', '.join(unknown)}; "
                f"available: {', '.join(available())}"
            )
        # a filter of the evaluated methods (the demo passes its cheap methods for every
        # suite); one that keeps none would run no check while the checks were asked for
        if (options.sanity or options.grid_pg) and not set(chosen) & set(options.methods):
            raise ValueError(
                f"check_methods: none of {', '.join(chosen)} is among the evaluated methods "
                f"({', '.join(options.methods)}), so no method would be checked; the checks "
                "run on evaluated methods only: add them to --methods"
            )
    for name in ("sanity", "grid_pg"):
        if not isinstance(getattr(options, name), bool):
            raise ValueError(f"{name} must be a bool, got {getattr(options, name)!r}")
    for name in ("sanity_images", "grid_pg_grids"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if options.grid_pg_grids > MAX_GRID_PG_GRIDS:
        raise ValueError(
            f"grid_pg_grids must be an int from 1 to {MAX_GRID_PG_GRIDS}, got "
            f"{options.grid_pg_grids!r} (every grid is built as an image up front; the mean of "
            f"{MAX_GRID_PG_GRIDS} grids is within 0.5 points of its limit)"
        )
    modes = tuple(options.sanity_modes)
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise ValueError(f"sanity_modes must be distinct names from {MODES}, got {modes!r}")
    if options.sanity_granularity not in GRANULARITIES:
        raise ValueError(
            f"sanity_granularity must be one of {GRANULARITIES}, got {options.sanity_granularity!r}"
        )
    threshold = options.sanity_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"sanity_threshold must be a number in (-1, 1], got {threshold!r}")
    if not -1.0 < float(threshold) <= 1.0:
        raise ValueError(f"sanity_threshold must be a number in (-1, 1], got {threshold!r}")
    confidence = options.grid_pg_confidence
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise ValueError(f"grid_pg_confidence must be a number in [0, 1), got {confidence!r}")
    if not 0.0 <= float(confidence) < 1.0:
        raise ValueError(f"grid_pg_confidence must be a number in [0, 1), got {confidence!r}")
    if isinstance(options.grid_pg_shape, str) and options.grid_pg_shape.strip() != "auto":
        try:  # syntax only; classes checked later
            resolve_grid_shape(options.grid_pg_shape, 10**6)
        except ValueError as error:
            raise ValueError(f"grid_pg_shape: {error}") from None


def check_grid_request(options: Any, run: Any) -> None:
    """``ValueError`` when ``grid_pg`` asks for a grid of more cells than ``run`` has classes
    (the evaluated data has the run's classes; each cell shows another class), here before any
    work: it was a game skipped with the reason in ``results.json``, exit 0, after every
    method ran. (Too few *confidently classified* classes are known only then, and still skip
    the game.)"""
    if options.grid_pg and options.grid_pg_shape != "auto":
        try:
            resolve_grid_shape(options.grid_pg_shape, len(run.classes))
        except ValueError as error:
            raise ValueError(f"--grid-pg-shape {options.grid_pg_shape}: {error}") from None


def _sanity_options(options: Any) -> dict[str, Any]:
    return {
        "images": options.sanity_images,
        "modes": list(options.sanity_modes),
        "granularity": options.sanity_granularity,
        "threshold": float(options.sanity_threshold),
        "seed": options.seed,
        "target": options.target,
    }


def run_checks(
    model: nn.Module,
    test: Any,
    test_targets: Tensor,
    options: Any,
    methods: Sequence[str],
    method_options: Callable[[str], dict[str, Any]],
    out_dir: Any,
    stamp: dict[str, Any],
    data_name: str,
    force: bool = False,
) -> dict[str, Any]:
    """The ``sanity`` and ``grid_pointing_game`` results of :func:`evaluate_run` (each method
    cached in ``out_dir/methods/``, keyed by ``data_name``: the data's name or, as
    :func:`evaluate_run` passes it, the fingerprint of the evaluated tensors), and the figure
    of a few grids with every method's map."""
    out_dir = Path(out_dir)
    device = torch.device(options.device)
    results: dict[str, Any] = {}

    def explainer_for(method: str) -> ExplainFn:
        opts = method_options(method)

        def explain_fn(m: nn.Module, x: Tensor, t: Tensor) -> Tensor:
            return explain_all(m, x, t, method, opts, options.batch_size, device)

        return explain_fn

    if options.sanity:
        count = min(options.sanity_images, len(test))
        images, targets = test.images[:count], test_targets[:count]
        settings = _sanity_options(options)
        results["sanity"] = {}
        for method in track(methods, description="sanity checks", unit="methods", describe=str):
            cache = out_dir / "methods" / f"sanity_{method}.json"
            parts = {"sanity": settings, "method": method, "method_options": method_options(method),
                     "weights": stamp, "data": data_name, "n": count}  # fmt: skip
            key = fingerprint(parts)
            entry = (
                None
                if force
                else read_cache(
                    cache, key, f"sanity {method}", parts, section_check("sanity", method)
                )
            )
            if entry is None:
                started = time.perf_counter()
                entry = sanity_check(
                    model, images.to(device), targets.to(device), explainer_for(method),
                    modes=tuple(options.sanity_modes), granularity=options.sanity_granularity,
                    threshold=float(options.sanity_threshold), seed=options.seed,
                )  # fmt: skip
                entry["seconds"] = time.perf_counter() - started
                write_cache(cache, key, parts, entry)
            results["sanity"][method] = entry
    if options.grid_pg:
        results.update(
            _grid_pointing(model, test, options, methods, method_options, explainer_for,
                           out_dir, stamp, data_name, force)
        )  # fmt: skip
    return results


def _grid_pointing(
    model: nn.Module,
    test: Any,
    options: Any,
    methods: Sequence[str],
    method_options: Callable[[str], dict[str, Any]],
    explainer_for: Callable[[str], ExplainFn],
    out_dir: Any,
    stamp: dict[str, Any],
    data_name: str,
    force: bool,
) -> dict[str, Any]:
    try:
        grid_set = _grid_set(model, test, options)
    except ValueError as error:
        logger.warning("grid pointing game skipped: %s", error)
        return {"grid_pointing_game": {}, "grid_pointing_setup": {"skipped": str(error)}}
    grids, cells, targets = grid_set.queries()
    setup = grid_set.to_dict()
    setup["cell_size"] = list(test.images.shape[-2:])
    scores_by_method: dict[str, Any] = {}
    example_maps: dict[str, Tensor] = {}
    n_examples = min(3, len(grid_set))
    for method in track(methods, description="grid pointing game", unit="methods", describe=str):
        cache = out_dir / "methods" / f"grid_pg_{method}.json"
        parts = {"grid_pg": setup, "method": method, "method_options": method_options(method),
                 "weights": stamp, "data": data_name}  # fmt: skip
        key = fingerprint(parts)
        entry = None if force else read_cache(
            cache, key, f"grid pointing {method}", parts,
            section_check("grid_pointing_game", method),
        )  # fmt: skip
        explain_fn = explainer_for(method)
        if entry is None:
            maps = explain_fn(model, grid_set.images[grids], targets)
            scores, zero = grid_pointing_scores(maps, cells, grid_set.shape)
            entry = grid_pointing_summary(scores, zero, grid_set.shape)
            write_cache(cache, key, parts, entry)
            # cell 0 of the first grids
            first = torch.arange(n_examples, device=maps.device) * grid_set.n_cells
            example_maps[method] = maps[first]
        else:
            example_maps[method] = explain_fn(
                model, grid_set.images[:n_examples], grid_set.cell_classes[:n_examples, 0]
            )
        scores_by_method[method] = entry
    if example_maps and n_examples and is_writer():  # sharded: rank 0 alone writes
        # matplotlib loads with the first figure, not at `torchlap --help` (measured: importing
        # torchlap.report.plots costs about half of torch's own import time)
        from torchlap.report.sanity import plot_grid_examples

        try:
            plot_grid_examples(
                grid_set.images[:n_examples],
                grid_set.cell_classes[:n_examples, 0],
                grid_set.shape,
                example_maps,
                test.classes,
                out_dir / "figures" / "grid_pg_examples.png",
                method_facts(example_maps),
                overwrite=True,  # the output folder passed guard_output_folder
            )
        except (ValueError, OSError) as error:  # a figure must not lose the numbers
            logger.warning("grid pointing game figure not written: %s", error)
    return {"grid_pointing_game": scores_by_method, "grid_pointing_setup": setup}


def _grid_set(model: nn.Module, test: Any, options: Any) -> GridSet:
    """:func:`~torchlap.data.grid.build_grid_set` with the confident images decided by rank 0
    (sharded evaluation): a probability rounding differently on another GPU near the threshold
    would give that rank other grids (rank 0 then scores the gathered maps against its own
    cells) or too few eligible images (a rank skipping the collective explanation calls)."""
    shape = resolve_grid_shape(options.grid_pg_shape, len(test.classes))
    confidence = float(options.grid_pg_confidence)
    eligible = on_rank_zero(
        lambda: confident_images(model, test.images, test.labels, confidence, options.batch_size)[0]
    )
    return build_grids(
        test.images, test.labels, eligible, shape, options.grid_pg_grids, options.seed, confidence
    )


def data_randomization(
    real: nn.Module,
    shuffled: nn.Module,
    images: Tensor,
    labels: Tensor,
    methods: Sequence[str],
    method_options: Callable[[str], dict[str, Any]],
    batch_size: int,
    device: torch.device,
    threshold: float = DEFAULT_SANITY_THRESHOLD,
) -> dict[str, Any]:
    """The data randomization test (Adebayo et al. 2018, section 4): per method, similarity
    of the maps of a model trained on permuted labels with the real model's, both explaining
    the true label of the same images. ``passed`` = mean ``spearman_abs`` < ``threshold``."""
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "n_images": len(images),
        "target": "label",
        "methods": {},
    }
    for method in methods:
        opts = method_options(method)
        a = explain_all(real, images, labels, method, opts, batch_size, device)
        b = explain_all(shuffled, images, labels, method, opts, batch_size, device)
        rho = summarize(spearman_abs(a, b))
        ssim = summarize(ssim_abs(a, b))
        out["methods"][method] = {
            "spearman_abs": rho,
            "ssim": ssim,
            "passed": None if rho["mean"] is None else bool(rho["mean"] < threshold),
        }
    return out


def _real_counterpart(name: str, configs: dict[str, Any]) -> str | None:
    """The first run of ``configs`` trained on real labels with ``name``'s data and model."""
    shuffled = configs[name]

    def identity(config: dict[str, Any]) -> tuple:
        train = config.get("train", {})
        model = dict(config.get("model", {}))
        return (train.get("data"), train.get("model"), model.get("builder"), model.get("arch"))

    for other, config in configs.items():
        if (
            other != name
            and not config.get("shuffle_labels")
            and identity(config) == identity(shuffled)
        ):
            return other
    return None


def compare_data_randomization(
    run_dirs: dict[str, Any],
    configs: dict[str, Any],
    results: dict[str, Any],
    data: str | None,
    out: Any,
    options: Any,
    settings: Any = None,
) -> None:
    """For every run trained with ``--shuffle-labels``: :func:`data_randomization` against its
    real counterpart (same data, model family and architecture), on the first
    ``options.sanity_images`` images of the split (read with ``settings``, compare's
    common data settings, when given); stored as ``results[run]
    ["data_randomization"]`` and in that run's ``results.json``."""
    device = torch.device(options.device)
    for name, config in configs.items():
        if not config.get("shuffle_labels"):
            continue
        against = _real_counterpart(name, configs)
        if against is None:
            results[name]["data_randomization"] = {
                "skipped": "no run of the same data and model trained on the real labels"
            }
            continue
        real, shuffled = load_run(run_dirs[against]), load_run(run_dirs[name])
        source = data or config.get("train", {}).get("data")
        test = load_eval_data(real, source, options.split, options.sanity_images,
                              settings=settings)  # fmt: skip
        methods = [
            m
            for m in options.methods
            if m in results[name].get("localization", {}) or m in results[name].get("timing", {})
        ]
        entry = data_randomization(
            real.model.to(device).eval(),
            shuffled.model.to(device).eval(),
            test.images,
            test.labels,
            methods,
            lambda m, run=real: method_options(m, options, {"concept_sets": run.concept_sets}),
            options.batch_size,
            device,
            options.sanity_threshold,
        )
        entry["against"] = against
        results[name]["data_randomization"] = entry
        atomic_write_json(Path(out) / name / "results.json", results[name])
