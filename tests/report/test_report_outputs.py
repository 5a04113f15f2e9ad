"""What an evaluation gives the report: flat-map counts, and overlay rows in the caption's
order (best, median, worst)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from report_synthetic import lap_results

import torchlap.evaluate.outputs
from torchlap.evaluate.core import flat_map_counts
from torchlap.evaluate.outputs import write_run_outputs
from torchlap.report.plots import example_rows


def reference_flat_count(maps: torch.Tensor, tolerance: float) -> int:
    """Slow reference: a map is flat when every pixel is within tolerance * max(1, max |map|)
    of every other, checked pixel by pixel against the first one in both directions."""
    count = 0
    for single in maps:
        values = [float(v) for v in single.flatten()]
        scale = max(1.0, max(abs(v) for v in values))
        low = high = values[0]
        for v in values:
            low, high = min(low, v), max(high, v)
        count += int(high - low <= tolerance * scale)
    return count


def test_flat_map_counts_match_a_pixel_loop() -> None:
    torch.manual_seed(0)
    maps = torch.rand(7, 5, 6)
    maps[0] = 0.0  # an untrained model's Grad-CAM: all zero
    maps[1] = 0.3 + 1e-7 * torch.rand(5, 6)  # constant within 1e-6
    maps[2] = 0.3 + 5e-6 * torch.rand(5, 6)  # not
    maps[3] = 4e3 + 1e-3 * torch.rand(5, 6)  # large scale: 1e-3 <= 1e-6 * 4e3 -> flat
    maps[4] = 4e3 * torch.rand(5, 6)
    counts = flat_map_counts(maps)
    assert counts == {"n": 7, "n_flat": reference_flat_count(maps, 1e-6), "tolerance": 1e-6}
    assert counts["n_flat"] == 3
    assert flat_map_counts(maps, tolerance=1e-5)["n_flat"] == reference_flat_count(maps, 1e-5)


def test_example_rows_follow_the_caption_order() -> None:
    assert example_rows({"worst": 3, "median": 7, "best": 1}) == [
        (1, "best"),
        (7, "median"),
        (3, "worst"),
    ]
    # one image that is best and median at once is one row, titled with both
    assert example_rows({"best": 1, "median": 1, "worst": 3}) == [
        (1, "best = median"),
        (3, "worst"),
    ]
    assert example_rows({}) == []
    with pytest.raises(ValueError, match="image index"):
        example_rows({"best": -1})
    with pytest.raises(TypeError, match="kind -> image index"):
        example_rows([1, 2])


def test_overlay_rows_are_best_median_worst(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def capture(
        images, maps_by_method, masks, titles, path, names=None, absolute=(), overwrite=False
    ):
        assert overwrite is True  # the output folder passed guard_output_folder
        calls.append((images, maps_by_method, masks, titles))
        assert names == {"lap": "LAP"}  # display names from the registry
        Path(path).write_bytes(Path(figure_png(tmp_path)).read_bytes())
        return Path(path)

    monkeypatch.setattr(torchlap.evaluate.outputs, "plot_overlays", capture)
    n = 6
    data = SimpleNamespace(
        images=torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4) / 10,
        labels=torch.tensor([0, 1, 0, 1, 0, 1]),
        masks=torch.arange(n).view(n, 1, 1).expand(n, 4, 4) % 2 == 0,
        classes=["benign", "malignant"],
    )
    results = lap_results()
    results["examples"] = {"lap": {"best": 5, "median": 2, "worst": 4}}
    indices = torch.tensor([2, 4, 5])  # as evaluate_run passes them: sorted image order
    maps = torch.stack([torch.full((4, 4), float(i)) for i in indices.tolist()])
    write_run_outputs(tmp_path, {"WS-LAP": results}, {"WS-LAP": {}}, data, {"lap": (indices, maps)})
    ((images, maps_by_method, masks, titles),) = calls
    assert titles == ["best · malignant", "median · benign", "worst · benign"]
    assert images[:, 0, 0, 0].tolist() == pytest.approx([0.5, 0.2, 0.4])
    assert maps_by_method["lap"][:, 0, 0].tolist() == [5.0, 2.0, 4.0]  # maps follow the rows
    assert masks[:, 0, 0].tolist() == [False, True, True]


def figure_png(folder: Path) -> Path:
    from PIL import Image

    path = folder / "stand-in.png"
    if not path.exists():
        Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path
