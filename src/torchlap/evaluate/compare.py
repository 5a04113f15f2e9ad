"""``torchlap compare``: several runs evaluated alike, in one table and one report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchlap.evaluate.checks import compare_data_randomization
from torchlap.evaluate.common import atomic_write_json, guard_output_folder
from torchlap.evaluate.core import evaluate_run
from torchlap.evaluate.options import EvaluateOptions
from torchlap.evaluate.shard import is_writer
from torchlap.runs import load_run

__all__ = ["compare_runs"]


def compare_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    data: str | None,
    out: str | os.PathLike[str],
    options: EvaluateOptions | None = None,
    force: bool = False,
) -> Path:
    """Evaluate each run into ``out/<run name>/`` and write the joint tables and report.

    Run names are the folders' names; two runs with the same folder name are refused.
    With ``options.sanity``, each run trained with ``--shuffle-labels`` is also compared with a
    real run of the same data and model (results key ``data_randomization``).
    Returns the path of ``report.html``.
    """
    # matplotlib loads with the first figure, not at `torchlap --help` (measured: importing
    # torchlap.report.plots costs about half of torch's own import time)
    from torchlap.evaluate.outputs import write_run_outputs

    if not run_dirs:
        raise ValueError("compare needs at least one run folder")
    out = Path(out)
    names = [Path(r).resolve().name for r in run_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"run folders must have distinct names, got {names}")
    # fail before any work when a folder is not a finished run, or the runs' data differ
    trained_on = {
        name: _data_of(load_run(run_dir).config)
        for name, run_dir in zip(names, run_dirs, strict=True)
    }
    if data is None and len(set(trained_on.values())) > 1:
        listed = ", ".join(f"{name}: {value}" for name, value in trained_on.items())
        raise ValueError(
            f"the runs were trained on different data ({listed}); compare evaluates every run "
            "on the same images for one table: pass --data to choose them"
        )
    if is_writer():  # and when out holds files of these names that torchlap did not write
        for folder in (out, *(out / name for name in names)):
            guard_output_folder(folder, force)
    results: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for name, run_dir in zip(names, run_dirs, strict=True):
        results[name] = evaluate_run(run_dir, data, out / name, options, force=force)
        configs[name] = load_run(run_dir).config
    if options is not None and options.sanity:  # data randomization test (shuffled labels)
        compare_data_randomization(dict(zip(names, run_dirs, strict=True)), configs, results,
                                   data, out, options)  # fmt: skip
    atomic_write_json(out / "comparison.json", {"format": "torchlap-comparison", "runs": results})
    if not is_writer():  # sharded evaluation: rank 0 alone writes
        return out / "report.html"
    return write_run_outputs(out, results, configs, None, {})


def _data_of(config: dict[str, Any]) -> str:
    """The data a run was trained on: a built-in's name, or its folder (resolved, so that two
    spellings of one folder agree)."""
    data = str(config.get("train", {}).get("data", ""))
    path = Path(data)
    return str(path.resolve()) if path.exists() else data
