"""The path options of ``torchlap evaluate`` and ``compare`` (``--run`` or the run folders,
``--data``, ``--lime-baseline``), checked before a run is read: the run's model is built when
it is, so a refusal found later costs a model and its forward passes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from torchlap.cli_style import nonblank_path
from torchlap.data.api import check_data_option
from torchlap.io import fitting_path

__all__ = ["check_data", "check_run_paths"]


def check_data(data: str) -> None:
    """``--data``: a built-in name or an existing folder ("" would fall back to the run's data
    without a word; what the folder holds is checked when it is read)."""
    try:
        nonblank_path(data, "--data", "a built-in name or a dataset folder")
        check_data_option(data, "--data")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def check_run_paths(
    runs: Sequence[Path], option: str, lime_baseline: Path | None = None, options: Any = None
) -> None:
    """The run folders (``option``: ``--run`` or ``RUNS``) and ``--lime-baseline`` as paths
    the file system takes, and ``--lime-baseline`` given only where paper 002's LIME check runs
    (bla among ``options.methods``, ``options.lime_images`` > 0; that the run is a BLA run is
    checked once it is read)."""
    try:
        for run in runs:
            fitting_path(run, option)
        if lime_baseline is not None:
            fitting_path(lime_baseline, "--lime-baseline")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if lime_baseline is not None and ("bla" not in options.methods or options.lime_images == 0):
        raise typer.BadParameter(
            f"--lime-baseline {lime_baseline}: it is the baseline of paper 002's LIME check, "
            "which runs for a BLA run evaluated with bla among --methods and --lime-images > 0: "
            "add them, or drop --lime-baseline"
        )
