"""The matplotlib Figures the report's plot functions draw, kept for inspection.

Not a test module (no ``test_`` prefix); imported by the report's figure tests, which check
the data handed to matplotlib (lines, bars, images, texts) rather than pixels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

import torchlap.report.plots as plots


def capture_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every Figure handed to ``plots._save`` from now on (still saved as usual)."""
    figures: list[Figure] = []
    save = plots._save

    def keep(figure: Figure, path: Path, overwrite: bool = False) -> Path:
        figures.append(figure)
        return save(figure, path, overwrite)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def capture_sanity_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every Figure the sanity section's plot functions would save (nothing is written)."""
    import torchlap.report.sanity as sanity

    figures: list[Figure] = []
    monkeypatch.setattr(sanity, "_save", lambda figure, path, *_: figures.append(figure) or path)
    return figures
