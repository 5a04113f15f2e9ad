"""report.html's structure: every section and box closed where it opens, the warning cards
marked, the configurations shown as written (non-ASCII text as is)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image
from report_synthetic import lap_results

from torchlap.report import write_report

VOID = {"meta", "img", "br", "wbr", "hr", "input", "link"}


class Nesting(HTMLParser):
    """Checks that every element closes in the order it opened; collects each div's classes
    with the classes of the divs around it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.divs: list[tuple[str, tuple[str, ...]]] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            return
        classes = dict(attrs).get("class") or ""
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        if tag == "div":
            self.divs.append((classes, tuple(c for t, c in self.stack if t == "div")))
        self.stack.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()


def _glance(text: str) -> str:
    return text.split('<section id="glance">')[1].split("</section>")[0]


def test_the_glance_cards_and_warnings_are_closed_boxes(tmp_path: Path) -> None:
    run = lap_results()
    run["maps"] = {"lap": {"n": 50, "n_flat": 50, "tolerance": 1e-6}}  # LAP's maps all flat
    configs = {"WS-LAP": {"note": "café ≥ 5 µm"}}
    figures = []
    for name in ("overlays.png", "keep_k.png"):  # LAP's overlays: the glance's one figure
        figures.append(tmp_path / name)
        Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(figures[-1])
    out = tmp_path / "out"
    text = write_report(out, {"WS-LAP": run}, configs, figures).read_text(encoding="utf-8")
    parser = Nesting()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert text.count("<section") == text.count("</section>")
    sections = parser.sections
    assert sections[:2] == ["glance", "runs"] and sections[-1] == "figures"
    figures_section = text.split('<section id="figures">')[1].split("</section>")[0]
    assert figures_section.count("<figure") == 1 and 'id="figure-keep_k"' in figures_section
    assert "<h3>Configurations</h3>" in text.split('<section id="runs">')[1].split("</section>")[0]
    glance = [(kind, around) for kind, around in parser.divs if kind.split()[0] == "card"]
    # the three numbers: accuracy, localization (flat maps: a warning), faithfulness
    assert [classes for classes, _ in glance] == ["card", "card warn", "card warn"]
    assert all(around == ("glance-run", "cards") for _, around in glance)
    warnings = [around for classes, around in parser.divs if classes == "warnings"]
    assert warnings == [()]
    assert "⚠ WS-LAP: LAP: 50 of 50 maps flat" in _glance(text).split('class="warnings"')[1]
    assert "café ≥ 5 µm" in text  # not "caf\\u00e9 \\u2265 5 \\u00b5m"
