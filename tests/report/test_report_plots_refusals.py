"""The overlay grid's input checks at their boundaries (values a rounding error outside [0, 1],
index 0, a title string of the right length...) and the overlay rows' order; every refusal
writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from report_figures import capture_figures

from torchlap.report import plot_overlays
from torchlap.report.plots import example_rows


def test_example_rows_put_other_kinds_last_and_accept_index_0() -> None:
    assert example_rows({"random": 4, "worst": 3, "best": 0}) == [
        (0, "best"),
        (3, "worst"),
        (4, "random"),
    ]
    for index in (True, 1.0, "1"):
        with pytest.raises(ValueError, match=r"examples\['best'\] must be an image index >= 0"):
            example_rows({"best": index})


def _inputs(n: int = 2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return torch.full((n, 3, 4, 4), 0.5), {"m": torch.rand(n, 4, 4)}


def test_images_a_rounding_error_outside_0_1_are_clipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch)
    images, maps = _inputs()
    images[0, :, 0, 0] = -9e-4
    images[1, :, 0, 0] = 1 + 9e-4
    plot_overlays(images, maps, None, None, tmp_path / "o.png")
    (figure,) = figures
    first, second = (np.asarray(ax.images[0].get_array()) for ax in figure.axes[::2])
    assert first[0, 0].tolist() == [0.0, 0.0, 0.0]
    assert second[0, 0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        pytest.param(torch.full((1, 3, 4, 4), -2e-3), ValueError, r"must be in \[0, 1\]", id="low"),
        pytest.param(
            torch.full((1, 3, 4, 4), 1.002), ValueError, r"must be in \[0, 1\]", id="high"
        ),
        pytest.param(torch.full((1, 3, 4, 4), torch.inf), ValueError, "nan or inf", id="inf"),
        pytest.param(torch.zeros(1, 3, 0, 4), ValueError, "at least one pixel", id="empty"),
        pytest.param(torch.zeros(3, 4, 4), ValueError, r"\(N, C, H, W\)", id="3d"),
        pytest.param(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), ValueError, "floating", id="int"),
        pytest.param(torch.zeros(1, 4, 4, 4), ValueError, "C = 1 or 3", id="rgba"),
        pytest.param(np.zeros((1, 3, 4, 4)), TypeError, "torch.Tensor", id="numpy"),
    ],
)
def test_images_outside_the_accepted_ones_are_named(
    tmp_path: Path, images: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        plot_overlays(images, {"m": torch.rand(1, 4, 4)}, None, None, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("maps", "error", "match"),
    [
        pytest.param(torch.rand(2, 4), ValueError, r"\(N, H, W\) with N = 2", id="2d"),
        pytest.param(torch.rand(2, 1, 4, 4), ValueError, r"\(N, H, W\) with N = 2", id="4d"),
        pytest.param(torch.ones(2, 4, 4, dtype=torch.int64), ValueError, "floating", id="int"),
        pytest.param(torch.full((2, 4, 4), torch.nan), ValueError, "nan or inf", id="nan"),
        pytest.param(np.ones((2, 4, 4)), TypeError, "torch.Tensor", id="numpy"),
        pytest.param([torch.rand(4, 4)] * 2, TypeError, "torch.Tensor", id="list"),
    ],
)
def test_maps_outside_the_accepted_ones_are_named(
    tmp_path: Path, maps: object, error: type, match: str
) -> None:
    images, _ = _inputs()
    with pytest.raises(error, match=rf"maps_by_method\['m'\] .*{match}"):
        plot_overlays(images, {"m": maps}, None, None, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_masks_titles_colormap_and_alpha_are_checked(tmp_path: Path) -> None:
    images, maps = _inputs()
    target = tmp_path / "o.png"
    bad = [
        (TypeError, "masks must be a bool tensor", {"masks": np.ones((2, 4, 4), dtype=bool)}),
        (ValueError, r"masks must have shape \(N, H, W\) = \(2, 4, 4\), got \(2, 4, 5\)",
         {"masks": torch.ones(2, 4, 5, dtype=torch.bool)}),
        (ValueError, "titles must be a list of 2 strings", {"titles": "ab"}),  # a str of 2 chars
        (ValueError, "titles must be a list of 2 strings", {"titles": ["a", "b", "c"]}),
        (ValueError, "unknown colormap 'no_such_map'", {"cmap": "no_such_map"}),
        (ValueError, "alpha", {"alpha": 0.0}),
        (ValueError, "non-empty dict", {"maps_by_method": [("m", maps["m"])]}),
    ]  # fmt: skip
    for error, match, change in bad:
        arguments = {"masks": None, "titles": None, "maps_by_method": maps} | change
        options = {key: arguments.pop(key) for key in ("cmap", "alpha") if key in arguments}
        with pytest.raises(error, match=match):
            plot_overlays(
                images,
                arguments["maps_by_method"],
                arguments["masks"],
                arguments["titles"],
                target,
                **options,
            )
    assert not target.exists()
    plot_overlays(images, maps, None, ("a", "b"), target, alpha=1.0)  # a tuple, alpha 1: fine
    assert target.is_file()


def test_the_image_figures_do_not_replace_a_users_file_by_default(tmp_path: Path) -> None:
    from PIL import Image

    from torchlap.report import plot_lap_layers
    from torchlap.report.plots import plot_explanation

    images, maps = _inputs(1)
    mine = tmp_path / "mine.png"
    Image.new("RGB", (4, 4)).save(mine)
    before = mine.read_bytes()
    calls = [
        lambda: plot_overlays(images, maps, None, None, mine),
        lambda: plot_lap_layers(images[0], {"l": torch.rand(2, 4, 4)}, mine),
        lambda: plot_explanation(images[0], maps, None, "t", mine),
    ]
    for call in calls:
        with pytest.raises(FileExistsError, match=r"mine\.png exists and is not a figure"):
            call()
        assert mine.read_bytes() == before


def test_the_range_check_looks_at_every_pixel_and_its_exact_bounds(tmp_path: Path) -> None:
    maps = {"m": torch.rand(1, 4, 4)}
    target = tmp_path / "o.png"
    for value, match in ((-1.2e-3, r"\[0, 1\]"), (1.0012, r"\[0, 1\]"), (torch.nan, "nan")):
        images = torch.full((1, 3, 4, 4), 0.5)
        images[0, 1, 2, 3] = value  # one pixel out of range
        with pytest.raises(ValueError, match=match):
            plot_overlays(images, maps, None, None, target)
    assert not target.exists()
    # the bounds themselves are accepted (float64: exactly -1e-3 and 1 + 1e-3)
    images = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = -1e-3, 1 + 1e-3
    assert plot_overlays(images, maps, None, None, target) == target
