"""The numbers the sanity-check section shows, each traced to its field: the grid pointing
game's median [q25, q75], the data randomization's mean Spearman, and the randomization
curves starting at the trained model's 1.0."""

from __future__ import annotations

from pathlib import Path

import pytest

import torchlap.report.sanity as sanity_module
from torchlap.report.sanity import checks_markdown, checks_section, plot_sanity_curves

STEPS = ["net.fc", "net.layer1", "net.conv1"]


def _run() -> dict:
    """One run: gradcam with a sanity entry, a grid pointing game and data randomization;
    every quantile and statistic a different number."""
    return {
        "sanity": {
            "gradcam": {
                "threshold": 0.5,
                "cascading": {
                    "steps": STEPS,
                    "spearman_abs": [0.6, 0.3, 0.1],
                    "ssim": [0.5, 0.4, 0.2],
                },
                "summary": {"spearman_abs": 0.1, "ssim": 0.2},
                "passed": True,
            }
        },
        "grid_pointing_game": {
            "gradcam": {
                "mean": 0.55,
                "n": 8,
                "chance": 0.25,
                "scores": [0.5] * 8,
                "distribution": {
                    "std": 0.1,
                    "min": 0.11,
                    "q25": 0.222,
                    "median": 0.444,
                    "q75": 0.777,
                    "max": 0.99,
                },
            }
        },
        "data_randomization": {
            "threshold": 0.5,
            "against": "real",
            "methods": {
                "gradcam": {
                    "spearman_abs": {"mean": 0.123, "median": 0.987},
                    "ssim": {"mean": 0.321, "median": 0.654},
                    "passed": True,
                }
            },
        },
    }


def test_grid_game_row_shows_median_then_q25_and_q75() -> None:
    """'Grid PG median [q25, q75]' is 0.444 [0.222, 0.777] for those three fields."""
    text = checks_markdown({"r": _run()})
    assert "0.444 [0.222, 0.777]" in text
    assert "0.550" in text  # the mean


def test_data_randomization_shows_the_mean_spearman_and_ssim() -> None:
    """The data randomization table shows the means (0.123, 0.321), not the medians."""
    section = checks_section({"r": _run()})
    assert section is not None
    table = section.html[section.html.index("Data randomization") :]
    assert "0.123" in table and "0.321" in table
    assert "0.987" not in table and "0.654" not in table


def test_sanity_curves_start_at_the_trained_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each curve is (0, 1.0) for the trained model, then (k, value k) per randomized unit."""
    drawn = []
    monkeypatch.setattr(
        sanity_module, "_save", lambda figure, path, *_: drawn.append(figure) or path
    )
    plot_sanity_curves({"r": _run()}, tmp_path / "curves.png")
    (figure,) = drawn
    curves = {}
    for ax in figure.get_axes():
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                curves[ax.get_ylabel()] = (list(line.get_xdata()), list(line.get_ydata()))
    assert len(curves) == 2
    for label, (xs, ys) in curves.items():
        assert xs == [0, 1, 2, 3]
        expected = [1.0, 0.6, 0.3, 0.1] if label.startswith("Spearman") else [1.0, 0.5, 0.4, 0.2]
        assert ys == pytest.approx(expected)
