"""Figures: files written atomically, non-blank, no figure left open, inputs checked."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from report_synthetic import lap_results, results_by_run

from torchlap.report import plot_iou_bars, plot_keep_k, plot_lap_layers, plot_overlays


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(np.float64)


def assert_non_blank(path: Path) -> None:
    assert path.is_file()
    assert pixels(path).std() > 10.0, f"{path.name} looks blank"


def only_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(autouse=True)
def _no_open_figures() -> None:
    yield
    assert plt.get_fignums() == [], "a figure was left open"


def lime_pixels(rgb: np.ndarray) -> int:
    """Pixels of the contour color (matplotlib 'lime' = (0, 255, 0))."""
    return int(((rgb[..., 1] > 200) & (rgb[..., 0] < 90) & (rgb[..., 2] < 90)).sum())


def test_keep_k_curves(tmp_path: Path) -> None:
    target = tmp_path / "figs" / "keep_k.png"
    assert plot_keep_k(results_by_run(), target) == target
    assert_non_blank(target)
    assert only_file(target.parent) == ["keep_k.png"]
    single = plot_keep_k(lap_results(), tmp_path / "single.png", reference="label")
    assert_non_blank(single)


def test_keep_k_without_data_fails_before_writing(tmp_path: Path) -> None:
    results = lap_results()
    del results["faithfulness"]
    with pytest.raises(ValueError, match="keep_top_k"):
        plot_keep_k(results, tmp_path / "keep_k.png")
    with pytest.raises(ValueError, match=r"\.png"):
        plot_keep_k(results_by_run(), tmp_path / "keep_k.svg")
    with pytest.raises(ValueError, match="reference"):
        plot_keep_k(results_by_run(), tmp_path / "keep_k.png", reference="truth")
    assert only_file(tmp_path) == []


def test_iou_bars(tmp_path: Path) -> None:
    target = plot_iou_bars(results_by_run(), tmp_path / "iou_bars.png")
    assert_non_blank(target)
    with pytest.raises(ValueError, match="localization"):
        plot_iou_bars({"r": {"model": {}}}, tmp_path / "empty.png")
    assert only_file(tmp_path) == ["iou_bars.png"]


def _overlay_inputs(n: int = 2, channels: int = 3, size: int = 32):
    images = torch.full((n, channels, size, size), 0.5)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 8:20, 10:24] = True
    maps = {
        "gradcam": torch.zeros(n, size // 4, size // 4),  # layer resolution: resized
        "lap": masks.float() * 0.8,
    }
    return images, maps, masks


def test_overlays_draw_region_contours(tmp_path: Path) -> None:
    images, maps, masks = _overlay_inputs()
    with_region = plot_overlays(
        images, maps, masks, ["GT 1 / P 1", "GT 0 / P 1"], tmp_path / "with.png"
    )
    without = plot_overlays(images, maps, None, None, tmp_path / "without.png", cmap="inferno")
    assert_non_blank(with_region)
    assert_non_blank(without)
    # the green contour is drawn only when a region is given (gray images, maps far from green)
    assert lime_pixels(pixels(with_region)) > 50
    assert lime_pixels(pixels(without)) == 0
    # gray-scale inputs work too
    gray = plot_overlays(images[:, :1], maps, masks, None, tmp_path / "gray.png")
    assert_non_blank(gray)


def test_overlays_show_where_the_map_is_high(tmp_path: Path) -> None:
    images, _, _ = _overlay_inputs(n=1)
    high = torch.zeros(1, 32, 32)
    high[:, :, 16:] = 1.0  # right half
    target = plot_overlays(images, {"m": high}, None, None, tmp_path / "m.png", cmap="jet")
    rgb = pixels(target)
    # the map panel is the right half of the figure; jet is (dark) red at 1 and blue at 0,
    # blended at alpha 0.5 over gray: about (127, 64, 64) and (64, 64, 127)
    panel = rgb[:, rgb.shape[1] // 2 :]
    red = panel[..., 0] > panel[..., 2] + 40
    blue = panel[..., 2] > panel[..., 0] + 40
    red_columns = np.nonzero(red.any(axis=0))[0]
    blue_columns = np.nonzero(blue.any(axis=0))[0]
    assert red_columns.size and blue_columns.size
    assert np.median(red_columns) > np.median(blue_columns)


def test_overlays_check_inputs(tmp_path: Path) -> None:
    images, maps, masks = _overlay_inputs()
    target = tmp_path / "o.png"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_overlays(images * 3, maps, masks, None, target)
    with pytest.raises(ValueError, match="N = 2"):
        plot_overlays(images, {"lap": maps["lap"][:1]}, masks, None, target)
    with pytest.raises(TypeError, match="bool"):
        plot_overlays(images, maps, masks.float(), None, target)
    with pytest.raises(ValueError, match="titles"):
        plot_overlays(images, maps, masks, ["only one"], target)
    with pytest.raises(ValueError, match="non-empty"):
        plot_overlays(images, {}, masks, None, target)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plot_overlays(torch.rand(2, 2, 32, 32), maps, masks, None, target)
    assert only_file(tmp_path) == []


def test_lap_layers_one_color_per_head(tmp_path: Path) -> None:
    image = torch.full((3, 32, 32), 0.5)
    head_0 = torch.zeros(2, 8, 8)
    head_0[0, :, :4] = 1.0  # concept 0 on the left half, concept 1 on the right half
    head_0[1, :, 4:] = 1.0
    concept_maps = {"layer3.pool": head_0, "avgpool": torch.rand(2, 4, 4)}
    target = plot_lap_layers(
        image, concept_maps, tmp_path / "lap.png", concept_names=["smile", "no smile"]
    )
    rgb = pixels(target)
    assert_non_blank(target)
    # tab10 blue (31, 119, 180) and orange (255, 127, 14) both appear
    blue = (np.abs(rgb - [31, 119, 180]).max(axis=-1) < 40).sum()
    orange = (np.abs(rgb - [255, 127, 14]).max(axis=-1) < 40).sum()
    assert blue > 200 and orange > 200


def test_lap_layers_many_heads_and_bad_input(tmp_path: Path) -> None:
    image = torch.rand(1, 1, 24, 24)
    many = {"layer4.pool": torch.rand(30, 6, 6)}
    assert_non_blank(plot_lap_layers(image, many, tmp_path / "many.png", max_concepts=5))
    with pytest.raises(ValueError, match="probabilities"):
        plot_lap_layers(image, {"l": torch.randn(2, 6, 6) * 5}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="max_concepts"):
        plot_lap_layers(image, many, tmp_path / "bad.png", max_concepts=25)
    with pytest.raises(ValueError, match="concept_names"):
        plot_lap_layers(image, many, tmp_path / "bad.png", concept_names=["a"])
    assert only_file(tmp_path) == ["many.png"]


def test_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def broken_savefig(self: Figure, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    target = tmp_path / "keep_k.png"
    target.write_bytes(b"old")
    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_keep_k(results_by_run(), target, overwrite=True)  # (not torchlap's figure)
    assert target.read_bytes() == b"old"
    assert only_file(tmp_path) == ["keep_k.png"]


@pytest.mark.parametrize("name", ["$x^$", "a$\\q$"])
def test_dollar_signs_in_names_are_drawn_literally(tmp_path: Path, name: str) -> None:
    """A class, run or method name with ``$`` is text, not mathtext (it failed to parse)."""
    from torchlap.report.plots import plot_explanation

    images, maps, masks = _overlay_inputs()
    assert_non_blank(plot_overlays(images, maps, masks, [name, name], tmp_path / "o.png"))
    runs = results_by_run()
    assert_non_blank(plot_iou_bars({name: next(iter(runs.values()))}, tmp_path / "iou.png"))
    assert_non_blank(plot_keep_k({name: next(iter(runs.values()))}, tmp_path / "keep.png"))
    concepts = {"layer4": torch.rand(2, 6, 6)}
    assert_non_blank(
        plot_lap_layers(
            images[:1], concepts, tmp_path / "lap.png", concept_names=[name, "b"], title=name
        )
    )
    one = {method: value[:1] for method, value in maps.items()}
    assert_non_blank(
        plot_explanation(images[0], one, concepts, name, tmp_path / "e.png", names={"lap": name})
    )
