"""Overlay grid (paper 000, Fig. 2): the arrays handed to matplotlib, read back from the Axes
and compared with references written from the docstring's definitions (bilinear resizing with
half-pixel centers; each map divided by its maximum, negatives shown as 0)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from report_figures import capture_figures

from torchlap.report import plot_overlays


def bilinear_reference(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(h, w) -> (height, width): each output pixel center mapped back to input coordinates
    (half-pixel centers, ``x_in = (x_out + 0.5) * w / width - 0.5``, clamped at 0), then the
    four neighbours weighted by distance (edges repeated)."""
    h, w = grid.shape
    out = torch.zeros(height, width, dtype=torch.float64)

    def source(index: int, size_in: int, size_out: int) -> tuple[int, int, float]:
        position = max((index + 0.5) * size_in / size_out - 0.5, 0.0)
        low = min(math.floor(position), size_in - 1)
        return low, min(low + 1, size_in - 1), position - low

    for y in range(height):
        y0, y1, fy = source(y, h, height)
        for x in range(width):
            x0, x1, fx = source(x, w, width)
            top = (1 - fx) * float(grid[y0, x0]) + fx * float(grid[y0, x1])
            bottom = (1 - fx) * float(grid[y1, x0]) + fx * float(grid[y1, x1])
            out[y, x] = (1 - fy) * top + fy * bottom
    return out


def divided_by_peak_reference(grid: torch.Tensor) -> torch.Tensor:
    """The map divided by its largest value, negatives as 0; a map with no positive value: 0."""
    peak = max(float(v) for v in grid.flatten())
    out = torch.zeros(grid.shape, dtype=torch.float64)
    if peak > 0:
        for index in np.ndindex(*grid.shape):
            out[index] = max(float(grid[index]), 0.0) / peak
    return out


def shown(image: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(image.get_array()), dtype=torch.float64)


def test_each_overlay_is_its_map_divided_by_its_peak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    torch.manual_seed(0)
    images = torch.rand(3, 3, 8, 8)
    signed = torch.randn(3, 8, 8)
    signed[1] = -signed[1].abs() - 0.1  # no positive value: nothing to show
    signed[2] = torch.rand(8, 8) * 1e-13  # a tiny peak is still the top of the scale
    low_res = torch.rand(3, 3, 4) * 5  # layer resolution: resized to 8x8 first
    maps = {"signed": signed, "low": low_res}
    plot_overlays(images, maps, None, None, tmp_path / "o.png", cmap="viridis", alpha=0.3)
    (figure,) = figures
    axes = np.asarray(figure.axes).reshape(3, 3)
    for row in range(3):
        expected_image = images[row].permute(1, 2, 0).double()
        for column in range(3):
            torch.testing.assert_close(shown(axes[row, column].images[0]), expected_image)
        overlays = [axes[row, column].images[1] for column in (1, 2)]
        expected = [
            divided_by_peak_reference(signed[row]),
            divided_by_peak_reference(bilinear_reference(low_res[row], 8, 8)),
        ]
        for overlay, reference in zip(overlays, expected, strict=True):
            torch.testing.assert_close(shown(overlay), reference, atol=1e-5, rtol=1e-5)
            assert overlay.get_cmap().name == "viridis"
            assert overlay.get_alpha() == 0.3
            assert overlay.get_clim() == (0, 1)  # 1 = the map's peak, same scale in every panel
        assert len(axes[row, 0].images) == 1  # the input column has no overlay
    assert float(shown(axes[2, 1].images[1]).max()) == pytest.approx(1.0)
    assert [ax.get_title() for ax in axes[0]] == ["Input", "signed", "low"]


def test_gray_inputs_masks_titles_and_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    images = torch.linspace(0, 1, 3 * 6 * 6).reshape(3, 1, 6, 6)
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True  # a region: its contour is drawn
    masks[1] = True  # the whole image: no contour (a constant mask has none)
    maps = {"gradcam": torch.rand(3, 6, 6), "lap": torch.rand(3, 6, 6)}
    titles = ["one", "two", "three"]
    plot_overlays(images, maps, masks, titles, tmp_path / "o.png", names={"lap": "LAP"})
    (figure,) = figures
    axes = np.asarray(figure.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["Input", "gradcam", "LAP"]
    assert [axes[row, 0].get_ylabel() for row in range(3)] == titles
    for row in range(3):
        for column in range(3):
            ax = axes[row, column]
            gray = ax.images[0]
            torch.testing.assert_close(shown(gray), images[row, 0].double())
            assert gray.get_cmap().name == "gray" and gray.get_clim() == (0, 1)
            contours = [c for c in ax.collections if hasattr(c, "levels")]
            assert len(contours) == (1 if row == 0 else 0)
            if contours:
                assert list(contours[0].levels) == [0.5]
            assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
            if column:
                assert ax.images[1].get_alpha() == 0.5  # the default blending weight


def test_a_map_whose_peak_is_0_shows_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    zero_peak = -torch.rand(1, 5, 5)
    zero_peak[0, 2, 3] = 0.0
    plot_overlays(torch.rand(1, 3, 5, 5), {"m": zero_peak}, None, None, tmp_path / "o.png")
    (figure,) = figures
    torch.testing.assert_close(
        shown(figure.axes[1].images[1]), torch.zeros(5, 5, dtype=torch.float64)
    )
