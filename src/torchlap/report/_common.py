"""Shared pieces of the report package: reading and checking results dicts, the methods' facts
(display names, column order) as the results carry them, and value formatting.

A *results dict* is what ``torchlap evaluate`` writes for one run (schema in
:mod:`torchlap.report`); a *results-by-run* dict maps run names to results dicts. Every key
may be missing (rendered ``-``) and every metric value may be ``None`` (rendered ``n/a``).
A NaN or infinite number anywhere (a sanity threshold, a sample count, ...) is read as
``None``: shown as ``n/a``, and a verdict that depends on it is not given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torchlap._checks import check_bool

__all__ = [
    "MISSING",
    "UNDEFINED",
    "ReportSection",
    "as_runs",
    "check_results",
    "format_number",
    "method_display_name",
    "method_facts",
    "order_methods",
]


@dataclass(frozen=True)
class ReportSection:
    """An extra section of the report: ``<section id=id><h2>heading</h2>html</section>``
    (built by the builders of :data:`torchlap.report.html.SECTION_BUILDERS`)."""

    id: str
    heading: str
    html: str


MISSING = "-"  # the key is absent: not computed (e.g. a method that failed, a vanilla model)
UNDEFINED = "n/a"  # computed but undefined: no usable sample (value None / nan)

# Top-level keys of a results dict; used to tell one results dict from a results-by-run dict.
RESULT_KEYS = frozenset(
    {
        "run",
        "data",
        "model",
        "lap_predictors",
        "localization",
        "faithfulness",
        "stability",
        "timing",
    }
)


def method_facts(runs: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """What the results say about each method: ``results["methods"]`` of every results dict
    (``{method: {"display_name", "kind", "column_rank"}}``, written by ``torchlap evaluate``
    from the explainer registry), merged, first run first. The report imports no explainer:
    these facts are all it knows about a method."""
    facts: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        entries = run.get("methods") if isinstance(run, Mapping) else None
        if isinstance(entries, Mapping):
            for method, entry in entries.items():
                if isinstance(entry, Mapping):
                    facts.setdefault(method, entry)
    return facts


def method_display_name(method: str, facts: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Short display name of an explainer from ``facts`` (:func:`method_facts`: ``"gradcam"``
    -> ``"GC"``); a method the facts do not name is shown as-is."""
    if facts is not None and not isinstance(facts, Mapping):
        raise TypeError(f"facts must be a mapping method -> facts, or None, got {facts!r:.80}")
    if not isinstance(method, str):
        raise TypeError(f"method must be an explainer's name (a str), got {method!r:.80}")
    name = (facts or {}).get(method, {}).get("display_name")
    return name if isinstance(name, str) and name else method


