"""What every part of an evaluation shares: the split's tensors (read by
:mod:`torchlap.evaluate.split_data`, re-exported here), the maps of a method, the
explainer options, the per-method cache (fingerprints) and the one JSON writer.

:mod:`torchlap.evaluate.core` (``torchlap evaluate``), :mod:`torchlap.evaluate.method` (one
method's metrics) and :mod:`torchlap.evaluate.checks` (sanity checks, grid pointing game) all
build on this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.evaluate.output_owner import OWN_FORMATS, describe_owner, job_records, read_record
from torchlap.evaluate.shard import (
    active,
    broadcast_from_zero,
    gather_rows,
    is_writer,
    shard_bounds,
)
from torchlap.evaluate.split_data import (
    EvalData,
    OpenedSplit,
    decode_eval_split,
    load_eval_data,
    open_eval_split,
)
from torchlap.explainers import get
from torchlap.io import atomic_write, check_folder_path, not_a_file, read_file
from torchlap.logs import track
from torchlap.runs import WEIGHTS_FILE, clean_stale_temps

logger = logging.getLogger(__name__)

__all__ = [
    "COMPARE_OUTPUTS",
    "EVALUATE_OUTPUTS",
    "FLAT_TOLERANCE",
    "METRICS_REVISION",
    "MODEL_KEYS",
    "OUTPUT_NAMES",
    "EvalData",
    "OpenedSplit",
    "atomic_write_json",
    "clear_output_folder",
    "decode_eval_split",
    "explain_all",
    "fingerprint",
    "fingerprint_parts",
    "flat_map_counts",
    "guard_output_folder",
    "load_eval_data",
    "method_options",
    "metric",
    "model_stamp",
    "open_eval_split",
    "read_cache",
    "section_check",
    "weights_stamp",
    "write_cache",
]

#: bumped whenever a metric's definition changes, so cached method results are recomputed;
#: what each revision changed: docs/metrics-revisions.md
METRICS_REVISION = 15


# ------------------------------------------------------------------------------------ helpers


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON through :func:`torchlap.io.atomic_write` (never a half-written file)."""
    if not is_writer():  # sharded evaluation: rank 0 alone writes
        return
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def metric(result: Any) -> dict[str, Any]:
    """A :class:`~torchlap.metrics.MetricResult` as the dict results.json stores."""
    return result.to_dict()


def progress(iterable: Any, total: int, description: str) -> Any:
    """Progress of the image batches (rich on a terminal, plain lines otherwise; torchlap.logs)."""
    return track(iterable, total=total, description=description, unit="image batches")


# ------------------------------------------------------------------------------ explanations


def explain_all(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    method: str,
    options: dict[str, Any],
    batch_size: int,
    device: torch.device,
    *,
    nonfinite: list[int] | None = None,
) -> Tensor:
    """Maps ``(N, H, W)`` of ``method`` for all ``images``, explained in batches.

    A map holding a NaN or an infinite value has no trustworthy ranking (a +inf pixel is the
    strongest evidence, a NaN none): the whole map becomes a flat all-zero map, which the
    metrics' flat-map handling scores as a map that ranks no pixel above another
    (:func:`flat_map_counts` counts it), never a map whose +inf pixel silently became its
    weakest. Such maps are logged (a warning naming ``method`` and how many images), and their
    count is appended to ``nonfinite`` (a list) when given, for the caller to record in the
    results.
    """
    shard = active()  # sharded evaluation: this rank explains its run of whole batches
    first, stop = (0, len(images)) if shard is None else shard_bounds(
        len(images), batch_size, shard.rank, shard.world_size
    )  # fmt: skip
    chunks = []
    if stop > first:
        with get(method)(model, **options) as explainer:
            starts = range(first, stop, batch_size)
            for start in progress(starts, len(starts), method):
                end = min(start + batch_size, stop)
                maps = explainer(images[start:end].to(device), targets[start:end].to(device))
                chunks.append(maps.detach().float().cpu())  # the test set's maps: host memory
    maps = torch.cat(chunks) if chunks else None
    if shard is not None:
        maps = gather_rows(maps, shard)  # every rank gets every map, in image order
    if maps is None:
        raise ValueError(f"{method}: no images to explain (an empty image tensor)")
    maps, count = _flatten_nonfinite(maps)
    if count:
        logger.warning(
            "%s: %d of %d maps hold NaN or infinite values; each is scored as a flat "
            "(all-zero) map", method, count, maps.shape[0],
        )  # fmt: skip
    if nonfinite is not None:
        nonfinite.append(count)
    return maps


