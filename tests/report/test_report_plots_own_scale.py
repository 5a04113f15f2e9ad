"""Maps drawn on their own scale (``absolute=``): LAP's probabilities mean the same in every
image (paper 000 IV.B: "the importance scores have the same scale in all samples"), so the
overlays draw them as they are on [0, 1] while a post-hoc map is divided by its peak; the
evaluation's overlays and ``torchlap explain`` pass the methods with a native threshold."""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from report_figures import capture_figures
from report_synthetic import lap_results

import torchlap.evaluate.outputs
from torchlap.explainers import available, own_scale
from torchlap.report import plot_overlays
from torchlap.report.plots import plot_explanation


def shown(image: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(image.get_array()), dtype=torch.float64)


def as_is_reference(grid: torch.Tensor) -> torch.Tensor:
    """Each value kept, below 0 shown as 0, above 1 as 1."""
    out = torch.zeros(grid.shape, dtype=torch.float64)
    for index in np.ndindex(*grid.shape):
        out[index] = min(max(float(grid[index]), 0.0), 1.0)
    return out


def by_peak_reference(grid: torch.Tensor) -> torch.Tensor:
    peak = max(float(v) for v in grid.flatten())
    out = torch.zeros(grid.shape, dtype=torch.float64)
    for index in np.ndindex(*grid.shape):
        out[index] = max(float(grid[index]), 0.0) / peak
    return out


def _maps() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    low = torch.rand(2, 6, 6) * 0.3  # a LAP map with no score above 0.5: nothing important
    low[1, 0, 0] = 1.4  # above the scale: shown as 1
    low[1, 0, 1] = -0.2  # below it: shown as 0
    return {"lap": low, "gradcam": torch.rand(2, 6, 6) * 0.3}


def test_overlays_draw_the_absolute_methods_as_they_are_and_the_others_by_peak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    maps = _maps()
    images = torch.rand(2, 3, 6, 6)
    plot_overlays(images, maps, None, None, tmp_path / "o.png", absolute={"lap"})
    plot_overlays(images, maps, None, None, tmp_path / "p.png")  # default: every map by peak
    own, default = (np.asarray(f.axes).reshape(2, 3) for f in figures)
    for row in range(2):
        lap, gradcam = (own[row, c].images[1] for c in (1, 2))
        torch.testing.assert_close(shown(lap), as_is_reference(maps["lap"][row]))
        torch.testing.assert_close(shown(gradcam), by_peak_reference(maps["gradcam"][row]))
        assert lap.get_clim() == (0, 1) and gradcam.get_clim() == (0, 1)
        torch.testing.assert_close(
            shown(default[row, 1].images[1]), by_peak_reference(maps["lap"][row])
        )
    assert float(shown(own[0, 1].images[1]).max()) < 0.3  # not stretched to the top


def test_the_explanation_figure_takes_the_same_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    maps = {name: m[1] for name, m in _maps().items()}
    plot_explanation(torch.rand(3, 6, 6), maps, None, "t", tmp_path / "e.png", absolute=["lap"])
    (figure,) = figures
    lap, gradcam = (figure.axes[c].images[1] for c in (1, 2))
    torch.testing.assert_close(shown(lap), as_is_reference(maps["lap"]))
    torch.testing.assert_close(shown(gradcam), by_peak_reference(maps["gradcam"]))


@pytest.mark.parametrize(
    ("absolute", "error", "message"),
    [
        ("lap", TypeError, r"absolute must be a collection of method names .*got 'lap'"),
        (None, TypeError, "absolute must be a collection of method names"),
        (
            {"lap", "rise"},
            ValueError,
            r"absolute names methods without maps here: rise; the "
            r"maps are of: lap, gradcam",
        ),
    ],
)
def test_bad_absolute_arguments_are_refused_before_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, absolute: object, error: type, message: str
) -> None:
    figures = capture_figures(monkeypatch)
    with pytest.raises(error, match=message):
        plot_overlays(torch.rand(2, 3, 6, 6), _maps(), None, None, tmp_path / "o.png",
                      absolute=absolute)  # fmt: skip
    with pytest.raises(error, match=message):
        plot_explanation(torch.rand(3, 6, 6), {k: v[0] for k, v in _maps().items()}, None, "t",
                         tmp_path / "e.png", absolute=absolute)  # fmt: skip
    assert figures == [] and not list(tmp_path.iterdir())


def test_bad_colormap_and_alpha_of_the_explanation_figure_are_refused(tmp_path: Path) -> None:
    maps = {"lap": torch.rand(6, 6)}
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        plot_explanation(torch.rand(3, 6, 6), maps, None, "t", tmp_path / "e.png", cmap="nope")
    with pytest.raises(ValueError, match="alpha"):
        plot_explanation(torch.rand(3, 6, 6), maps, None, "t", tmp_path / "e.png", alpha=1.5)
    assert not list(tmp_path.iterdir())


def test_only_lap_has_its_own_scale_among_the_registered_methods() -> None:
    assert own_scale("lap") is True
    assert [m for m in available() if own_scale(m)] == ["lap"]
    with pytest.raises(ValueError, match="unknown explainer 'nope'"):
        own_scale("nope")


def test_the_evaluation_overlays_pass_the_methods_with_their_own_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passed: dict[str, Any] = {}

    def capture(images, maps, masks, titles, path, **options):
        (method,) = maps
        passed[method] = set(options["absolute"])
        Image.new("RGB", (8, 8)).save(path)  # a stand-in the report can embed
        return Path(path)

    monkeypatch.setattr(torchlap.evaluate.outputs, "plot_overlays", capture)
    data = SimpleNamespace(
        images=torch.rand(3, 3, 8, 8),
        labels=torch.tensor([0, 1, 0]),
        masks=torch.ones(3, 8, 8, dtype=torch.bool),
        classes=["benign", "malignant"],
        has_region=torch.tensor([True, True, True]),
    )
    indices = torch.tensor([0, 2])
    examples = {m: (indices, torch.rand(2, 8, 8)) for m in ("lap", "gradcam", "rise")}
    report = torchlap.evaluate.outputs.write_run_outputs(
        tmp_path, {"WS-LAP": lap_results()}, {"WS-LAP": {}}, data, examples
    )
    assert passed == {"lap": {"lap"}, "gradcam": set(), "rise": set()}
    text = html.unescape(report.read_text(encoding="utf-8"))  # the captions say which scale
    assert "lap: best, median and worst IoU (top-scored selection); its scores as they are" in text
    for method in ("gradcam", "rise"):
        assert (
            f"{method}: best, median and worst IoU (top-scored selection); each map / peak" in text
        )