def order_methods(
    methods: Iterable[str], facts: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """The distinct ``methods`` in the tables' column order: by the ``column_rank`` of their
    facts (paper 000's Table II, then papers 002-004), then the others in first-seen order."""
    seen = list(dict.fromkeys(methods))

    def rank(method: str) -> tuple[int, int, int]:
        value = (facts or {}).get(method, {}).get("column_rank")
        if isinstance(value, int) and not isinstance(value, bool):
            return (0, value, seen.index(method))
        return (1, 0, seen.index(method))

    return sorted(seen, key=rank)


def _looks_like_results(value: object) -> bool:
    return isinstance(value, Mapping) and (not value or bool(RESULT_KEYS & set(value)))


def as_runs(results: object, name: str = "results_by_run") -> dict[str, Mapping[str, Any]]:
    """Normalize ``results`` to ``{run name: results dict}`` and check its structure.

    Accepts a results-by-run mapping or a single results dict (then named by its
    ``run.name``, else ``"run"``). Every metric entry that is present must be a mapping with
    a ``"value"`` that is a number or ``None``; containers must be mappings. Raises
    TypeError/ValueError naming the offending path before any output is produced. The
    returned results are copies in which every NaN or infinite number is ``None`` (missing).
    """
    if not isinstance(results, Mapping):
        raise TypeError(
            f"{name} must be a dict of run name -> results dict (or one results dict), "
            f"got {type(results).__name__}"
        )
    single = any(
        key in RESULT_KEYS and not _looks_like_results(value) for key, value in results.items()
    )
    if single:
        run_info = results.get("run")
        run_name = run_info.get("name") if isinstance(run_info, Mapping) else None
        runs = {str(run_name) if run_name else "run": results}
    else:
        runs = dict(results)
    for run, run_results in runs.items():
        if not isinstance(run, str):
            raise TypeError(f"run names must be str, got {run!r} ({type(run).__name__})")
        if not isinstance(run_results, Mapping):
            raise TypeError(
                f"{name}[{run!r}] must be a results dict, got {type(run_results).__name__}"
            )
        _check_run(run_results, f"{name}[{run!r}]")
    return {run: _finite_or_none(run_results) for run, run_results in runs.items()}


def _finite_or_none(node: Any) -> Any:
    """``node`` (JSON-like: mappings, lists, numbers...) copied with every NaN or infinite
    float replaced by ``None``, so the report shows it as missing, never as ``nan``."""
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, Mapping):
        return {key: _finite_or_none(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_finite_or_none(value) for value in node]
    return node


def _check_mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{path} must be a dict, got {type(value).__name__}: {value!r:.80}")
    return value


def _check_metric(value: object, path: str) -> None:
    if not isinstance(value, Mapping) or "value" not in value:
        raise TypeError(
            f"{path} must be a metric dict {{'value': float | None, 'higher_is_better': bool, "
            f"'n': int, 'n_excluded': int}} (MetricResult.to_dict()), got {value!r:.80}"
        )
    number = value["value"]
    if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
        raise TypeError(f"{path}['value'] must be a number or None, got {number!r}")
    if value.get("higher_is_better") is not None:  # "no" would be true: the wrong best bolded
        check_bool(value["higher_is_better"], f"{path}['higher_is_better']")
    for key in ("n", "n_excluded"):  # NaN/inf: shown as missing, as every non-finite number
        count = value.get(key)
        if count is None or (_is_number(count) and not math.isfinite(count)):
            continue
        if not _is_number(count) or count < 0 or count != int(count):
            raise TypeError(
                f"{path}[{key!r}] must be a count (an int >= 0) or None, got {count!r:.80}"
            )
    _check_interval(value.get("interval"), f"{path}['interval']")


def _check_interval(interval: object, path: str) -> None:
    """A bootstrap interval: ``None`` or ``[low, high]``, two numbers, low <= high."""
    if interval is None:
        return
    if (
        not isinstance(interval, list)
        or len(interval) != 2
        or not all(_is_number(bound) for bound in interval)
        or interval[0] > interval[1]
    ):
        raise TypeError(f"{path} must be None or [low, high] (numbers), got {interval!r:.80}")


def _check_paired(paired: object, path: str) -> None:
    """``results["paired"]``: reference -> metric -> method -> {difference, interval, n}."""
    references = _check_mapping(_check_mapping(paired, path).get("references", {}),
                                f"{path}['references']")  # fmt: skip
    for reference, metrics in references.items():
        for metric, others in _check_mapping(metrics, f"{path}[{reference!r}]").items():
            where = f"{path}[{reference!r}][{metric!r}]"
            for other, entry in _check_mapping(others, where).items():
                entry = _check_mapping(entry, f"{where}[{other!r}]")
                _check_numbers(entry, ("difference", "n"), f"{where}[{other!r}]")
                _check_interval(entry.get("interval"), f"{where}[{other!r}]['interval']")


# sections keyed by method, layer or metric names
_NAMED_SECTIONS = frozenset(
    {"model", "lap_predictors", "localization", "faithfulness", "stability", "timing", "maps",
     "methods", "sanity", "grid_pointing_game", "notes", "examples", "skipped"}
)  # fmt: skip

# the metric keys checked in each entry of a section (other keys, e.g. "threshold", "rule",
# are free-form)
_METRIC_KEYS = {
    "lap_predictors": ("predictivity", "faithfulness"),
    "localization": ("iou_threshold", "iou_topk", "ebpg", "miou_top20", "bbox", "pointing_game"),
    "faithfulness": ("drop", "increase", "win"),
}


def _check_run(run: Mapping[str, Any], path: str) -> None:
    for section in (RESULT_KEYS | {"protocol"}) & set(run):  # protocol: read by glance
        _check_mapping(run[section], f"{path}[{section!r}]")
    for section in _NAMED_SECTIONS & set(run):  # names are shown, escaped and sorted as text
        for name in _check_mapping(run[section] or {}, f"{path}[{section!r}]"):
            if not isinstance(name, str):
                raise TypeError(
                    f"{path}[{section!r}] keys must be names (str), as results.json holds "
                    f"them, got {name!r} ({type(name).__name__})"
                )
    for key, metric in run.get("model", {}).items():
        _check_metric(metric, f"{path}['model'][{key!r}]")
    for section, keys in _METRIC_KEYS.items():
        for name, entry in run.get(section, {}).items():
            where = f"{path}[{section!r}][{name!r}]"
            entry = _check_mapping(entry, where)
            for key in keys:
                if key in entry:
                    _check_metric(entry[key], f"{where}[{key!r}]")
    for method, entry in run.get("faithfulness", {}).items():
        where = f"{path}['faithfulness'][{method!r}]"
        for k, agreements in _check_mapping(entry.get("keep_top_k", {}), where).items():
            agreements = _check_mapping(agreements, f"{where}['keep_top_k'][{k!r}]")
            _k_value(k, f"{where}['keep_top_k']")
            for key, metric in agreements.items():
                _check_metric(metric, f"{where}['keep_top_k'][{k!r}][{key!r}]")
    for method, entry in run.get("stability", {}).items():
        where = f"{path}['stability'][{method!r}]"
        for level, changes in _check_mapping(entry, where).items():
            for key, metric in _check_mapping(changes, f"{where}[{level!r}]").items():
                _check_metric(metric, f"{where}[{level!r}][{key!r}]")
    for method, entry in run.get("timing", {}).items():
        where = f"{path}['timing'][{method!r}]"
        entry = _check_mapping(entry, where)
        _check_numbers(entry, entry, where)  # every timing a number or None
    for method, entry in _check_mapping(run.get("maps") or {}, f"{path}['maps']").items():
        where = f"{path}['maps'][{method!r}]"
        _check_numbers(_check_mapping(entry, where), ("n", "n_flat", "tolerance"), where)
    if "paired" in run:
        _check_paired(run["paired"], f"{path}['paired']")
    _check_checks(run, path)


def check_results(results: object, path: str = "results") -> None:
    """Check one results dict as the report reads it (:func:`as_runs` does it for each run):
    every metric entry present a dict whose ``"value"`` is a number or ``None``, containers
    dicts, ``sanity``/``grid_pointing_game`` entries of the shapes ``torchlap evaluate``
    writes, ``notes`` texts. Raises TypeError/ValueError naming the offending key
    (``path[...]``). ``torchlap evaluate`` checks a cached method and its results.json with it."""
    _check_run(_check_mapping(results, path), path)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _check_numbers(entry: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    """Each of ``keys`` present in ``entry``: a number or None."""
    for key in keys:
        value = entry.get(key)
        if value is not None and not _is_number(value):
            raise TypeError(f"{where}[{key!r}] must be a number or None, got {value!r:.80}")


def _check_number_lists(entry: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    """Each of ``keys`` present in ``entry``: a list of numbers or None."""
    for key in keys:
        values = entry.get(key, [])
        if not isinstance(values, list) or any(v is not None and not _is_number(v) for v in values):
            raise TypeError(
                f"{where}[{key!r}] must be a list of numbers (or None), got {values!r:.80}"
            )


def _check_passed(entry: Mapping[str, Any], where: str) -> None:
    """A verdict ``entry["passed"]``, when present: true, false or None."""
    passed = entry.get("passed")
    if passed is not None and not isinstance(passed, bool):
        raise TypeError(f"{where}['passed'] must be true, false or None, got {passed!r:.80}")


def _check_checks(run: Mapping[str, Any], path: str) -> None:
    """The sections of ``--sanity``/``--grid-pg`` and the notes."""
    for method, entry in _check_mapping(run.get("sanity") or {}, f"{path}['sanity']").items():
        where = f"{path}['sanity'][{method!r}]"
        entry = _check_mapping(entry, where)
        _check_numbers(entry, ("threshold",), where)
        _check_passed(entry, where)
        summary = _check_mapping(entry.get("summary") or {}, f"{where}['summary']")
        _check_numbers(summary, ("spearman_abs", "ssim"), f"{where}['summary']")
        for mode in ("cascading", "independent"):
            if mode in entry:
                curves = _check_mapping(entry[mode], f"{where}[{mode!r}]")
                steps = curves.get("steps", [])
                if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
                    raise TypeError(f"{where}[{mode!r}]['steps'] must be a list of unit names, "
                                    f"got {steps!r:.80}")  # fmt: skip
                _check_number_lists(curves, ("spearman_abs", "ssim"), f"{where}[{mode!r}]")
    games = _check_mapping(run.get("grid_pointing_game") or {}, f"{path}['grid_pointing_game']")
    for method, entry in games.items():
        where = f"{path}['grid_pointing_game'][{method!r}]"
        entry = _check_mapping(entry, where)
        _check_numbers(entry, ("mean", "chance", "n"), where)
        _check_number_lists(entry, ("scores",), where)
        distribution = _check_mapping(entry.get("distribution") or {}, f"{where}['distribution']")
        _check_numbers(distribution, ("median", "q25", "q75"), f"{where}['distribution']")
    setup = _check_mapping(run.get("grid_pointing_setup") or {}, f"{path}['grid_pointing_setup']")
    _check_setup(setup, f"{path}['grid_pointing_setup']")
    _check_data_randomization(run.get("data_randomization"), f"{path}['data_randomization']")
    for topic, note in _check_mapping(run.get("notes") or {}, f"{path}['notes']").items():
        texts = [note] if isinstance(note, str) else note
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                f"{path}['notes'][{topic!r}] must be a text or a list of texts, got {note!r:.80}"
            )


def _check_skipped(entry: Mapping[str, Any], where: str) -> bool:
    """True when ``entry`` is a skipped section (its ``"skipped"`` a reason text)."""
    reason = entry.get("skipped")
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"{where}['skipped'] must be a text (the reason), got {reason!r:.80}")
    return reason is not None


def _check_setup(setup: Mapping[str, Any], where: str) -> None:
    """The grid pointing game's setup: a skip reason, or its numbers and grid shape."""
    if _check_skipped(setup, where) or not setup:
        return
    _check_numbers(setup, ("n_grids", "min_confidence", "seed"), where)
    shape = setup.get("shape", [])
    if not isinstance(shape, list) or not all(_is_number(v) for v in shape):
        raise TypeError(f"{where}['shape'] must be a list of cell counts, got {shape!r:.80}")


def _check_data_randomization(entry: object, where: str) -> None:
    """The data randomization section: a skip reason, or per method its summaries."""
    if entry is None:
        return
    entry = _check_mapping(entry, where)
    if _check_skipped(entry, where):
        return
    _check_numbers(entry, ("threshold", "n_images"), where)
    for method, values in _check_mapping(entry.get("methods") or {}, f"{where}['methods']").items():
        at = f"{where}['methods'][{method!r}]"
        values = _check_mapping(values, at)
        for key in ("spearman_abs", "ssim"):
            _check_numbers(_check_mapping(values.get(key) or {}, f"{at}[{key!r}]"), ("mean",),
                           f"{at}[{key!r}]")  # fmt: skip
        _check_passed(values, at)


def format_number(value: float, decimals: int = 2) -> str:
    """``value`` with ``decimals`` decimals; from 1e6 in magnitude in scientific notation (an
    out-of-range value such as an IoU of 1e300 is shown as ``1.00e+302``, not 300 digits)."""
    if math.isfinite(value) and abs(value) >= 1e6:
        return f"{value:.{decimals}e}"
    return f"{value:.{decimals}f}"


def _k_value(k: object, path: str) -> float:
    """A keep-k% level: a percentage in (0, 100], as ``keep_top_k`` takes its ``ks``."""
    try:
        value = float(str(k))
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 100.0:  # NaN too
        raise ValueError(
            f"{path} keys must be percentages in (0, 100] such as '10' or '30', got {k!r}"
        )
    return value


def metric_value(metric: Mapping[str, Any] | None) -> float | None:
    """The finite value of a metric dict, else ``None`` (undefined)."""
    if metric is None:
        return None
    value = metric.get("value")
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def section(run: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A top-level section of a results dict, empty when missing."""
    return run.get(name) or {}