def _flatten_nonfinite(maps: Tensor) -> tuple[Tensor, int]:
    """``maps`` with every map that holds a NaN or infinite value made all zero, and how many
    (one reduction, no per-image loop)."""
    bad = ~torch.isfinite(maps).flatten(1).all(dim=1)
    count = int(bad.sum())
    if count == 0:
        return maps, 0
    return torch.where(bad[:, None, None], maps.new_zeros(()), maps), count


FLAT_TOLERANCE = 1e-6


def flat_map_counts(maps: Tensor, tolerance: float = FLAT_TOLERANCE) -> dict[str, Any]:
    """How many of the ``(N, H, W)`` maps are flat: max - min <= ``tolerance`` times
    max(1, max |map|) (absolute for maps in [0, 1], relative for larger scales). A flat map
    ranks no pixel above another, so its localization and faithfulness numbers say nothing
    about the model (the report flags them)."""
    flat_maps = maps.flatten(1)
    spread = flat_maps.amax(dim=1) - flat_maps.amin(dim=1)
    scale = flat_maps.abs().amax(dim=1).clamp_min(1.0)
    n_flat = int((spread <= tolerance * scale).sum())
    return {"n": int(maps.shape[0]), "n_flat": n_flat, "tolerance": tolerance}


def method_options(method: str, options: Any, run_facts: dict[str, Any]) -> dict[str, Any]:
    """The explainer options of ``method``: the user's (``options.method_options``), plus the
    facts the explainer takes (:attr:`~torchlap.explainers.Explainer.run_facts`: the run's
    ``concept_sets`` for LAP, ``options.seed`` for RISE) that are known, unless the user did."""
    facts = {"seed": options.seed, **run_facts}
    chosen = dict(options.method_options.get(method, {}))
    for name in get(method).run_facts:
        if facts.get(name) is not None:
            chosen.setdefault(name, facts[name])
    return chosen


# ------------------------------------------------------------------------------------ cache


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(parts: dict[str, Any]) -> str:
    """A short hash of ``parts`` and :data:`METRICS_REVISION` (the cache key of a result)."""
    return _digest({**parts, "metrics_revision": METRICS_REVISION})[:16]


def fingerprint_parts(parts: dict[str, Any]) -> dict[str, str]:
    """A short hash of each part (and of :data:`METRICS_REVISION`), stored next to the
    fingerprint so that a cache miss can say what changed."""
    every = {**parts, "metrics_revision": METRICS_REVISION}
    return {name: _digest(value)[:12] for name, value in every.items()}


#: what each fingerprint part is, for the log line of a cache miss
_PART_NAMES = {
    "data": "the evaluated data (images, labels or region masks/boxes)",
    "options": "the evaluation options",
    "weights": "the run's model (its weights or config.json)",
    "metrics_revision": "the metric definitions (metrics revision)",
    "method_options": "the method's options",
    "concept_sets": "the run's concept sets",
    "baseline": "the LIME baseline run",
    "lime_options": "the LIME check's options (--lime-option)",
}


