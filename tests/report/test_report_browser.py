"""report.html rendered by headless Chromium at laptop (1400 px) and phone (390 px) widths.

The report's inline script writes what the browser rendered onto ``<body>`` (tables, images
decoded, horizontal overflow, tables shown as cards, clipped table boxes, cells outside the
viewport); ``--dump-dom`` returns the DOM after it ran. A table is clipped when its box's
content is wider than the box (``scrollWidth > clientWidth``; boxes marked ``data-scroller``
are deliberate scrollers and exempt) or when a cell lies outside the viewport: the tests fail
on either, at both widths, for the usual results and for a wide stress case (11 methods, 8
LAP layers, 5 noise levels, long run names). Screenshots check that something readable is
painted. Needs Debian's ``chromium`` package (``.ci/run``
installs it); skipped with a loud reason when it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from report_synthetic import configs, lap_results, metric, results_by_run

from torchlap.report import (
    all_tables,
    plot_iou_bars,
    plot_keep_k,
    plot_lap_layers,
    plot_overlays,
    write_report,
)
from torchlap.report.html import html_tables

SKIP_REASON = "chromium not found: install Debian's chromium package to run the report browser test"
SIZES = {"laptop": (1400, 900), "phone": (390, 844)}


def find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)


def run_chromium(args: list[str], page: Path, profile: Path) -> str:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # the CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
        page.resolve().as_uri(),
    ]
    env = dict(os.environ, HOME=str(profile))
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    if done.returncode != 0:
        pytest.fail(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


class BodyAndTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.table_ids: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = attributes
        elif tag == "table":
            self.table_ids.append(attributes.get("id", ""))
        elif tag == "img":
            self.images += 1


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("browser")
    results = results_by_run()
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 6:20, 8:26] = True
    figures = [
        plot_keep_k(results, folder / "keep_k.png"),
        plot_iou_bars(results, folder / "iou_bars.png"),
        plot_overlays(
            images,
            {"gradcam": torch.rand(2, 8, 8), "lap": masks.float() * 0.9},
            masks,
            ["label 1, prediction 1", "label 1, prediction 0"],
            folder / "overlays.png",
        ),
        plot_lap_layers(
            images[0],
            {"layer3.pool": torch.rand(2, 8, 8), "avgpool": torch.rand(2, 4, 4)},
            folder / "lap_layers.png",
        ),
    ]
    report = write_report(folder / "report", results, configs(), figures, title="Browser test")
    return {
        "report": report,
        "profile": folder / "profile",
        "n_figures": len(figures),
        "table_ids": [t.id for t in html_tables(all_tables(results))],
        "folder": folder,
    }


@pytest.mark.parametrize("device", sorted(SIZES))
def test_every_table_and_image_is_rendered(rendered: dict, device: str) -> None:
    width, height = SIZES[device]
    dom = run_chromium(
        [f"--window-size={width},{height}", "--dump-dom"], rendered["report"], rendered["profile"]
    )
    parser = BodyAndTags()
    parser.feed(dom)
    body = parser.body
    assert body.get("data-ready") == "1", f"the report's load script did not run: {body}"
    assert parser.table_ids == rendered["table_ids"]
    assert_nothing_clipped(body, device)
    if device == "laptop":  # every table fits as a table: none needs the card layout
        assert body["data-stacked"] == ""
    assert body["data-tables"] == str(len(rendered["table_ids"]))
    assert parser.images == rendered["n_figures"]
    assert body["data-images-total"] == str(rendered["n_figures"])
    assert body["data-images-loaded"] == str(rendered["n_figures"]), "an image did not decode"
    # the page itself never scrolls sideways: wide tables scroll inside their own box
    assert body["data-page-overflow"] == "0"


def test_overflow_detection_can_fail(rendered: dict) -> None:
    """Control for the check above: a page wider than the phone is reported as such."""
    text = rendered["report"].read_text(encoding="utf-8")
    wide = rendered["folder"] / "wide.html"
    wide.write_text(text.replace("<main>", '<main><div style="width:2000px">wide</div>', 1))
    dom = run_chromium(["--window-size=390,844", "--dump-dom"], wide, rendered["profile"])
    parser = BodyAndTags()
    parser.feed(dom)
    assert parser.body["data-page-overflow"] == "1"


@pytest.mark.parametrize("device", sorted(SIZES))
def test_screenshot_is_not_blank(rendered: dict, device: str) -> None:
    width, height = SIZES[device]
    shot = rendered["folder"] / f"screenshot-{device}.png"
    run_chromium(
        [f"--window-size={width},{height}", f"--screenshot={shot}"],
        rendered["report"],
        rendered["profile"],
    )
    with Image.open(shot) as image:
        assert image.size == (width, height)
        gray = np.asarray(image.convert("L")).astype(np.float64)
    background = np.median(gray)
    inked = (np.abs(gray - background) > 40).mean()
    assert gray.std() > 8.0 and inked > 0.01, f"{device} screenshot looks blank"


def test_lap_results_alone_render(rendered: dict) -> None:
    """A single results dict (``torchlap evaluate``) renders without figures."""
    report = write_report(rendered["folder"] / "single", lap_results())
    dom = run_chromium(["--window-size=390,844", "--dump-dom"], report, rendered["profile"])
    parser = BodyAndTags()
    parser.feed(dom)
    assert parser.body["data-tables"] == str(len(html_tables(all_tables(lap_results()))))
    assert parser.body["data-images-total"] == "0"
    assert parser.body["data-page-overflow"] == "0"
    assert_nothing_clipped(parser.body, "phone")


def assert_nothing_clipped(body: dict[str, str], device: str) -> None:
    assert body.get("data-ready") == "1", f"the report's load script did not run: {body}"
    assert body["data-clipped"] == "", f"{device}: clipped tables: {body['data-clipped']}"
    assert body["data-cells-outside"] == "0", f"{device}: cells outside the viewport"
    assert body["data-page-overflow"] == "0", f"{device}: the page scrolls sideways"


def wide_results() -> dict[str, dict]:
    """Every known method, 8 LAP layers, 5 noise levels, long run names and folders."""
    methods = [
        "deeplift", "guided_gradcam", "gradcam", "guided_backprop", "relevance_cam", "scorecam",
        "rise", "sise", "lap", "bla", "antehoc", "a_method_with_a_long_name",
    ]  # fmt: skip
    runs = {}
    for r, name in enumerate(("resnet50-lap-ws-2024-05-01-lr0.001", "resnet50-vanilla-baseline")):
        base = lap_results()
        base["run"]["run_dir"] = "/home/someone/experiments/" + "very-long-folder-name/" * 4
        base["lap_predictors"] = {
            f"layer{i}.pool": {"rule": "binary", "predictivity": metric(0.5 + i / 20)}
            for i in range(8)
        }
        keys = ("iou_threshold", "iou_topk", "ebpg", "miou_top20", "bbox", "pointing_game")
        base["localization"] = {
            m: {k: metric(0.1 + 0.01 * i + 0.001 * r) for k in keys} | {"threshold": 0.4}
            for i, m in enumerate(methods)
        }
        base["faithfulness"] = {m: base["faithfulness"]["lap"] for m in methods}
        base["stability"] = {
            m: {
                str(f): {"change_drop": metric(1.0 + i, False), "change_inc": metric(2.0, False)}
                for f in (0.1, 0.2, 0.3, 0.4, 0.5)
            }
            for i, m in enumerate(methods)
        }
        base["timing"] = {
            m: {"seconds": 1.0 + i, "images_per_second": 9.0} for i, m in enumerate(methods)
        }
        runs[name] = base
    return runs


@pytest.mark.parametrize("device", sorted(SIZES))
def test_wide_results_are_never_clipped(rendered: dict, device: str) -> None:
    results = wide_results()
    report = write_report(rendered["folder"] / f"wide-{device}", results)
    width, height = SIZES[device]
    dom = run_chromium(
        [f"--window-size={width},{height}", "--dump-dom"], report, rendered["profile"]
    )
    parser = BodyAndTags()
    parser.feed(dom)
    assert parser.table_ids == [t.id for t in html_tables(all_tables(results))]
    assert_nothing_clipped(parser.body, device)
    stacked = parser.body["data-stacked"].split()
    if device == "phone":  # the wide tables became cards, the narrow ones stayed tables
        assert "table-localization-thresholding" in stacked
        assert "table-timing" not in stacked


def test_clipping_detection_can_fail(rendered: dict) -> None:
    """Controls for the checks above, at the laptop width: a cell too wide even for the card
    layout is reported as a clipped box; a box wider than the page, as cells outside the
    viewport."""
    text = rendered["report"].read_text(encoding="utf-8")
    page = rendered["folder"] / "clipped.html"
    cell = '<td data-label="x"><div style="min-width:2400px">unbreakable</div></td>'
    assert "<tbody>\n<tr>" in text
    page.write_text(text.replace("<tbody>\n<tr>", "<tbody>\n<tr>" + cell, 1))
    dom = run_chromium(["--window-size=1400,900", "--dump-dom"], page, rendered["profile"])
    parser = BodyAndTags()
    parser.feed(dom)
    assert parser.body["data-clipped"] == rendered["table_ids"][0]
    # a table box wider than the page: nothing scrolls inside it, but its cells leave the
    # viewport
    page = rendered["folder"] / "outside.html"
    wrap = '<div class="table-wrap">'
    assert wrap in text
    page.write_text(
        text.replace(wrap, '<div class="table-wrap" style="width:3000px; max-width:none">', 1)
    )
    dom = run_chromium(["--window-size=1400,900", "--dump-dom"], page, rendered["profile"])
    parser = BodyAndTags()
    parser.feed(dom)
    assert parser.body["data-clipped"] == ""
    assert int(parser.body["data-cells-outside"]) >= 1
