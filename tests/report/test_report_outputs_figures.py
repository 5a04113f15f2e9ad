"""Which figures ``write_run_outputs`` draws, from what: keep-k% only with faithfulness
results, the IoU bars only with localization results, LAP's per-layer maps of the first image
with a region (none without one), and the report's title naming the runs."""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from PIL import Image
from report_synthetic import lap_results
from torch import nn

import torchlap.evaluate.outputs
from torchlap.evaluate.outputs import write_run_outputs
from torchlap.layers import LocalAttentionPool2d, attention_maps


def _figures(out: Path) -> set[str]:
    return {path.name for path in (out / "figures").glob("*.png")}


def test_each_figure_needs_its_results_and_a_new_nested_folder_is_made(tmp_path: Path) -> None:
    full = lap_results()
    assert full.get("faithfulness") and full.get("localization")
    steps = ["net.fc", "net.conv1"]
    full["sanity"] = {
        "gradcam": {
            "threshold": 0.5,
            "cascading": {"steps": steps, "spearman_abs": [0.4, 0.1], "ssim": [0.3, 0.2]},
            "summary": {"spearman_abs": 0.1, "ssim": 0.2},
            "passed": True,
        }
    }
    out = tmp_path / "new" / "nested"  # neither folder exists yet
    write_run_outputs(out, {"WS-LAP": full}, {"WS-LAP": {}}, None, {})
    assert {"keep_k.png", "iou_bars.png", "sanity_curves.png"} <= _figures(out)
    # the folder passed guard_output_folder (or the user asked --force): figures of these
    # names are replaced, also ones torchlap did not write
    for name in ("keep_k.png", "iou_bars.png", "sanity_curves.png"):
        Image.new("RGB", (4, 4)).save(out / "figures" / name)
    write_run_outputs(out, {"WS-LAP": full}, {"WS-LAP": {}}, None, {})
    for name in ("keep_k.png", "iou_bars.png", "sanity_curves.png"):
        assert Image.open(out / "figures" / name).size != (4, 4)
    assert {"keep_k.png", "iou_bars.png", "sanity_curves.png"} <= _figures(out)
    for missing, figure, kept in [
        ("faithfulness", "keep_k.png", "iou_bars.png"),
        ("localization", "iou_bars.png", "keep_k.png"),
    ]:
        results = lap_results()
        results.pop(missing)
        folder = tmp_path / missing
        write_run_outputs(folder, {"WS-LAP": results}, {"WS-LAP": {}}, None, {})
        assert figure not in _figures(folder) and kept in _figures(folder)


@pytest.mark.parametrize("names", [["WS-LAP"], ["WS-LAP", "vanilla"]])
def test_the_report_title_names_the_run_or_lists_the_runs(tmp_path: Path, names: list) -> None:
    runs = {name: lap_results() for name in names}
    report = write_run_outputs(tmp_path, runs, {name: {} for name in names}, None, {})
    text = html.unescape(report.read_text(encoding="utf-8"))
    assert f"<title>torchlap evaluation: {', '.join(names)}</title>" in text


def _lap_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        LocalAttentionPool2d(4, kernel_size=2, n_concepts=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()


@pytest.mark.parametrize(
    ("has_region", "chosen"),
    [([False, True, True], 1), ([True, True, False], 0), ([False] * 3, None)],
)
def test_lap_layer_maps_show_the_first_image_with_a_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_region: list, chosen: int | None
) -> None:
    drawn: list[dict[str, Any]] = []

    def capture(image, maps, path, title="", overwrite=False):
        assert overwrite is True  # the output folder passed guard_output_folder
        drawn.append({"image": image, "maps": maps, "title": title})
        Image.new("RGB", (8, 8)).save(path)  # a stand-in the report can embed
        return Path(path)

    monkeypatch.setattr(torchlap.evaluate.outputs, "plot_lap_layers", capture)
    images = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(3)])
    data = SimpleNamespace(
        images=images,
        labels=torch.tensor([0, 1, 0]),
        masks=torch.ones(3, 8, 8, dtype=torch.bool),
        classes=["benign", "malignant"],
        has_region=torch.tensor(has_region),
    )
    model = _lap_model()
    write_run_outputs(tmp_path, {"WS-LAP": lap_results()}, {"WS-LAP": {}}, data, {}, model)
    if chosen is None:
        assert drawn == []
        return
    ((figure),) = drawn
    assert torch.equal(figure["image"], images[chosen])
    assert figure["title"].endswith(f"({data.classes[int(data.labels[chosen])]})")
    (maps,) = figure["maps"].values()
    assert maps.shape == (2, 8, 8)  # two concept heads over the layer's input
    assert attention_maps(model) == {}  # the maps of that forward are not kept on the model