def write_cache(cache: Path, key: str, parts: dict[str, Any] | None, results: Any) -> None:
    """Store ``results`` in ``cache`` with their fingerprint ``key`` (and the hash of each of
    ``parts``, see :func:`fingerprint_parts`)."""
    entry: dict[str, Any] = {"fingerprint": key, "results_sha256": _results_digest(results)}
    if parts is not None:
        entry["parts"] = fingerprint_parts(parts)
    atomic_write_json(cache, {**entry, "results": results})


def _results_digest(results: Any) -> str:
    """The hash of cached results as JSON (the same after a round trip through the file): a
    result edited by hand, or damaged, no longer matches it."""
    text = json.dumps(results, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def weights_stamp(run_dir: Path) -> dict[str, Any]:
    """Size and modification time of a run's weights (a retrained run invalidates the cache):
    the stamp of a run from before config.json recorded the weights' SHA-256."""
    weights = run_dir / WEIGHTS_FILE
    stat = weights.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


#: the keys of a run's config.json that define its model (what ``rebuild_model`` builds it
#: from, the normalization, the LAP layers and concept sets, the classes and input size)
MODEL_KEYS = ("model", "discriminative_scorers", "mean", "std", "lap_layers", "concept_sets",
              "classes", "in_channels", "image_size")  # fmt: skip


def model_stamp(run: Any) -> dict[str, Any]:
    """What a run's cached results depend on of the run (the ``weights`` part of their
    fingerprints): its weights, by the SHA-256 checked against the record in ``config.json``
    when the run has one (:attr:`~torchlap.runs.LoadedRun.weights_sha256`, else their size and
    modification time), and a hash of the ``config.json`` keys that define its model
    (:data:`MODEL_KEYS`): a ``model.lapify`` option edited by hand (``aggregation``, ``eps``:
    no tensor holds them) changes the model, and so misses the cache."""
    digest = getattr(run, "weights_sha256", None)
    weights = {"sha256": digest} if digest else weights_stamp(Path(run.run_dir))
    defined = {key: run.config.get(key) for key in MODEL_KEYS}
    return {"weights": weights, "model": _digest(defined)[:16]}


def read_cache(
    cache: Path,
    key: str,
    label: str,
    parts: dict[str, Any] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """The cached results of ``cache`` when its fingerprint matches, else ``None``; a miss
    names what changed among ``parts`` (sharded: rank 0's reading, on every rank, so that all
    ranks compute the same methods). A file that is not UTF-8 JSON, holds NaN/Infinity, or
    whose results ``check`` (raising TypeError/ValueError) refuses, is a miss too: logged with
    the file and the reason, and recomputed; so are results that do not match the checksum
    :func:`write_cache` stored with them (edited by hand or damaged)."""
    own = _read_own_cache(cache, key, label, parts, check) if is_writer() else None
    return broadcast_from_zero(own)


def section_check(section: str, method: str) -> Callable[[Any], None]:
    """The check of a cached per-method entry of the results section ``section`` (e.g.
    ``sanity``, ``grid_pointing_game``), as the report will read it: a damaged cache is
    recomputed instead of failing the report after all the work."""

    def check(entry: Any) -> None:
        # lazily: torchlap.report loads matplotlib (not at `torchlap --help`)
        from torchlap.report._common import check_results

        check_results({section: {method: entry}}, "results")

    return check


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (torchlap writes None for undefined values)")


def _read_own_cache(
    cache: Path,
    key: str,
    label: str,
    parts: dict[str, Any] | None,
    check: Callable[[Any], None] | None,
) -> Any:
    if not cache.is_file():
        if odd := not_a_file(cache):  # (a folder in methods/ is refused before any work)
            logger.warning("%s: %s is %s, not a cache; recomputing", label, cache, odd)
        return None
    try:  # ValueError: not UTF-8 (UnicodeDecodeError), not JSON, NaN/Infinity
        cached = json.loads(cache.read_bytes().decode("utf-8"), parse_constant=_no_constant)
        if not isinstance(cached, dict) or "results" not in cached:
            raise ValueError("not a torchlap cache (a dict with 'fingerprint' and 'results')")
    except (OSError, ValueError, RecursionError) as error:  # (nested deeper than json parses)
        logger.warning("%s: %s is unreadable (%s); recomputing", label, cache, error)
        return None
    if cached.get("fingerprint") != key:
        logger.info("%s: recomputing, %s", label, _miss_reason(cached.get("parts"), parts, cache))
        return None
    if check is not None:
        try:
            check(cached["results"])
        except (TypeError, ValueError) as error:
            logger.warning("%s: %s is invalid (%s); recomputing", label, cache, error)
            return None
    if "results_sha256" not in cached:
        logger.info("%s: recomputing, %s was written by an earlier torchlap", label, cache)
        return None
    if cached["results_sha256"] != _results_digest(cached["results"]):
        logger.warning(
            "%s: %s holds results that are not the ones torchlap wrote (edited or damaged: "
            "their checksum differs); recomputing", label, cache,
        )  # fmt: skip
        return None
    logger.info("%s: reusing %s (pass --force to recompute)", label, cache)
    return cached["results"]


def _miss_reason(stored: Any, parts: dict[str, Any] | None, cache: Path) -> str:
    """Why ``cache`` no longer fits: the parts whose hash changed."""
    if parts is None or not isinstance(stored, dict):
        return f"{cache} was computed with other settings or by an earlier torchlap"
    now = fingerprint_parts(parts)
    changed = [name for name in now if stored.get(name) != now[name]]
    changed += [name for name in stored if name not in now]
    if not changed:
        return f"{cache} was computed with other settings"
    names = ", ".join(_PART_NAMES.get(name, name) for name in changed)
    return f"{names} changed since {cache}"


#: the files an evaluation (or comparison) writes into its output folder
OUTPUT_NAMES = (
    "results.json",
    "comparison.json",
    "tables.md",
    "report.html",
    "figures",
    "methods",
    "evaluate.log",
    "compare.log",
)
#: what an evaluation writes into its folder (``torchlap evaluate`` adds its log), and what a
#: comparison writes into its own (``torchlap compare`` adds compare.log, the demo demo.log)
EVALUATE_OUTPUTS = ("results.json", "tables.md", "report.html", "figures", "methods")
COMPARE_OUTPUTS = ("comparison.json", "tables.md", "report.html", "figures")
_LOGS = ("evaluate.log", "compare.log", "demo.log")  # demo.log: torchlap demo's (extra name)
#: the first line of a log torchlap writes (torchlap.logs.log_file's record format)
_LOG_LINE = re.compile(
    r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: "
)


def _torchlap_log(path: Path) -> bool:
    """Whether ``path`` is a log torchlap wrote (empty, or its first line a torchlap record)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            first = file.readline()
    except OSError:
        return False
    return not first or _LOG_LINE.match(first) is not None


def _written_by_torchlap(path: Path, locked: list[PermissionError] | None = None) -> bool:
    """Whether an output-folder entry is one torchlap evaluate/compare wrote (``locked``: the
    errors of the files torchlap may not read, which cannot tell, are added to it)."""
    if path.name in _LOGS:
        return path.is_file() and _torchlap_log(path)
    if path.name in OWN_FORMATS:
        return read_record(path, locked if locked is not None else []) is not None
    try:
        if path.name == "methods":  # a folder of per-method caches, each with its fingerprint
            caches = [json.loads(read_file(p, "the method caches")) for p in path.glob("*.json")]
            return path.is_dir() and all(isinstance(c, dict) and "fingerprint" in c for c in caches)
    except PermissionError as error:
        (locked if locked is not None else []).append(error)
        return False
    except (OSError, ValueError, AttributeError, RecursionError):
        return False
    if path.name == "figures":  # each figure carries torchlap's PNG mark (report.plots)
        return path.is_dir() and not _foreign_figures(path)
    return False


def own_figures(folder: Path) -> list[Path]:
    """The files of ``folder`` that are figures torchlap wrote
    (:func:`torchlap.report.plots.is_torchlap_figure`: the PNG mark of every figure it saves)."""
    from torchlap.report.plots import is_torchlap_figure  # matplotlib: loaded on first use

    return [path for path in sorted(folder.iterdir()) if is_torchlap_figure(path)]


def _foreign_figures(folder: Path) -> list[Path]:
    """The files of ``folder`` that are not figures torchlap wrote."""
    own = set(own_figures(folder))
    return [path for path in sorted(folder.iterdir()) if path not in own]


#: the entries of an output folder that torchlap writes as folders (every other name: a file)
_FOLDERS = {"figures": ".png", "methods": ".json"}  # folder -> the suffix of the files in it


def _refuse_odd_kinds(out: Path, present: list[Path], option: str) -> None:
    """``FileExistsError`` when an entry torchlap writes as a file is a folder, or one it
    writes as a folder (``figures``, ``methods``) is not a folder, or a folder of those holds
    a folder where a figure or cache would be written: none can be written there, whoever
    wrote the folder, and ``--force`` replaces files, never a folder (the write used to fail
    after all the work, or a folder torchlap vouched for let it pass without ``--force``)."""
    odd = {
        p.name: "a folder" if p.is_dir() else "not a folder"
        for p in present
        if p.is_dir() != (p.name in _FOLDERS)
    }
    for folder in (p for p in present if p.name in _FOLDERS and p.is_dir()):
        inner = sorted(p for p in folder.glob(f"*{_FOLDERS[folder.name]}") if p.is_dir())
        odd.update({f"{folder.name}/{p.name}": "a folder" for p in inner})
    if odd:
        raise FileExistsError(
            f"{option} {out} holds {', '.join(odd)}, which torchlap did not write: "
            f"{'; '.join(f'{name} is {kind}' for name, kind in odd.items())} (torchlap writes "
            "figures/ and methods/ as folders of .png and .json files, every other output as "
            "a file), so nothing can be written there, --force or not: move it, or choose "
            "another folder"
        )


def _log_replaced(out: Path, foreign: list[Path], flag: str) -> None:
    """Say what ``flag`` replaces: a file torchlap writes is replaced; a user's file inside
    ``figures/`` or ``methods/`` (or those folders, holding such files) only where torchlap
    writes a file of the same name (before, all of them were said to be replaced)."""
    folders = {out / name for name in _FOLDERS}
    inside = [p for p in foreign if p in folders or p.parent in folders]
    replaced = [p for p in foreign if p not in inside]
    if replaced:
        logger.warning("%s: replacing %s", flag, ", ".join(str(p) for p in replaced))
    if inside:
        logger.warning(
            "%s: in %s, what torchlap did not write (%s) is replaced only where torchlap "
            "writes a file of the same name, the rest is left in place",
            flag, " and ".join(sorted({str(p if p in folders else p.parent) for p in inside})),
            ", ".join(p.name if p.parent in folders else f"{p.name}/" for p in inside),
        )  # fmt: skip


def guard_output_folder(
    out: Path,
    force: bool,
    option: str = "--out",
    flag: str = "--force",
    extra: tuple[str, ...] = (),
    names: tuple[str, ...] = OUTPUT_NAMES,
    apply: bool = True,
    owner: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Refuse an output folder holding files of the names the caller writes that torchlap did
    not write (a user's own ``results.json``, ``evaluate.log``...), or torchlap's record of
    another job (``owner``: the run folder an evaluation evaluates, or
    :data:`~torchlap.evaluate.output_owner.COMPARISON`; its report, tables and figures would be
    replaced: an evaluation of another run, a comparison's folder for an evaluation and the
    reverse), unless ``force``; with
    ``force`` the files that will be replaced are logged (a foreign log is removed, since a
    log is appended to). :func:`~torchlap.evaluate.evaluate_run`,
    :func:`~torchlap.evaluate.compare_runs` and the demo call it before any work. A folder
    whose results.json/comparison.json is the ``owner``'s record (``None``: any torchlap record)
    is torchlap's (its tables and report come with it), but for its log and its figures, each
    checked by its own mark; under ``force`` another job's record is among the entries returned
    (:func:`clear_output_folder` removes it: the folder then holds one job's outputs).

    ``option`` and ``flag`` name the output folder's option and the one that sets ``force``
    in the messages; ``names``: the entries the caller writes there (default: every name
    evaluate and compare write, :data:`OUTPUT_NAMES`; :data:`EVALUATE_OUTPUTS` and
    :data:`COMPARE_OUTPUTS` are theirs, without the log), entries of other names are left
    alone, never refused nor removed; ``extra``: more names (``torchlap demo``:
    ``("demo.log",)``). Returns the entries that are not torchlap's (under ``force`` replaced
    where the caller writes a file of that name: in ``figures/`` and ``methods/`` a file of
    another name is left in place). ``apply=False`` refuses and returns them, and changes and
    logs nothing: a command checking the rest of its input first then calls
    :func:`clear_output_folder` (a refused command deletes nothing)."""
    if not out.exists():
        check_folder_path(out, option)  # else "[Errno 20] Not a directory", after the work
        return []
    if not out.is_dir():
        raise ValueError(f"{option} {out} exists and is not a folder; pass a folder path")
    # a link to nothing too: the log would be appended through it, at the link's target
    present = [out / n for n in (*names, *extra) if (out / n).is_symlink() or (out / n).exists()]
    _refuse_odd_kinds(out, present, option)
    locked: list[PermissionError] = []  # (files torchlap may not read cannot say whose they are)
    ours, others = job_records(out, owner, locked)
    foreign = [p for p in present if not _written_by_torchlap(p, locked)]
    if locked and not force:
        raise PermissionError(
            f"{option} {out}: {locked[0]}; or pass {flag} to replace what is there"
        )
    if others and not force:
        raise FileExistsError(
            f"{option} {out} holds {'; '.join(what for _, what in others)}, not "
            f"{describe_owner(owner)}: its report.html, tables.md and figures would be "
            f"replaced; choose another folder, or pass {flag} to replace them"
        )
    ours = ours and not others
    foreign += [path for path, _ in others if path not in foreign]
    if ours:  # its tables and report come with it; a log and each figure say whose they are
        figures = out / "figures"
        foreign = [p for p in foreign if p.name in _LOGS]
        foreign += _foreign_figures(figures) if figures in present and figures.is_dir() else []
    if foreign and not force:
        raise FileExistsError(
            f"{option} {out} holds {', '.join(p.name for p in foreign)}, which torchlap did not "
            f"write; choose another folder, or pass {flag} to replace them"
        )
    if apply:
        clear_output_folder(out, foreign, flag)
    return foreign


def clear_output_folder(out: Path, foreign: Sequence[Path], flag: str = "--force") -> None:
    """The changes of :func:`guard_output_folder` once everything is checked: log what ``flag``
    replaces of ``foreign`` (its answer), remove a user's log among them (a log is appended to:
    the user's one goes before ours starts), and the temp files of an evaluation killed
    mid-write."""
    if foreign:
        # torchlap's record of another job: removed, so that the folder holds one job's outputs
        records = [p for p in foreign if p.name in OWN_FORMATS and _written_by_torchlap(p)]
        _log_replaced(out, [p for p in foreign if p not in records], flag)
        for path in records:
            path.unlink()
            logger.warning("%s: removed %s, torchlap's record of another job", flag, path)
        for path in foreign:
            if path.name in _LOGS and (path.is_file() or path.is_symlink()):
                path.unlink()
    if out.is_dir():
        clean_stale_temps(out)
