"""The sanity-check report section as markup (per-run tables, the grid setup and data
randomization paragraphs, escaping) and the figures :func:`sanity_figures` collects."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from torchlap.report.sanity import checks_section, sanity_figures

SANITY = {"threshold": 0.5, "summary": {"spearman_abs": 0.1, "ssim": 0.2}, "passed": True}
GAME = {"mean": 0.5, "n": 4, "chance": 0.25, "scores": [0.5] * 4,
        "distribution": {"median": 0.5, "q25": 0.4, "q75": 0.6}}  # fmt: skip
EXAMPLES = "grid pointing game examples (the explained cell framed; red positive, blue negative)"


class _Tables(HTMLParser):
    """Each table's id, header cells and rows: per cell (tag, attributes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table: dict | None = None
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._table = self.tables[attributes["id"]] = {"head": [], "rows": []}
        elif tag == "tr" and self._table is not None:
            self._table["rows"].append([])
        elif tag in ("th", "td"):
            self._cell = [tag, attributes, ""]
            self._table["rows"][-1].append(self._cell)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._cell = None
        elif tag == "table":
            self._table = None


def _tables(html: str) -> dict[str, dict]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def test_each_run_with_checks_gets_a_heading_a_table_and_its_grid_setup():
    runs = {
        "a&b": {"sanity": {"gradcam": SANITY}, "grid_pointing_game": {"gradcam": GAME},
                "grid_pointing_setup": {"shape": [2, 3], "n_grids": 4, "min_confidence": 0.9,
                                        "seed": 7}},
        "none": {"model": {}},
        "skipped": {"sanity": {"lap": SANITY},
                    "grid_pointing_setup": {"skipped": "too few <correct> images"}},
        "bare": {"sanity": {"gradcam": SANITY}},
    }  # fmt: skip
    section = checks_section(runs)
    assert section is not None
    assert (section.id, section.heading) == (
        "sanity-checks",
        "Sanity checks and grid pointing game",
    )
    html = section.html
    assert html.startswith("<p>Model-parameter randomization (Adebayo et al. 2018)")
    assert [line for line in html.splitlines() if line.startswith("<h3>")] == [
        "<h3>a&amp;b</h3>",
        "<h3>skipped</h3>",
        "<h3>bare</h3>",
    ]
    assert "<p>Grid pointing game: 4 grids of 2x3 cells, each cell an image classified " \
        "correctly with p &ge; 0.9, seed 7; chance = 1 / cells.</p>" in html  # fmt: skip
    assert "<p>Grid pointing game skipped: too few &lt;correct&gt; images</p>" in html
    assert html.count("<p>Grid pointing game") == 2  # "bare" has no setup: no paragraph
    tables = _tables(html)
    assert list(tables) == ["sanity-a&b", "sanity-skipped", "sanity-bare"]
    header, row = tables["sanity-a&b"]["rows"]
    assert [cell[2] for cell in header][:2] == ["Method", "Spearman |map| at full randomization"]
    assert all(tag == "th" and attrs == {"scope": "col"} for tag, attrs, _ in header)
    first, *rest = row
    assert first == ["th", {"scope": "row", "data-label": "Method"}, "gradcam"]
    assert [attrs["data-label"] for _, attrs, _ in rest] == [cell[2] for cell in header[1:]]
    assert [text for _, _, text in rest][:3] == ["0.100", "0.200", "pass (< 0.5)"]
    assert all(tag == "td" for tag, _, _ in rest)
    assert checks_section({"none": {"model": {}}}) is None


def _data_randomization(entry: dict) -> str:
    section = checks_section({"r": {"sanity": {"gradcam": SANITY}, "data_randomization": entry}})
    assert section is not None
    return section.html[section.html.index("</table></div>") :]


def test_data_randomization_paragraph_and_table():
    html = _data_randomization({
        "threshold": 0.25, "against": "<real>",
        "methods": {"gradcam": {"spearman_abs": {"mean": 0.1}, "ssim": {"mean": 0.3},
                                "passed": True},
                    "lap": {"passed": False}},
    })  # fmt: skip
    assert "against &lt;real&gt;'s, both explaining the true label (pass: Spearman below " \
        "0.25).</p>" in html  # fmt: skip
    rows = _tables(html)["data-randomization"]["rows"]
    assert [[text for _, _, text in row] for row in rows] == [
        ["Method", "Spearman |map| vs the real run", "SSIM", "Verdict"],
        ["gradcam", "0.100", "0.300", "pass"],
        ["lap", "n/a", "n/a", "n/a"],  # nothing measured: no verdict
    ]


def test_data_randomization_skipped_or_empty():
    skipped = _data_randomization({"skipped": "no <permuted> run"})
    assert "<p>Data randomization skipped: no &lt;permuted&gt; run</p>" in skipped
    assert "data-randomization" not in skipped
    for entry in ({"threshold": 0.5}, {"threshold": 0.5, "methods": {}}):
        assert "Data randomization" not in _data_randomization(entry)


def test_sanity_figures_collect_each_runs_grid_examples(tmp_path: Path):
    runs = {"r1": {"model": {}}, "r2": {"model": {}}, "r3": {"model": {}}}
    for folder in ("figures", "r1/figures", "r3/figures"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "grid_pg_examples.png").write_bytes(b"png")
    (tmp_path / "r2" / "figures" / "grid_pg_examples.png").mkdir(parents=True)  # not a file
    found = sanity_figures(runs, tmp_path / "figs", tmp_path)
    assert found == [
        (tmp_path / "figures" / "grid_pg_examples.png", EXAMPLES),
        (tmp_path / "r1" / "figures" / "grid_pg_examples.png", f"r1: {EXAMPLES}"),
        (tmp_path / "r3" / "figures" / "grid_pg_examples.png", f"r3: {EXAMPLES}"),
    ]
    assert not (tmp_path / "figs").exists()  # no checks: no curves, no box plots
    assert sanity_figures(runs, tmp_path / "figs", tmp_path / "elsewhere") == []
