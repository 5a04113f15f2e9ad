"""What the sanity-check curves, the grid pointing game box plots and the grid examples draw,
read back from the figure: panels, points, labels, threshold and chance lines, axis ranges."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.text import Text
from report_figures import capture_sanity_figures

from torchlap.report.sanity import (
    plot_grid_examples,
    plot_grid_pg_distribution,
    plot_sanity_curves,
)

STEPS = ["net.fc", "net.layer1", "conv1"]


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions would save (nothing is written)."""
    return capture_sanity_figures(monkeypatch)


def _mode(spearman: list, ssim: list | None = None) -> dict:
    return {"steps": STEPS, "spearman_abs": spearman, "ssim": ssim or spearman}


def _curves(drawn: list, runs: dict) -> list:
    assert plot_sanity_curves(runs, Path("unused.png")) == Path("unused.png")
    (figure,) = drawn
    return figure.get_axes()


def _assert_legible(figure) -> None:
    """Every text set (titles, labels, ticks, legends) at 5 pt or more: a size of 0 is drawn
    at matplotlib's 1 pt floor, unreadable."""
    texts = [t for t in figure.findobj(Text) if t.get_text()]
    assert texts and all(t.get_fontsize() >= 5 for t in texts), [
        (t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 5
    ]


def _data_lines(ax) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_curves_start_at_the_trained_model_and_name_each_step(drawn):
    # one method ran the cascading mode only: no independent column; None is a gap
    runs = {"r": {"sanity": {"gradcam": {"threshold": 0.5, "cascading": _mode(
        [0.6, None, 0.1], [0.5, 0.4, 0.3])}}}}  # fmt: skip
    axes = _curves(drawn, runs)
    assert len(axes) == 2  # one row per measure, one column (cascading)
    _assert_legible(drawn[0])
    spearman, ssim = axes
    assert [ax.get_title() for ax in axes] == ["r: cascading", "r: cascading"]
    assert [ax.get_ylabel() for ax in axes] == ["Spearman rank corr. (|map|)", "SSIM"]
    (line,) = _data_lines(spearman)
    y = list(line.get_ydata())
    assert y[0] == 1.0 and y[1] == 0.6 and math.isnan(y[2]) and y[3] == 0.1
    assert list(line.get_xdata()) == [0, 1, 2, 3]
    assert line.get_marker() == "o" and line.get_markersize() > 0
    assert list(_data_lines(ssim)[0].get_ydata()) == [1.0, 0.5, 0.4, 0.3]
    for ax in axes:
        assert list(ax.get_xticks()) == [0, 1, 2, 3]
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["trained", "fc", "layer1", "conv1"]  # "net." dropped
        assert all(t.get_rotation() == 60 and t.get_fontsize() > 0 for t in ax.get_xticklabels())
        assert ax.get_ylim() == (-0.25, 1.05)  # room below 0 even when no value is negative


def test_threshold_line_on_the_spearman_panels_only(drawn):
    entry = {"threshold": 0.3, "cascading": _mode([0.6, 0.2, 0.1]),
             "independent": _mode([0.5, 0.4, 0.3])}  # fmt: skip
    axes = _curves(drawn, {"r": {"sanity": {"gradcam": entry}}})
    assert [ax.get_title() for ax in axes] == ["r: cascading", "r: independent"] * 2
    for index, ax in enumerate(axes):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        if index < 2:  # the Spearman row
            (line,) = dashed
            assert list(line.get_ydata()) == [0.3, 0.3]
        else:
            assert dashed == []
    drawn.clear()
    del entry["threshold"]  # no threshold recorded: no line
    axes = _curves(drawn, {"r": {"sanity": {"gradcam": entry}}})
    assert all(line.get_linestyle() != "--" for ax in axes for line in ax.get_lines())


def test_a_method_missing_a_mode_leaves_that_panel_to_the_others(drawn):
    runs = {"r": {"sanity": {
        "gradcam": {"cascading": _mode([0.6, 0.2, 0.1])},
        "lap": {"cascading": _mode([0.9, 0.8, 0.7]), "independent": _mode([0.5, 0.4, -0.6])},
    }}}  # fmt: skip
    axes = _curves(drawn, runs)
    by_title = {}
    for ax in axes:
        by_title.setdefault(ax.get_title(), []).append([ln.get_label() for ln in _data_lines(ax)])
    assert by_title["r: cascading"] == [["gradcam", "lap"]] * 2
    assert by_title["r: independent"] == [["lap"]] * 2
    independent_spearman = axes[1]
    assert independent_spearman.get_ylim() == pytest.approx((-0.65, 1.05))


def test_the_legend_is_on_each_runs_first_panel_only(drawn):
    entry = {"cascading": _mode([0.6, 0.2, 0.1]), "independent": _mode([0.5, 0.4, 0.3])}
    runs = {"a": {"sanity": {"gradcam": entry, "lap": entry}}, "b": {"sanity": {"lap": entry}}}
    axes = _curves(drawn, runs)
    assert len(axes) == 8  # 2 runs x 2 measures rows, 2 modes columns
    with_legend = [i for i, ax in enumerate(axes) if ax.get_legend() is not None]
    _assert_legible(drawn[0])
    assert with_legend == [0, 4]
    legend = axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["gradcam", "lap"]
    assert all(t.get_fontsize() > 0 for t in legend.get_texts())
    assert legend._ncols == 2  # side by side: a long method list stays short


def test_a_run_without_cascading_curves_still_names_its_methods(drawn):
    # run "a" ran the independent mode only, run "b" the cascading one: both columns are
    # drawn, and a's first panel is empty. Before: a's curves had no legend at all (it went
    # on the first column only, and only when that panel had curves)
    runs = {"a": {"sanity": {"gradcam": {"independent": _mode([0.5, 0.4, 0.3]), "threshold": 0.5},
                             "lap": {"independent": _mode([0.6, 0.4, 0.3])}}},
            "b": {"sanity": {"gradcam": {"cascading": _mode([0.5, 0.4, 0.3])}}}}  # fmt: skip
    axes = _curves(drawn, runs)
    assert [ax.get_title() for ax in axes[:2]] == ["a: cascading", "a: independent"]
    assert _data_lines(axes[0]) == [] and axes[0].get_legend() is None  # no empty box
    legend = axes[1].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["gradcam", "lap"]
    assert [i for i, ax in enumerate(axes) if ax.get_legend() is not None] == [1, 4]


def test_the_legend_names_every_method_of_the_run_in_column_order(drawn):
    # each method ran one mode: the first panel's legend names both (lap's curve is in the
    # second column), in the tables' column order
    runs = {"a": {"sanity": {"gradcam": {"cascading": _mode([0.5, 0.4, 0.3])},
                             "lap": {"independent": _mode([0.6, 0.4, 0.3])}},
                  "methods": {"lap": {"display_name": "LAP", "column_rank": 0}}}}  # fmt: skip
    axes = _curves(drawn, runs)
    legend = axes[0].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["LAP", "gradcam"]
    colors = {
        t.get_text(): h.get_color()
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    assert colors["LAP"] == _data_lines(axes[1])[0].get_color()
    assert [i for i, ax in enumerate(axes) if ax.get_legend() is not None] == [0]


def _game(scores: list[float], chance: float | None = 0.25) -> dict:
    entry = {"mean": sum(scores) / len(scores), "n": len(scores), "scores": scores}
    if chance is not None:
        entry["chance"] = chance
    return entry


def test_grid_pg_boxes_one_panel_per_run_with_chance(drawn):
    runs = {
        "a": {"grid_pointing_game": {"gradcam": _game([0.1, 0.2, 0.6]),
                                     "lap": _game([0.5, 0.9, 1.0])},
              "methods": {"lap": {"display_name": "LAP"}}},
        "b": {"grid_pointing_game": {"gradcam": _game([0.3, 0.4], chance=None)}},
        "c": {"sanity": {}},  # no game: no panel
    }  # fmt: skip
    assert plot_grid_pg_distribution(runs, Path("pg.png")) == Path("pg.png")
    (figure,) = drawn
    _assert_legible(figure)
    first, second = figure.get_axes()
    assert first.get_title() == "a: grid pointing game"
    assert second.get_title() == "b: grid pointing game"
    for ax in (first, second):
        assert ax.get_ylim() == (-0.02, 1.02)
        assert ax.get_ylabel() == "positive share in cell"
    assert list(first.get_xticks()) == [1, 2]
    assert [t.get_text() for t in first.get_xticklabels()] == ["gradcam", "LAP"]
    assert all(t.get_fontsize() > 0 for t in first.get_xticklabels())
    assert list(second.get_xticks()) == [1]
    # medians and means (showmeans) of each box, at the box's position
    # a line's (centre, levels): a median is a flat segment, a mean (showmeans) a point
    drawn_at = [(round(float(np.mean(x)), 6), set(np.round(y, 6)))
                for x, y in (ln.get_data() for ln in first.get_lines()) if len(x)]  # fmt: skip
    for position, median, mean in ((1.0, 0.2, 0.3), (2.0, 0.9, 0.8)):
        assert (position, {median}) in drawn_at and (position, {mean}) in drawn_at
    chance = [ln for ln in first.get_lines() if ln.get_label() == "chance"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.25, 0.25]
    assert [t.get_text() for t in first.get_legend().get_texts()] == ["chance"]
    assert all(ln.get_label() != "chance" for ln in second.get_lines())
    assert second.get_legend() is None


def test_grid_pg_without_any_game_is_refused(drawn):
    with pytest.raises(ValueError, match="no run has grid pointing game results"):
        plot_grid_pg_distribution({"a": {"grid_pointing_game": {}}}, Path("pg.png"))
    assert drawn == []


def _examples(drawn: list, grids, maps: dict, facts=None) -> list:
    classes = torch.tensor([1, 0][: len(grids)])
    path = plot_grid_examples(grids, classes, (2, 4), maps, ["cat", "dog"], Path("ex.png"), facts)
    assert path == Path("ex.png")
    (figure,) = drawn
    return figure.get_axes()


def test_grid_examples_show_the_grid_then_each_methods_map_with_the_cell_framed(drawn):
    # 17 x 25 pixels in 2 x 4 cells: the frame is 8 x 6 pixels (whole pixels)
    grids = torch.full((2, 4, 17, 25), 0.5)
    grids[0, :, 0, 0], grids[0, :, 0, 1] = -1.0, 2.0  # clamped to [0, 1]
    maps = {"gradcam": torch.zeros(2, 17, 25), "lap": torch.zeros(2, 17, 25)}
    maps["gradcam"][0, 3, 3], maps["gradcam"][1, 3, 3] = -0.4, 2.0
    facts = {"lap": {"display_name": "LAP", "column_rank": 0}}
    axes = _examples(drawn, grids, maps, facts)
    assert len(axes) == 6  # 2 rows x (grid, LAP, gradcam)
    _assert_legible(drawn[0])
    titles = [ax.get_title() for ax in axes]
    assert titles == ["explain: dog", "LAP", "gradcam", "explain: cat", "", ""]
    for ax in axes:
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
        (frame,) = ax.patches
        assert frame.get_xy() == (-0.5, -0.5)
        assert (frame.get_width(), frame.get_height()) == (6, 8)
        assert not frame.get_fill()
    shown = axes[0].get_images()[0].get_array()
    assert shown.shape == (17, 25, 3)  # the first three channels, channels last
    assert shown[0, 0].tolist() == [0.0] * 3 and shown[0, 1].tolist() == [1.0] * 3
    assert shown[5, 5].tolist() == [0.5] * 3
    (lap,), (gradcam,) = axes[1].get_images(), axes[2].get_images()
    assert lap.get_cmap().name == gradcam.get_cmap().name == "bwr"
    assert lap.get_clim() == (-1.0, 1.0)  # a flat zero map: no division by zero
    assert gradcam.get_clim() == pytest.approx((-0.4, 0.4))  # symmetric: 0 is white
    assert axes[5].get_images()[0].get_clim() == (-2.0, 2.0)  # each map its own scale
    assert float(gradcam.get_array()[3, 3]) == pytest.approx(-0.4)


def test_grid_examples_of_grey_images(drawn):
    grids = torch.rand(1, 1, 8, 12)
    axes = _examples(drawn, grids, {"gradcam": torch.rand(1, 8, 12)})
    assert len(axes) == 2
    image = axes[0].get_images()[0]
    assert image.get_array().shape == (8, 12)
    assert image.get_cmap().name == "gray"
    assert (axes[0].patches[0].get_width(), axes[0].patches[0].get_height()) == (3, 4)


@pytest.mark.parametrize(
    ("grids", "maps"),
    [(torch.rand(3, 8, 8), {"gradcam": torch.rand(3, 8, 8)}), (torch.rand(1, 3, 8, 8), {})],
)
def test_grid_examples_need_image_grids_and_maps(drawn, grids, maps):
    with pytest.raises(ValueError, match=r"needs grids \(G, C, H, W\) and at least one map"):
        plot_grid_examples(grids, torch.tensor([0]), (2, 2), maps, ["a"], Path("ex.png"))
    assert drawn == []


def test_figure_sizes_grow_with_the_panels(drawn):
    # the PNG's size in the report: fixed inches per panel, whatever the number of runs
    one = {"cascading": _mode([0.5, 0.4, 0.3])}
    both = {**one, "independent": _mode([0.5, 0.4, 0.3])}
    plot_sanity_curves({"a": {"sanity": {"gradcam": one}}}, Path("c.png"))
    plot_sanity_curves({"a": {"sanity": {"gradcam": both}}, "b": {"sanity": {"gradcam": one}}},
                       Path("c.png"))  # fmt: skip
    few = {m: _game([0.5]) for m in ("gradcam", "lap")}
    many = {m: _game([0.5]) for m in ("gradcam", "lap", "rise", "bcos", "deeplift")}
    plot_grid_pg_distribution({"a": {"grid_pointing_game": few}}, Path("pg.png"))
    plot_grid_pg_distribution({"a": {"grid_pointing_game": few},
                               "b": {"grid_pointing_game": many}}, Path("pg.png"))  # fmt: skip
    maps = {"gradcam": torch.rand(2, 8, 8), "lap": torch.rand(2, 8, 8)}
    plot_grid_examples(torch.rand(2, 3, 8, 8), torch.tensor([0, 0]), (2, 2), maps, ["a"],
                       Path("ex.png"))  # fmt: skip
    sizes = [tuple(round(float(v), 6) for v in f.get_size_inches()) for f in drawn]
    assert sizes == [(5.0, 5.2), (10.0, 10.4), (4.0, 2.8), (5.5, 5.6), (4.8, 3.4)]
