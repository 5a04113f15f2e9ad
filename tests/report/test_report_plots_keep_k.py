"""keep-k% curves (paper 000, Fig. 4): the data each line is drawn from, read back from the
matplotlib Axes (x = k in %, y = agreement in %), which panels are drawn, and which lines
join the right panel when runs stored different top-t."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from matplotlib import colormaps
from report_figures import capture_figures
from report_synthetic import METHOD_FACTS, metric

from torchlap.report import plot_keep_k


def run(curves: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, Any]:
    """A results dict whose ``faithfulness`` holds ``method -> k -> key -> value``."""
    return {
        "methods": METHOD_FACTS,
        "faithfulness": {
            method: {
                "keep_top_k": {
                    k: {key: metric(value) for key, value in entry.items()}
                    for k, entry in by_k.items()
                }
            }
            for method, by_k in curves.items()
        },
    }


def lines_of(ax: Any) -> dict[str, tuple[list[float], list[float]]]:
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.get_lines()
    }


def same(actual: list[float], expected: list[float]) -> bool:
    """Equal lists of floats, a nan equal to a nan."""
    return len(actual) == len(expected) and all(
        (math.isnan(a) and math.isnan(e)) or a == pytest.approx(e)
        for a, e in zip(actual, expected, strict=True)
    )


# k levels stored out of order (and "10" < "5" as text): the curve runs in increasing k
GRADCAM = {
    "50": {"top1_vs_prediction": 0.7, "top5_vs_prediction": 0.9, "top1_vs_label": 0.6},
    "5": {"top1_vs_prediction": 0.2, "top5_vs_prediction": 0.4, "top1_vs_label": 0.1},
    "10": {"top1_vs_prediction": None, "top5_vs_prediction": 0.55, "top1_vs_label": 0.25},
}


def test_each_line_is_k_against_agreement_in_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    lap = {
        "5": {"top1_vs_prediction": 0.4, "top5_vs_prediction": 0.6, "other": 0.5},
        "10": {"top1_vs_prediction": 0.5, "top5_vs_prediction": 0.8},
    }
    plot_keep_k(run({"lap": lap, "gradcam": GRADCAM}), tmp_path / "k.png")
    (figure,) = figures
    left, right = figure.axes
    # one run: labelled by the methods' display names, in the tables' order (GC before LAP)
    assert [line.get_label() for line in left.get_lines()] == ["GC", "LAP"]
    assert lines_of(left)["GC"][0] == [5.0, 10.0, 50.0]
    assert same(lines_of(left)["GC"][1], [20.0, math.nan, 70.0])  # undefined: a gap
    assert same(lines_of(left)["LAP"][1], [40.0, 50.0])
    assert same(lines_of(right)["GC"][1], [40.0, 55.0, 90.0])
    assert same(lines_of(right)["LAP"][1], [60.0, 80.0])
    assert left.get_title() == "Top-1 agreement with the prediction"
    assert right.get_title() == "Top-5 agreement with the prediction"
    assert left.get_ylim() == right.get_ylim() == (-2.0, 102.0)  # 0 and 100 % both visible
    # one marker per method, the same in both panels
    markers = [line.get_marker() for line in left.get_lines()]
    assert len(set(markers)) == 2
    assert [line.get_marker() for line in right.get_lines()] == markers
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["GC", "LAP"]


def test_the_label_reference_draws_the_label_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    plot_keep_k(run({"gradcam": GRADCAM}), tmp_path / "k.png", reference="label")
    (figure,) = figures
    (ax,) = figure.axes  # only top-1 is stored against the label: one panel
    assert ax.get_title() == "Top-1 agreement with the label"
    assert same(lines_of(ax)["GC"][1], [10.0, 25.0, 60.0])


def test_only_top1_stored_draws_one_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = capture_figures(monkeypatch)
    only_top1 = {k: {"top1_vs_prediction": v["top1_vs_prediction"]} for k, v in GRADCAM.items()}
    plot_keep_k(run({"gradcam": only_top1}), tmp_path / "k.png")
    (figure,) = figures
    assert len(figure.axes) == 1


def test_runs_with_fewer_classes_join_the_widest_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run "five" stores top-1/3/5, run "three" top-1/3 (3 classes), run "one" top-1 only: the
    right panel is top-5; "three" joins it with its top-3, "one" is not in it."""
    figures = capture_figures(monkeypatch)
    five = {"5": {"top1_vs_prediction": 0.1, "top3_vs_prediction": 0.3, "top5_vs_prediction": 0.5}}
    three = {"5": {"top1_vs_prediction": 0.11, "top3_vs_prediction": 0.33}}
    one = {"5": {"top1_vs_prediction": 0.12}}
    runs = {
        "five": run({"gradcam": five}),
        "three": run({"gradcam": three, "lap": three}),
        "one": run({"gradcam": one}),
    }
    plot_keep_k(runs, tmp_path / "k.png")
    (figure,) = figures
    left, right = figure.axes
    assert right.get_title() == "Top-5 agreement with the prediction"
    # several runs: each label names its run
    assert {label: ys[0] for label, (_, ys) in lines_of(left).items()} == pytest.approx(
        {"five · GC": 10.0, "three · GC": 11.0, "three · LAP": 11.0, "one · GC": 12.0}
    )
    assert {label: ys[0] for label, (_, ys) in lines_of(right).items()} == pytest.approx(
        {"five · GC": 50.0, "three · GC": 33.0, "three · LAP": 33.0}
    )
    # a line style per run, a marker per method, a color per method
    style = {line.get_label(): line for line in left.get_lines()}
    assert style["five · GC"].get_linestyle() != style["three · GC"].get_linestyle()
    assert style["three · GC"].get_linestyle() == style["three · LAP"].get_linestyle()
    assert style["three · GC"].get_marker() != style["three · LAP"].get_marker()
    assert style["five · GC"].get_marker() == style["one · GC"].get_marker()
    assert style["five · GC"].get_color() == style["one · GC"].get_color()
    assert style["three · GC"].get_color() != style["three · LAP"].get_color()
    # every line of the figure is in the legend (also one that only the left panel has)
    (legend,) = figure.legends
    assert sorted(text.get_text() for text in legend.get_texts()) == sorted(lines_of(left))


