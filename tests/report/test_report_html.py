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
    tables = all_tables(results_by_run())
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
    localization = next(t for t in parser.tables if t["id"] == "table-localization")
    top, bottom = localization["rows"][:2]
    assert [cell[1] for cell in top] == ["Run", "Thresholding", "Top-Scored Selection"]
    assert [cell[1] for cell in bottom] == ["DL", "GC", "LAP", "my_method"] * 2
    assert re.search(r'colspan="4">Thresholding<', text)


def test_report_embeds_every_figure(report) -> None:
    _, _, parser, figures = report
    assert len(parser.images) == len(figures)
    for image, figure in zip(parser.images, figures, strict=True):
        data = base64.b64decode(image["src"].split(",", 1)[1])
        assert data == figure.read_bytes()
        assert image["alt"]
        assert (image["width"], image["height"]) == ("30", "20")
    assert parser.images[2]["alt"] == "Overlays of <3> images"
    assert parser.figcaptions[2] == "Overlays of <3> images"
    assert "keep-k%" in parser.figcaptions[0]  # default caption from the file name


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
