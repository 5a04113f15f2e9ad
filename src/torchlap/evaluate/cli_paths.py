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

__all__ = ["check_data", "lime_baseline_path", "run_paths"]


def check_data(data: str) -> None:
    """``--data``: a built-in name or an existing folder ("" would fall back to the run's data
    without a word; what the folder holds is checked when it is read)."""
    try:
        nonblank_path(data, "--data", "a built-in name or a dataset folder")
        check_data_option(data, "--data")
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def run_paths(runs: Sequence[str | Path], option: str) -> list[Path]:
    """The run folders (``option``: ``--run`` or ``RUNS``) as paths: none empty (an unset
    shell variable, not the current folder) or too long for the file system."""
    try:
        return [Path(nonblank_path(str(run), option, "a run folder")) for run in runs]
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def lime_baseline_path(text: str | None, options: Any) -> Path | None:
    """``--lime-baseline`` as a path (``None`` when not given), given only where paper 002's
    LIME check runs (bla among ``options.methods``, ``options.lime_images`` > 0; that the run is
    a BLA run is checked once it is read)."""
    if text is None:
        return None
    (path,) = run_paths([text], "--lime-baseline")
    if "bla" not in options.methods or options.lime_images == 0:
        raise typer.BadParameter(
            f"--lime-baseline {path}: it is the baseline of paper 002's LIME check, which runs "
            "for a BLA run evaluated with bla among --methods and --lime-images > 0: add them, "
            "or drop --lime-baseline"
        )
    return path
