"""Report parts of the sanity checks and grid pointing game: figures, section, browser."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from report_synthetic import configs, results_by_run

import torchlap.report.sanity as sanity_module
from torchlap.report import write_report
from torchlap.report.sanity import (
    checks_markdown,
    checks_section,
    plot_grid_examples,
    plot_grid_pg_distribution,
    plot_sanity_curves,
    sanity_figures,
)
from torchlap.report.tables import tables_markdown

STEPS = ["net.fc", "net.avgpool", "net.layer4.1", "net.layer1.0", "net.conv1"]


def _sanity(values: list[float], passed: bool) -> dict:
    return {
        "threshold": 0.5,
        "units_forward_order": STEPS[::-1],
        "cascading": {"steps": STEPS, "spearman_abs": values, "ssim": [v / 2 for v in values]},
        "independent": {"steps": STEPS, "spearman_abs": values[::-1], "ssim": values},
        "summary": {"spearman_abs": values[-1], "ssim": values[-1] / 2},
        "passed": passed,
    }


def _game(scores: list[float]) -> dict:
    t = torch.tensor(scores, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    return {
        "mean": float(t.mean()), "n": len(scores), "chance": 0.25, "scores": scores,
        "distribution": {"std": float(t.std()), "min": min(scores), "q25": q[0],
                         "median": q[1], "q75": q[2], "max": max(scores)},
    }  # fmt: skip


def with_checks() -> dict:
    runs = copy.deepcopy(results_by_run())
    for run in runs.values():
        run["sanity"] = {
            "gradcam": _sanity([0.6, 0.3, 0.2, 0.1, 0.05], True),
            "guided_backprop": _sanity([0.95, 0.9, 0.85, 0.8, 0.78], False),
        }
        run["grid_pointing_game"] = {
            "gradcam": _game([0.9, 0.8, 0.7, 0.95]),
            "guided_backprop": _game([0.3, 0.2, 0.25, 0.3]),
        }
        run["grid_pointing_setup"] = {"shape": [2, 2], "n_grids": 1, "min_confidence": 0.9,
                                      "seed": 0}  # fmt: skip
    return runs


def test_section_lists_every_method_with_its_verdict():
    runs = with_checks()
    section = checks_section(runs)
    assert section is not None and section.id == "sanity-checks"
    assert section.html.count("FAIL (&lt; 0.5)") == len(runs)  # GBP fails in every run
    assert section.html.count("pass (&lt; 0.5)") == len(runs)
    assert "0.780" in section.html and "0.050" in section.html
    assert checks_section(results_by_run()) is None  # no checks: no section
    markdown = checks_markdown(runs)
    assert "| GBP | 0.780 |" in markdown and "| GC | 0.050 |" in markdown


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("grid_pointing_setup", {"shape": "2x2", "n_grids": 1}, r"\['shape'\] must be a list"),
        ("grid_pointing_setup", {"shape": [2, 2], "n_grids": "8"}, r"\['n_grids'\] must be a"),
        ("grid_pointing_setup", {"skipped": 3}, r"\['skipped'\] must be a text"),
        ("data_randomization", [], r"\['data_randomization'\] must be a dict"),
        ("data_randomization", {"methods": {"gradcam": {"spearman_abs": [0.2]}}},
         r"\['methods'\]\['gradcam'\]\['spearman_abs'\] must be a dict"),
        ("data_randomization", {"methods": {"gradcam": {"ssim": {"mean": "x"}}}},
         r"\['ssim'\]\['mean'\] must be a number"),
        ("data_randomization", {"methods": {"gradcam": {"passed": "yes"}}},
         r"\['passed'\] must be true, false or None"),
    ],
)  # fmt: skip
def test_malformed_checks_sections_are_named_before_the_report_is_built(
    tmp_path: Path, section: str, value: object, message: str
):
    # these two sections were read unchecked: a list where the Spearman summary belongs
    # failed inside the HTML builder with an AttributeError naming no key
    runs = with_checks()
    next(iter(runs.values()))[section] = value
    with pytest.raises(TypeError, match=message):
        write_report(tmp_path, runs, configs=configs())
    assert not (tmp_path / "report.html").exists()


def test_markdown_tables_have_as_many_header_cells_as_columns():
    # a header naming "|map|" must escape its pipes, or Markdown renderers see no table
    lines = checks_markdown(with_checks()).splitlines()
    separators = [i for i, line in enumerate(lines) if line.startswith("|---")]
    assert separators
    for i in separators:
        header_cells = re.split(r"(?<!\\)\|", lines[i - 1].strip().strip("|"))
        assert len(header_cells) == lines[i].count("---"), lines[i - 1]
        assert "\\|map\\|" in lines[i - 1]


def test_tables_md_holds_the_checks_only_when_they_ran():
    with_them = tables_markdown(with_checks())
    assert "## Sanity checks and grid pointing game" in with_them
    assert with_them.count("| GBP | 0.780 |") == len(with_checks())
    assert "Sanity checks" not in tables_markdown(results_by_run())


def test_sanity_curves_label_every_run_and_show_every_value(tmp_path: Path, monkeypatch):
    runs = with_checks()
    names = list(runs)
    # the second run explains one more method, whose curve dips below -0.25
    runs[names[1]]["sanity"]["lap"] = _sanity([0.2, -0.1, -0.46, -0.3, -0.2], True)
    drawn = []
    monkeypatch.setattr(
        sanity_module, "_save", lambda figure, path, *_: drawn.append(figure) or path
    )
    plot_sanity_curves(runs, tmp_path / "curves.png")
    (figure,) = drawn
    axes = figure.get_axes()
    modes, measures = 2, 2
    for index, name in enumerate(names):
        first = axes[index * measures * modes]  # the run's first measure, first mode
        assert first.get_title().startswith(name)
        legend = first.get_legend()
        assert legend is not None
        labels = [text.get_text() for text in legend.get_texts()]
        assert ("LAP" in labels) == (index == 1), labels
    colors = {}
    for ax in axes:
        for line in ax.get_lines():
            if line.get_label().startswith("_"):
                continue  # the threshold line
            colors.setdefault(line.get_label(), set()).add(line.get_color())
            low = min(v for v in line.get_ydata() if v == v)
            assert ax.get_ylim()[0] <= low, (ax.get_title(), line.get_label())
    assert all(len(found) == 1 for found in colors.values()), colors  # one color per method


def test_figures_are_written(tmp_path: Path):
    runs = dict(list(with_checks().items())[:1])  # one run: one row of panels per measure
    assert plot_sanity_curves(runs, tmp_path / "curves.png").stat().st_size > 1000
    assert plot_grid_pg_distribution(runs, tmp_path / "pg.png").stat().st_size > 1000
    grids = torch.rand(2, 3, 16, 16)
    maps = {"gradcam": torch.rand(2, 16, 16), "bcos": torch.randn(2, 16, 16)}
    path = plot_grid_examples(grids, torch.tensor([0, 1]), (2, 2), maps, ["a", "b"],
                              tmp_path / "figures" / "grid_pg_examples.png")  # fmt: skip
    assert path.is_file()
    found = sanity_figures(runs, tmp_path / "figs", tmp_path)
    assert [p.name for p, _ in found] == [
        "sanity_curves.png",
        "grid_pg.png",
        "grid_pg_examples.png",
    ]
    assert [caption for _, caption in found] == [
        "Sanity checks: similarity of each method's maps with the trained model's as units are "
        "randomized (Adebayo et al. 2018, Fig. 2)",
        "Grid pointing game: share of positive attribution in the explained cell, per method "
        "(dashed: chance)",
        "grid pointing game examples (the explained cell framed; red positive, blue negative)",
    ]
    for name in ("sanity_curves.png", "grid_pg.png"):  # overwrite reaches each plot
        (tmp_path / "figs" / name).write_bytes(b"the user's file")
        with pytest.raises(FileExistsError, match=name):
            sanity_figures(runs, tmp_path / "figs", tmp_path)
        assert len(sanity_figures(runs, tmp_path / "figs", tmp_path, overwrite=True)) == 3
    with pytest.raises(ValueError, match="sanity"):
        plot_sanity_curves(results_by_run(), tmp_path / "none.png")
    with pytest.raises(ValueError, match="maps must be"):
        plot_grid_examples(grids, torch.tensor([0, 1]), (2, 2), {"gradcam": torch.rand(2, 8, 8)},
                           ["a", "b"], tmp_path / "bad.png")  # fmt: skip


class _Body(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.sections: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = attributes
        elif tag == "section":
            self.sections.append(attributes.get("id", ""))


def test_report_with_checks_renders_in_a_browser(tmp_path: Path):
    browser = pytest.importorskip("test_report_browser")
    if browser.CHROMIUM is None:
        pytest.skip(browser.SKIP_REASON)
    runs = with_checks()
    figures = sanity_figures(runs, tmp_path / "figs", tmp_path)
    report = write_report(tmp_path / "report", runs, configs(), figures, title="checks")
    dom = browser.run_chromium(["--window-size=390,844", "--dump-dom"], report, tmp_path / "p")
    parsed = _Body()
    parsed.feed(dom)
    assert "sanity-checks" in parsed.sections
    assert parsed.body.get("data-page-overflow") == "0"
    assert parsed.body.get("data-clipped") == ""
    assert parsed.body.get("data-images-loaded") == parsed.body.get("data-images-total")
    assert int(parsed.body["data-images-total"]) >= 2
