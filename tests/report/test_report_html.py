"""report.html: self-contained, escaped, every table and figure, same data as the Markdown."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_synthetic import configs, parse_markdown_table, results_by_run

from torchlap.report import all_tables, write_report
from torchlap.report.html import html_tables


class ReportParser(HTMLParser):
    """Collects tables (id, caption, header and body cells with bold flags), images,
    details, scripts, links and every attribute value."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[dict[str, str]] = []
        self.details = 0
        self.scripts = 0
        self.tags: list[str] = []
        self.attribute_values: list[str] = []
        self.meta: list[dict[str, str]] = []
        self.figcaptions: list[str] = []
        self.pre_texts: list[str] = []
        self._stack: list[str] = []
        self._text: list[str] = []
        self._bold = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.attribute_values += attributes.values()
        if tag not in ("img", "meta", "br"):
            self._stack.append(tag)
        if tag == "table":
            self.tables.append({"id": attributes.get("id"), "caption": "", "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th", "caption", "figcaption", "pre"):
            self._text, self._bold = [], False
        elif tag == "strong":
            self._bold = True
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "details":
            self.details += 1
        elif tag == "script":
            self.scripts += 1
        elif tag == "meta":
            self.meta.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        text = "".join(self._text).strip()
        if tag in ("td", "th"):
            self.tables[-1]["rows"][-1].append((tag, text, self._bold))
        elif tag == "caption":
            self.tables[-1]["caption"] = text
        elif tag == "figcaption":
            self.figcaptions.append(text)
        elif tag == "pre":
            self.pre_texts.append("".join(self._text))

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def make_png(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, str, ReportParser, list[Path]]:
    figures = [make_png(tmp_path / f"keep_k_{i}.png", i) for i in range(2)]
    figures.append(make_png(tmp_path / "overlays.png", 7))
    entries = [*figures[:2], (figures[2], "Overlays of <3> images")]
    path = write_report(
        tmp_path / "out",
        results_by_run(),
        configs(),
        entries,
        title="LAP <vs> post-hoc & friends",
        date=datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
    )
    text = path.read_text(encoding="utf-8")
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return path, text, parser, figures


def test_report_is_one_self_contained_file(report) -> None:
    path, text, parser, _ = report
    assert path.name == "report.html"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    assert "http://" not in text and "https://" not in text
    assert "link" not in parser.tags and "iframe" not in parser.tags
    assert not any(v.startswith(("//", "http")) for v in parser.attribute_values)
    assert all(img["src"].startswith("data:image/png;base64,") for img in parser.images)
    viewport = [m for m in parser.meta if m.get("name") == "viewport"]
    assert viewport and "width=device-width" in viewport[0]["content"]
    csp = [m for m in parser.meta if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    assert parser.scripts == 1  # ours only: the config's <script> text is escaped


def test_report_title_date_and_escaping(report) -> None:
    _, text, _, _ = report
    assert "<title>LAP &lt;vs&gt; post-hoc &amp; friends</title>" in text
    assert "<h1>LAP &lt;vs&gt; post-hoc &amp; friends</h1>" in text
    assert "2024-05-01 12:30 UTC" in text
    assert "<script>alert" not in text


def test_report_configs_as_pretty_json(report) -> None:
    _, _, parser, _ = report
    assert parser.details == 2
    assert [json.loads(t) for t in parser.pre_texts] == list(configs().values())
    assert parser.pre_texts[1] == json.dumps(configs()["WS-LAP"], indent=2)


def test_report_tables_match_the_markdown(report) -> None:
    _, _, parser, _ = report
    tables = html_tables(all_tables(results_by_run()))
    assert [t["id"] for t in parser.tables] == [t.id for t in tables]
    for parsed, table in zip(parser.tables, tables, strict=True):
        assert parsed["caption"].startswith(f"{table.title}.")
        assert table.caption in parsed["caption"]
        _, md_rows = parse_markdown_table(table.to_markdown())
        body = [row for row in parsed["rows"] if any(tag == "td" for tag, _, _ in row)]
        assert len(body) == len(md_rows)
        for html_row, md_row in zip(body, md_rows, strict=True):
            html_cells = [(text, is_bold) for _, text, is_bold in html_row]
            md_cells = [(cell.strip("*"), cell.startswith("**")) for cell in md_row]
            assert html_cells == md_cells


def test_report_grouped_headers(report) -> None:
    _, text, parser, _ = report
    # Table I keeps its spanning group headers
    table_one = next(t for t in parser.tables if t["id"] == "table-model-lap")
    top, bottom = table_one["rows"][:2]
    assert [cell[1] for cell in top] == [
        "Run",
        "Model performance",
        "LAP predictions",
        "Faithfulness to model",
    ]
    assert [cell[1] for cell in bottom][:4] == ["Acc.", "Sens.", "Spec.", "BA"]
    assert re.search(r'colspan="4">Model performance<', text)
    # Table II is split by binarization: one table each, same rows, caption on the first,
    # notes (with the tie) under the last
    parts = [t for t in parser.tables if t["id"].startswith("table-localization-")]
    assert [t["id"] for t in parts] == [
        "table-localization-thresholding",
        "table-localization-top-scored-selection",
    ]
    for part in parts:
        assert [cell[1] for cell in part["rows"][0]] == ["Run", "DL", "GC", "LAP", "my_method"]
        assert [row[0][1] for row in part["rows"][1:]] == ["vanilla", "WS-LAP"]
    assert parts[0]["caption"].startswith("Table II (Thresholding). IoU of the binarized")
    assert parts[1]["caption"] == "Table II (Top-Scored Selection)."
    section = text.split('id="section-table-localization"')[1].split("</section>")[0]
    assert section.count('class="notes"') == 1
    assert section.index('class="notes"') > section.index("table-localization-top-scored")
    assert "WS-LAP, Top-Scored Selection: DL = LAP (44.29)" in section


def test_report_embeds_every_figure(report) -> None:
    _, text, parser, figures = report
    assert len(parser.images) == len(figures)
    # the overlays are the one figure of "At a glance" (first), the others follow in order
    shown = [figures[2], figures[0], figures[1]]
    for image, figure in zip(parser.images, shown, strict=True):
        data = base64.b64decode(image["src"].split(",", 1)[1])
        assert data == figure.read_bytes()
        assert image["alt"]
        assert (image["width"], image["height"]) == ("30", "20")
    assert parser.images[0]["alt"] == "Overlays of <3> images"
    assert parser.figcaptions[0] == "Overlays of <3> images"
    assert "keep-k%" in parser.figcaptions[1]  # default caption from the file name
    glance = text.split('<section id="glance">')[1].split("</section>")[0]
    assert glance.count("<img") == 1 and text.count("<img") == 3


def test_report_checks_inputs_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("old")
    not_png = tmp_path / "figure.png"
    not_png.write_text("GIF89a")
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        write_report(out, results_by_run(), configs(), [tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="not a PNG"):
        write_report(out, results_by_run(), configs(), [not_png])
    with pytest.raises(TypeError, match="configs"):
        write_report(out, results_by_run(), {"vanilla": "epochs=2"}, [])
    broken = results_by_run()
    broken["vanilla"]["localization"]["gradcam"] = [0.5]
    with pytest.raises(TypeError, match="localization"):
        write_report(out, broken, configs(), [])
    assert (out / "report.html").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_report_with_minimal_results(tmp_path: Path) -> None:
    path = write_report(tmp_path, {"only": {}})
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    assert [t["id"] for t in parser.tables] == ["table-runs", "table-model-lap"]
    assert parser.images == [] and parser.details == 0


# ---------------------------------------------------------------------------- at a glance


def glance_of(text: str) -> str:
    return text.split('<section id="glance">')[1].split("</section>")[0]


def test_at_a_glance_comes_first_with_three_numbers_per_run(report) -> None:
    _, text, _, _ = report
    assert text.index('id="glance"') < text.index('id="runs"')
    glance = glance_of(text)
    assert len(re.findall(r'class="card( warn)?"', glance)) == 6  # three per run, two runs
    assert "<h3>vanilla</h3>" in glance and "<h3>WS-LAP</h3>" in glance
    # WS-LAP: BA 96.56; DL and LAP tie for the best IoU (top-scored); LAP has the lowest Drop
    ws_lap = glance.split("<h3>WS-LAP</h3>")[1]
    assert '<div class="value">96.56%</div>' in ws_lap
    assert '<div class="value">DL = LAP 44.29%</div>' in ws_lap
    assert "next: my_method 15.00%" in ws_lap
    assert '<div class="value">LAP 10.00%</div>' in ws_lap
    assert "next: GC 40.00%" in ws_lap
    assert 'class="warnings"' not in glance  # nothing to warn about


def test_glance_numbers_warn_about_chance_and_flat_maps() -> None:
    from report_synthetic import METHOD_FACTS, lap_results, metric

    from torchlap.report.html import glance_numbers, glance_warnings

    run = lap_results()
    run["data"]["n_classes"] = 2
    run["model"]["balanced_accuracy"] = metric(0.52, n=50)  # chance 0.5: bound 61.63 %
    run["maps"] = {"lap": {"n": 50, "n_flat": 50, "tolerance": 1e-6}}
    accuracy, localization, faithfulness = glance_numbers(run)
    assert accuracy.warn and "not above chance (50.00%)" in accuracy.detail
    assert localization.warn and "flat maps (LAP)" in localization.detail
    assert faithfulness.value == "LAP 10.00%" and faithfulness.warn
    warnings = glance_warnings("r", run)
    assert len(warnings) == 2
    assert warnings[0].startswith("r: LAP: 50 of 50 maps flat, constant within 1e-06. A flat")
    assert "is not above chance (50.00%)" in warnings[1]
    # a long tie moves the names to the detail line; missing sections say so
    many = {"faithfulness": {m: {"drop": metric(5.0, False)} for m in ("gradcam", "rise", "lap")}}
    many["methods"] = METHOD_FACTS
    _, missing, tie = glance_numbers(many)
    assert missing.value == "-" and missing.detail == "not computed"
    assert tie.value == "3 methods 5.00%"
    assert "does not separate them: GC, RISE, LAP" in tie.detail


def test_report_shows_the_warnings_and_the_best_methods_overlay(tmp_path: Path) -> None:
    results = results_by_run()
    results["vanilla"]["maps"] = {"gradcam": {"n": 50, "n_flat": 50, "tolerance": 1e-6}}
    figures = [make_png(tmp_path / name, i) for i, name in enumerate(
        ("keep_k.png", "overlays_gradcam.png", "overlays_deeplift.png", "iou_bars.png")
    )]  # fmt: skip
    path = write_report(tmp_path / "out", {"vanilla": results["vanilla"]}, None, figures)
    glance = glance_of(path.read_text(encoding="utf-8"))
    assert "⚠ vanilla: GC: 50 of 50 maps flat, constant within 1e-06." in glance
    # no LAP overlay: the overlay of the best-localizing method (DL) is the one figure
    assert 'id="figure-overlays_deeplift"' in glance and glance.count("<figure") == 1


def test_extra_sections_come_from_the_registered_builders(tmp_path: Path, monkeypatch) -> None:
    from torchlap.report import html

    def sanity(runs):
        if not any("sanity" in run for run in runs.values()):
            return None
        return html.ReportSection("sanity", "Sanity checks", "<p>cascading randomization</p>")

    monkeypatch.setattr(html, "SECTION_BUILDERS", [sanity])
    text = write_report(tmp_path / "a", results_by_run()).read_text(encoding="utf-8")
    assert 'id="sanity"' not in text
    results = results_by_run()
    results["WS-LAP"]["sanity"] = {}
    text = write_report(tmp_path / "b", results).read_text(encoding="utf-8")
    section = '<section id="sanity"><h2>Sanity checks</h2>\n<p>cascading randomization</p>'
    assert section in text
    assert text.index('id="section-table-timing"') < text.index('id="sanity"')


def test_figures_of_several_runs_with_one_file_name_get_distinct_ids(tmp_path: Path) -> None:
    # each run folder writes figures/grid_pg_examples.png: one page, so one id each
    for run in "abc":
        (tmp_path / run).mkdir()
    figures = [make_png(tmp_path / run / "grid_pg_examples.png", i) for i, run in enumerate("abc")]
    text = write_report(tmp_path / "out", results_by_run(), configs(), figures).read_text()
    ids = re.findall(r'<figure id="([^"]+)"', text)
    assert len(ids) == 3 and len(set(ids)) == 3
    assert ids[0] == "figure-grid_pg_examples"
