"""``torchlap compare``: several runs evaluated alike, in one table and one report."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from torchlap.evaluate.checks import compare_data_randomization
from torchlap.evaluate.common import (
    COMPARE_OUTPUTS,
    OUTPUT_NAMES,
    atomic_write_json,
    clear_output_folder,
    guard_output_folder,
)
from torchlap.evaluate.core import finish_evaluation, prepare_evaluation
from torchlap.evaluate.options import EvaluateOptions
from torchlap.evaluate.output_owner import COMPARISON
from torchlap.evaluate.provenance import (
    DataSettings,
    common_data_settings,
    data_identity,
    describe_identities,
    lime_baseline_of,
)
from torchlap.evaluate.shard import is_writer
from torchlap.evaluate.split_data import open_run_splits
from torchlap.explainers import applicability
from torchlap.runs import LoadedRun, RunFacts, load_run, read_run_facts

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["check_protocols", "compare_runs", "run_names"]


def compare_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    data: str | None,
    out: str | os.PathLike[str],
    options: EvaluateOptions | None = None,
    force: bool = False,
    on_checked: Callable[[], None] | None = None,
) -> Path:
    """Evaluate each run into ``out/<run name>/`` and write the joint tables and report.

    Run names are the folders' names; two runs with the same folder name are refused. Without
    ``data`` the runs must have seen the same images: the same data (a folder however spelled),
    ``n_images``, seed, image size and data options, else they are refused. With ``data`` every
    run is evaluated on the same images of it: with the runs' own seed, image count and data
    options when they all read ``data`` alike, else with split seed 0, the default image count
    and no data options for all (logged, and noted in each run's results and in the report).
    A BLA run's LIME check (paper 002, section 4.3) is computed on a vanilla run of the same
    architecture and data among the compared runs when there is one (results key
    ``lime_reference``). A comparison none of whose methods applies to any run is
    refused. With ``options.sanity``, each run trained with ``--shuffle-labels`` is also
    compared with a real run of the same data and model (results key ``data_randomization``).
    Returns the path of ``report.html``. Every run is checked, its data read and its
    explainers built before the first is evaluated, so a refused run leaves ``out`` as it was;
    each run's ``config.json`` is read once, and every run's data is opened and checked
    against it (classes, channels) before any model is built; the runs' models and images are
    held until each is evaluated (runs reading the same images share one copy).
    ``on_checked()`` is called once the runs, the data, the options and the output folders
    passed every check, before any file is written or removed (the command line removes a
    user's log it was told to replace then).
    """
    # matplotlib loads with the first figure, not at `torchlap --help` (measured: importing
    # torchlap.report.plots costs about half of torch's own import time)
    from torchlap.evaluate.outputs import write_run_outputs

    if not run_dirs:
        raise ValueError("compare needs at least one run folder")
    options = options or EvaluateOptions()
    options.validate()
    out = Path(out)
    names = run_names(run_dirs)
    dirs = dict(zip(names, run_dirs, strict=True))
    # fail before any work when a folder is not a finished run, the runs' data differ, their
    # data do not fit them (checked before any model is built) or no method applies to any
    facts = {name: _named(name, run_dir, read_run_facts, run_dir) for name, run_dir in dirs.items()}
    configs = {name: run.config for name, run in facts.items()}
    settings, note = _data_plan(data, configs)
    if note:
        logger.warning("compare: %s", note)
    shared: dict[tuple, Any] = {}  # the splits opened and read, shared by runs reading alike
    for name, run in facts.items():
        _named(name, dirs[name], open_run_splits, run, data, options, settings, shared)
    loaded, bla_runs = _load_runs(facts, options)
    baselines = _lime_baselines(bla_runs, configs, options)
    foreign = []  # and when out holds files of these names that torchlap did not write
    if is_writer():
        foreign = guard_output_folder(
            out, force, names=COMPARE_OUTPUTS, apply=False, owner=COMPARISON
        )
    jobs = _prepare_runs(dirs, data, out, options, force, settings, baselines, loaded, shared)
    del loaded, shared  # each run's model and tensors held by its job alone, freed with it
    if is_writer():  # every run passed every check: what --force replaces goes now
        clear_output_folder(out, foreign)
        for job in jobs.values():
            clear_output_folder(job.out_dir, job.foreign)
    if on_checked is not None:
        on_checked()
    results: dict[str, Any] = {}
    for name in list(jobs):
        results[name] = finish_evaluation(jobs.pop(name))  # (its model and tensors freed)
    check_protocols(results)
    if options.sanity:  # data randomization test (shuffled labels)
        compare_data_randomization(dirs, configs, results, data, out, options, settings)
    summary = {"name": data, "settings": None if settings is None else settings.to_dict(),
               "note": note}  # fmt: skip
    atomic_write_json(
        out / "comparison.json", {"format": "torchlap-comparison", "data": summary, "runs": results}
    )
    if not is_writer():  # sharded evaluation: rank 0 alone writes
        return out / "report.html"
    return write_run_outputs(out, results, configs, None, {})


def run_names(run_dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The runs' names in the comparison: their folders' names, each run's results going to
    ``OUT/<name>``. Refused (ValueError): two runs of one name, and a name of a file or folder
    compare writes in ``OUT`` itself (a run ``report.html`` made ``OUT/report.html`` a folder,
    refused only after every run was evaluated; a run ``methods`` made a rerun refuse ``OUT``).
    A link is named by itself, not its target, so that a run can be linked under another name."""
    names = [Path(os.path.abspath(r)).name for r in run_dirs]  # "." and ".." taken, links kept
    if len(set(names)) != len(names):
        raise ValueError(f"run folders must have distinct names, got {names}")
    clashing = sorted(set(names) & set(OUTPUT_NAMES))
    if clashing:
        raise ValueError(
            f"run folder name(s) {clashing} are also names compare writes in --out ("
            f"{', '.join(OUTPUT_NAMES)}), and each run's results go to OUT/<run folder name>: "
            "rename the run folder, or link it under another name"
        )
    return names


def _named(name: str, run_dir: Any, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, a plain ValueError or TypeError naming the run (its own classes, such
    as :class:`~torchlap.runs.RunError`, kept as they are)."""
    try:
        return call(*args)
    except (TypeError, ValueError) as error:
        if type(error) not in (TypeError, ValueError):
            raise
        raise type(error)(f"run {name} ({run_dir}): {error}") from None


def _load_runs(
    facts: dict[str, RunFacts], options: EvaluateOptions
) -> tuple[dict[str, LoadedRun], list[str]]:
    """Every run's model built from its facts, and the runs with a BLA module; refuses when no
    requested method applies to any run."""
    loaded = {name: load_run(run) for name, run in facts.items()}
    applies = {
        name: [m for m in (*options.methods, "bla") if applicability(m, run.model) is None]
        for name, run in loaded.items()
    }
    if not any(set(options.methods) & set(methods) for methods in applies.values()):
        raise ValueError(
            f"no requested method ({', '.join(options.methods)}) applies to the model of any "
            f"run ({', '.join(facts)}); pass --methods with methods that apply to them"
        )
    return loaded, [name for name, methods in applies.items() if "bla" in methods]


def _prepare_runs(
    dirs: dict[str, Any],
    data: str | None,
    out: Path,
    options: EvaluateOptions,
    force: bool,
    settings: DataSettings | None,
    baselines: dict[str, str],
    loaded: dict[str, LoadedRun],
    shared: dict[tuple, Any],
) -> dict[str, Any]:
    """Every run's evaluation prepared (checked, its data read, nothing written), before the
    first is evaluated: a later run's refusal (a method option its model refuses...) came
    after the earlier runs' results were written. Runs reading the same images share their
    tensors (``shared``), a BLA run's LIME baseline is the compared run itself (``loaded``). A
    ValueError or TypeError names the run."""
    jobs = {}
    for name, run_dir in dirs.items():
        baseline = baselines.get(name)
        jobs[name] = _named(
            name, run_dir, partial(
                prepare_evaluation, run_dir, data, out / name, options, force,
                data_settings=settings, require_applicable=False, loaded=shared,
                lime_baseline=None if baseline is None else loaded[baseline], run=loaded[name],
            ),
        )  # fmt: skip
    return jobs


def _data_plan(
    data: str | None, configs: dict[str, dict[str, Any]]
) -> tuple[DataSettings | None, str | None]:
    """Without ``data``: refuse runs that did not see the same images. With it: the one
    setting all runs read it with, and the sentence that says how when not their own."""
    if data is not None:
        return common_data_settings(data, configs)
    identities = {name: data_identity(config) for name, config in configs.items()}
    if len({json.dumps(i, sort_keys=True, default=str) for i in identities.values()}) > 1:
        raise ValueError(
            f"the runs were trained on different data ({describe_identities(identities)}); "
            "compare evaluates every run on the same images for one table: pass --data to "
            "choose them"
        )
    return None, None


def _lime_baselines(
    bla_runs: list[str], configs: dict[str, dict[str, Any]], options: EvaluateOptions
) -> dict[str, str]:
    """The vanilla run of the same architecture and data each BLA run's LIME check uses."""
    if "bla" not in options.methods or options.lime_images == 0:
        return {}
    chosen = {}
    for name in bla_runs:
        baseline = lime_baseline_of(name, configs)
        if baseline is None:
            logger.warning(
                "%s: no vanilla run of the same architecture and data among the compared runs: "
                "its LIME check runs on the BLA model itself", name
            )  # fmt: skip
        else:
            logger.info("%s: LIME check on the vanilla run %s (paper 002, 4.3)", name, baseline)
            chosen[name] = baseline
    return chosen


def check_protocols(results: dict[str, dict[str, Any]]) -> None:
    """Refuse results computed under different protocols (``results.json["protocol"]``:
    metrics revision, binarization, tie rule...; each run's LAP concept sets may differ) in
    one table."""

    def comparable(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.get("protocol", {}).items() if k != "lap_concept_sets"}

    if not results:
        return
    first, reference = next(iter(results.items()))
    for name, entry in results.items():
        mine, theirs = comparable(reference), comparable(entry)
        differing = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differing:
            raise ValueError(
                f"{first} and {name} were evaluated under different protocols "
                f"({', '.join(differing)}); one table would mix them: evaluate them again "
                "(--force recomputes)"
            )
