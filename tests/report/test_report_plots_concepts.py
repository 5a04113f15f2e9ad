"""LAP concept panels (paper 000, Fig. 3) of ``plot_lap_layers`` and ``plot_explanation``: the
RGBA image handed to matplotlib compared with a per-pixel reference written from the
docstring (colors mixed in proportion to the heads' probabilities, opacity from the strongest
head), which heads are shown, their legend, and the explanation's overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from report_figures import capture_figures

from torchlap.report import plot_lap_layers
from torchlap.report.plots import plot_explanation


def shown(image: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(image.get_array()), dtype=torch.float64)


def concepts_reference(maps: torch.Tensor, colors: list[tuple[float, ...]]) -> torch.Tensor:
    """(k, H, W) probabilities at image size, one RGB color per head -> (H, W, 4): per pixel
    the colors weighted by probability / sum of probabilities, alpha = 0.85 * largest one."""
    k, height, width = maps.shape
    out = torch.zeros(height, width, 4, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            probabilities = [float(maps[i, y, x]) for i in range(k)]
            total = sum(probabilities)
            for channel in range(3):
                mixed = sum(p * colors[i][channel] for i, p in enumerate(probabilities))
                out[y, x, channel] = mixed / total if total > 0 else 0.0
            out[y, x, 3] = 0.85 * max(probabilities)
    return out


def legend_of(ax: Any) -> tuple[list[str], list[tuple[float, ...]]]:
    legend = ax.get_legend()
    handles = legend.legend_handles
    return [t.get_text() for t in legend.get_texts()], [tuple(h.get_facecolor()) for h in handles]


def test_heads_with_the_highest_peaks_mix_their_colors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    torch.manual_seed(0)
    image = torch.rand(3, 6, 6)
    four = torch.rand(4, 6, 6) * 0.5
    four[1, 2, 2], four[3, 4, 1] = 0.9, 0.8  # heads 1 and 3 have the highest peaks
    two = torch.rand(2, 6, 6)
    names = ["a", "b", "c", "d"]
    concept_maps = {"layer3.pool": four, "avgpool": two}
    plot_lap_layers(
        image, concept_maps, tmp_path / "lap.png", concept_names=names, max_concepts=2, title="T"
    )
    (figure,) = figures
    first, second = figure.axes
    tab10 = colormaps["tab10"]
    colors = [tab10(0)[:3], tab10(1)[:3]]  # by position among the shown heads
    torch.testing.assert_close(
        shown(first.images[1]), concepts_reference(four[[1, 3]], colors), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        shown(second.images[1]), concepts_reference(two, colors), atol=1e-5, rtol=1e-5
    )
    for ax in (first, second):
        gray = ax.images[0]
        torch.testing.assert_close(shown(gray), image.double().mean(dim=0))
        assert gray.get_cmap().name == "gray" and gray.get_clim() == (0, 1)
    labels, handle_colors = legend_of(first)
    assert labels == ["b", "d"]
    assert handle_colors == [pytest.approx((*c, 1.0)) for c in colors]
    assert legend_of(second)[0] == ["a", "b"]
    assert [first.get_title(), second.get_title()] == ["layer3.pool (6×6)", "avgpool (6×6)"]
    assert figure.get_suptitle() == "T"


def test_layer_maps_are_resized_to_the_image_and_unnamed_heads_numbered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    # one head, constant 0.4 at 2x2: any bilinear resizing keeps it constant
    plot_lap_layers(torch.rand(1, 1, 8, 8), {"l": torch.full((1, 2, 2), 0.4)}, tmp_path / "a.png")
    (figure,) = figures
    (ax,) = figure.axes
    rgba = shown(ax.images[1])
    assert rgba.shape == (8, 8, 4)
    torch.testing.assert_close(rgba[..., 3], torch.full((8, 8), 0.85 * 0.4, dtype=torch.float64))
    assert legend_of(ax)[0] == ["concept 0"]
    assert ax.get_title() == "l (2×2)"
    assert figure.get_suptitle() == ""  # no title given


@pytest.mark.parametrize(("max_concepts", "palette"), [(10, "tab10"), (11, "tab20")])
def test_more_than_ten_heads_take_the_twenty_color_palette(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_concepts: int, palette: str
) -> None:
    figures = capture_figures(monkeypatch)
    maps = torch.rand(11, 4, 4)
    plot_lap_layers(torch.rand(3, 4, 4), {"l": maps}, tmp_path / "a.png", max_concepts=max_concepts)
    (figure,) = figures
    _, handle_colors = legend_of(figure.axes[0])
    expected = [colormaps[palette](i % colormaps[palette].N) for i in range(len(handle_colors))]
    assert handle_colors == [pytest.approx(tuple(c)) for c in expected]
    assert len(handle_colors) == min(11, max_concepts)


def test_the_limits_of_max_concepts_and_concept_names(tmp_path: Path) -> None:
    image = torch.rand(3, 4, 4)
    maps = {"l": torch.rand(3, 4, 4)}
    for max_concepts in (1, 20):
        plot_lap_layers(image, maps, tmp_path / f"{max_concepts}.png", max_concepts=max_concepts)
    for max_concepts in (0, 21):
        with pytest.raises(ValueError, match=r"max_concepts must be in \[1, 20\]"):
            plot_lap_layers(image, maps, tmp_path / "bad.png", max_concepts=max_concepts)
    with pytest.raises(TypeError, match="max_concepts must be an int"):
        plot_lap_layers(image, maps, tmp_path / "bad.png", max_concepts=True)
    plot_lap_layers(image, maps, tmp_path / "names.png", concept_names=["a", "b", "c"])
    for no_layers in ({}, [("l", maps["l"])]):
        with pytest.raises(ValueError, match="concept_maps must be a non-empty dict"):
            plot_lap_layers(image, no_layers, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="at least 3 names"):
        plot_lap_layers(image, maps, tmp_path / "bad.png", concept_names=["a", "b"])
    with pytest.raises(ValueError, match="at least 3 names"):
        plot_lap_layers(image, maps, tmp_path / "bad.png", concept_names="abc")
    # probabilities: a rounding error past 0 or 1 is accepted, more is not
    plot_lap_layers(image, {"l": torch.tensor([[[-5e-4, 1 + 5e-4]]])}, tmp_path / "edge.png")
    for value in (-2e-3, 1 + 2e-3, float("nan")):
        with pytest.raises(ValueError, match="probabilities"):
            plot_lap_layers(image, {"l": torch.full((1, 2, 2), value)}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_explanation_overlays_and_concept_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(1)
    image = torch.rand(3, 6, 6)
    signed = torch.randn(6, 6)
    negative = -torch.rand(1, 6, 6) - 0.1
    maps = {"gradcam": signed, "rise": negative}
    twelve = torch.rand(12, 6, 6)
    figures = capture_figures(monkeypatch)
    plot_explanation(
        image, maps, {"layer4": twelve}, "P: cat / T: dog", tmp_path / "e.png", names={"rise": "R"}
    )
    (figure,) = figures
    axes = np.asarray(figure.axes).reshape(2, 3)
    assert figure.get_suptitle() == "P: cat / T: dog"
    assert [ax.get_title() for ax in axes[0]] == ["input", "gradcam", "R"]
    for ax in axes[0]:
        torch.testing.assert_close(shown(ax.images[0]), image.permute(1, 2, 0).double())
    peak = float(signed.max())
    expected = torch.tensor([[max(float(v), 0.0) / peak for v in row] for row in signed])
    torch.testing.assert_close(shown(axes[0, 1].images[1]), expected.double())
    assert axes[0, 1].images[1].get_clim() == (0, 1)
    torch.testing.assert_close(shown(axes[0, 2].images[1]), torch.zeros(6, 6, dtype=torch.float64))
    # the concept row: the ten heads with the highest peaks, in head order, tab10 colors
    heads = sorted(torch.topk(twelve.amax(dim=(1, 2)), 10).indices.tolist())
    colors = [colormaps["tab10"](i)[:3] for i in range(10)]
    torch.testing.assert_close(
        shown(axes[1, 0].images[1]),
        concepts_reference(twelve[heads], colors),
        atol=1e-5,
        rtol=1e-5,
    )
    assert axes[1, 0].get_title() == "LAP layer4"
    assert [ax.axison for ax in axes.flatten()] == [True, True, True, True, False, False]


def test_explanation_without_lap_layers_is_one_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    image = torch.rand(1, 1, 8, 6)
    low = torch.rand(1, 4, 3) * 0.5  # a peak below 1 is still the top of the scale
    plot_explanation(image, {"lap": low}, None, "t", tmp_path / "e.png")
    (figure,) = figures
    assert len(figure.axes) == 2
    gray, overlay = figure.axes
    assert gray.images[0].get_cmap().name == "gray"
    assert tuple(shown(overlay.images[1]).shape) == (8, 6)  # resized to the image
    assert overlay.images[1].get_alpha() == 0.5  # the default blending weight
    assert float(shown(overlay.images[1]).max()) == pytest.approx(1.0)
    assert list(overlay.get_xticks()) == [] and list(overlay.get_yticks()) == []


def test_each_layers_maps_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = torch.rand(3, 4, 6)  # not square: the panels take the image's height and width
    target = tmp_path / "bad.png"
    for maps in (torch.rand(4, 6), torch.ones(1, 4, 6, dtype=torch.int64), [[[0.5]]]):
        with pytest.raises(ValueError, match=r"concept_maps\['l'\] must be a floating tensor"):
            plot_lap_layers(image, {"l": maps}, target)
    for value in (-1.2e-3, 1.0012, float("nan")):
        maps = torch.full((2, 2, 3), 0.5)
        maps[1, 1, 2] = value  # one value out of range
        with pytest.raises(ValueError, match=r"concept_maps\['l'\] must hold probabilities"):
            plot_lap_layers(image, {"l": maps}, target)
    assert not target.exists()
    figures = capture_figures(monkeypatch)
    bounds = torch.full((1, 2, 3), 0.5, dtype=torch.float64)
    bounds[0, 0, 0], bounds[0, 0, 1] = -1e-3, 1 + 1e-3  # exactly at the tolerance: accepted
    plot_lap_layers(image, {"l": bounds}, tmp_path / "ok.png")
    (figure,) = figures
    assert tuple(figure.axes[0].images[1].get_array().shape) == (4, 6, 4)
    assert figure.axes[0].get_title() == "l (2×3)"  # the layer's height × width
    # names for the layer with the most heads, not only for the smaller one
    with pytest.raises(ValueError, match="at least 3 names"):
        layers = {"small": torch.rand(2, 2, 2), "large": torch.rand(3, 2, 2)}
        plot_lap_layers(image, layers, target, concept_names=["a", "b"])
