"""Sanity figures on unusual inputs: a run whose methods have no curve, grey grids outside
[0, 1], a grid one pixel high."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from report_figures import capture_sanity_figures

from torchlap.report.sanity import plot_grid_examples, plot_sanity_curves


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions would save (nothing is written)."""
    return capture_sanity_figures(monkeypatch)


def test_a_run_with_no_curve_gets_empty_panels_and_no_legend(drawn):
    # "b" recorded a verdict but no mode's curve (e.g. read from an older results file)
    curve = {"steps": ["fc"], "spearman_abs": [0.2], "ssim": [0.3]}
    runs = {"a": {"sanity": {"gradcam": {"cascading": curve}}},
            "b": {"sanity": {"gradcam": {"threshold": 0.5, "passed": True}}}}  # fmt: skip
    plot_sanity_curves(runs, Path("c.png"))
    (figure,) = drawn
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["a: cascading"] * 2 + ["b: cascading"] * 2
    assert axes[0].get_legend() is not None
    assert [ax.get_legend() for ax in axes[2:]] == [None, None]


def test_grey_grids_are_shown_clamped_to_0_1(drawn):
    grids = torch.full((1, 1, 4, 4), 0.5)
    grids[0, 0, 0, 0], grids[0, 0, 0, 1] = -1.0, 2.0
    maps = {"gradcam": torch.rand(1, 4, 4)}
    plot_grid_examples(grids, torch.tensor([0]), (2, 2), maps, ["a"], Path("ex.png"))
    shown = drawn[0].get_axes()[0].get_images()[0].get_array()
    assert shown.shape == (4, 4)
    assert (float(shown.min()), float(shown.max())) == (0.0, 1.0)


def test_a_colour_grid_one_pixel_high_is_shown_in_colour(drawn):
    grids = torch.rand(1, 3, 1, 4)
    maps = {"gradcam": torch.rand(1, 1, 4)}
    plot_grid_examples(grids, torch.tensor([0]), (1, 2), maps, ["a"], Path("ex.png"))
    image = drawn[0].get_axes()[0].get_images()[0]
    assert image.get_array().shape == (1, 4, 3)


def test_a_dim_grey_grid_is_shown_on_the_0_1_scale_as_a_colour_grid_is(drawn):
    """Before: matplotlib stretched a grey grid between its own darkest and brightest pixel
    (0.2-0.4 shown black to white), while a colour grid kept its [0, 1] values."""
    grids = torch.linspace(0.2, 0.4, 16).reshape(1, 1, 4, 4)
    maps = {"gradcam": torch.rand(1, 4, 4)}
    plot_grid_examples(grids, torch.tensor([0]), (2, 2), maps, ["a"], Path("ex.png"))
    plot_grid_examples(grids.expand(1, 3, 4, 4), torch.tensor([0]), (2, 2), maps, ["a"],
                       Path("ex.png"))  # fmt: skip
    grey, colour = (figure.get_axes()[0].get_images()[0] for figure in drawn)
    assert grey.get_cmap().name == "gray" and grey.get_clim() == (0.0, 1.0)
    assert float(grey.to_rgba(grey.get_array())[0, 0, 0]) == pytest.approx(0.2, abs=0.01)
    assert colour.get_array().shape == (4, 4, 3)