def test_methods_without_curves_for_the_reference_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    label_only = {"5": {"top1_vs_label": 0.5}}
    results = run({"gradcam": GRADCAM, "lap": label_only})
    results["faithfulness"]["deeplift"] = {"drop": metric(3.0)}  # no keep_top_k at all
    plot_keep_k(results, tmp_path / "k.png")
    (figure,) = figures
    assert list(lines_of(figure.axes[0])) == ["GC"]
    del results["faithfulness"]["gradcam"]
    with pytest.raises(ValueError, match="top<t>_vs_prediction"):
        plot_keep_k(results, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize(("n_methods", "palette"), [(10, "tab10"), (11, "tab20")])
def test_up_to_ten_methods_take_tab10_more_take_tab20(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_methods: int, palette: str
) -> None:
    """One distinct color per method: tab10 holds 10, tab20 20."""
    figures = capture_figures(monkeypatch)
    methods = [f"method{i:02d}" for i in range(n_methods)]  # not in the registry: given order
    plot_keep_k(run({m: {"5": {"top1_vs_prediction": 0.5}} for m in methods}), tmp_path / "k.png")
    (figure,) = figures
    colors = {line.get_label(): line.get_color() for line in figure.axes[0].get_lines()}
    assert colors == {m: colormaps[palette](i) for i, m in enumerate(methods)}


def test_two_classes_draw_a_top2_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A binary task stores top-1 and top-2: the right panel is top-2."""
    figures = capture_figures(monkeypatch)
    binary = {"5": {"top1_vs_prediction": 0.6, "top2_vs_prediction": 1.0}}
    plot_keep_k(run({"lap": binary}), tmp_path / "k.png")
    (figure,) = figures
    _, right = figure.axes
    assert right.get_title() == "Top-2 agreement with the prediction"
    assert same(lines_of(right)["LAP"][1], [100.0])


def test_two_runs_name_their_run_in_each_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    curve = {"5": {"top1_vs_prediction": 0.5}}
    plot_keep_k({"a": run({"lap": curve}), "b": run({"lap": curve})}, tmp_path / "k.png")
    (figure,) = figures
    assert sorted(lines_of(figure.axes[0])) == ["a · LAP", "b · LAP"]
