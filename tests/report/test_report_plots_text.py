"""Which texts of a figure are drawn literally (no mathtext, no LaTeX) and which keep the
user's settings: the figures' own texts (titles, labels, legends, named ticks) are user text;
numeric tick labels and offset texts are matplotlib's."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure
from report_figures import capture_figures
from report_synthetic import lap_results, metric

from torchlap.report import plot_iou_bars, plot_keep_k
from torchlap.report._figure import _literal_text


def test_torchlap_texts_are_literal_and_generated_ones_keep_the_user_settings() -> None:
    with matplotlib.rc_context({"text.usetex": True}):  # never drawn: no LaTeX needed
        figure = Figure()
        named, numeric = figure.subplots(1, 2)
        named.set_xticks([0, 1], ["$a$", "$b$"])  # named ticks: user text
        named.set_title("$x^$")
        numeric.plot([0, 1e7], [0, 1])  # numeric ticks and an offset text: matplotlib's
        numeric.set_ylabel("$y$")
        figure.legend(["$run$"])
        figure.canvas.draw_idle()
        _literal_text(figure)
    user = [
        named.title,
        numeric.yaxis.label,
        *figure.legends[0].get_texts(),
        *(tick.label1 for tick in named.xaxis.get_major_ticks()),
    ]
    for text in user:
        assert text.get_usetex() is False and text.get_parse_math() is False, text
    generated = [
        numeric.xaxis.offsetText,
        numeric.yaxis.offsetText,
        *(tick.label1 for tick in numeric.xaxis.get_major_ticks()),
        *(tick.label2 for tick in numeric.yaxis.get_major_ticks()),
    ]
    for text in generated:
        assert text.get_usetex() is True and text.get_parse_math() is True, text


def test_a_path_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike ending in \.png"):
        plot_keep_k({}, 3)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_method_name_with_dollars_is_a_literal_tick_label(tmp_path: Path) -> None:
    """The IoU bars name the methods on the x axis with set_xticks(..., labels), which installs
    a FuncFormatter (not a FixedFormatter): ``$x^$`` went to mathtext and failed to parse."""
    results = lap_results()
    results["localization"]["$x^$"] = {"iou_threshold": metric(0.3), "iou_topk": metric(0.2)}
    target = plot_iou_bars(results, tmp_path / "iou.png")
    assert target.is_file()


def test_every_numeric_tick_keeps_the_users_mathtext_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first numeric tick existed when the texts were sorted: the others (made when
    the figure's texts were listed) were set literal, and with ``axes.formatter.use_mathtext``
    showed ``$\\mathdefault{20}$`` as text."""
    figures = capture_figures(monkeypatch)
    with matplotlib.rc_context({"axes.formatter.use_mathtext": True}):
        plot_keep_k(lap_results(), tmp_path / "k.png")
    (figure,) = figures
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [tick.label1 for tick in axis.get_major_ticks()]
            assert len(labels) > 3
            assert all(label.get_text().startswith("$") for label in labels)
            assert all(label.get_parse_math() for label in labels)
        assert ax.title.get_parse_math() is False
