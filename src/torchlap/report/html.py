"""One self-contained HTML report per evaluation: ``report.html`` with the run
configurations, every table of :mod:`torchlap.report.tables` (rendered from the same
:class:`~torchlap.report.tables.Table` data as the Markdown) and the figures embedded as
base64 PNG data URIs.

The page loads nothing from outside (inline CSS and script, a Content-Security-Policy that
allows only inline style/script and ``data:`` images), so it can be mailed or archived as
one file. It is responsive: a max-width container, wide grouped tables split by group (Table
II: one table per binarization), text cells that wrap, and every table that is still wider
than its box shown as cards (one card per row, each value with its column's label) by a small
inline script, so no column is ever cut off; images scaled to the width. Without scripts the
tables scroll inside their own box.

The first section, "At a glance", shows per run the model's accuracy, the best localization
and the best faithfulness (each with the runner-up), warnings (flat maps, a model at chance)
and the one figure (LAP's overlays when present, else the best-localizing method's).
Extra sections come from the builders of :data:`SECTION_BUILDERS` (the sanity checks').

The inline script also records on ``<body>``, once the page has loaded, how many tables and
images it has and how many images decoded (``data-tables``, ``data-images-total``,
``data-images-loaded``), whether the page overflows horizontally (``data-page-overflow``),
which tables it showed as cards (``data-stacked``), which table boxes are still clipped
(``data-clipped``: content wider than the box, boxes marked ``data-scroller`` excepted) and
how many cells lie outside the viewport (``data-cells-outside``); a headless browser's
``--dump-dom`` shows them, which is how the tests check the rendered page.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from torchlap._checks import check_bool
from torchlap.io import atomic_write
from torchlap.report._common import ReportSection, as_runs
from torchlap.report.glance import (
    GlanceNumber,
    glance_figure,
    glance_numbers,
    glance_warnings,
    revision_warnings,
)
from torchlap.report.sanity import checks_section
from torchlap.report.tables import Cell, Column, Table, all_tables, split_by_group

__all__ = [
    "REPORT_NAME",
    "SECTION_BUILDERS",
    "GlanceNumber",
    "ReportSection",
    "glance_numbers",
    "glance_warnings",
    "html_tables",
    "render_table",
    "write_report",
]

REPORT_NAME = "report.html"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# default captions for the file names used by `torchlap evaluate` (matched on the stem prefix)
_DEFAULT_CAPTIONS = {
    "keep_k": "keep-k% faithfulness: agreement of the prediction on images keeping only the "
    "k% top-scored pixels (paper 000, Fig. 4).",
    "iou_bars": "IoU with the annotated regions by thresholding and by top-scored selection.",
    "overlays": "Explanation maps of each method over the inputs; green: annotated region.",
    "lap_layers": "LAP concept maps per layer, one color per concept head.",
}

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  line-height: 1.45; color: #1b1f24; background: #f5f6f8; }
* { box-sizing: border-box; }
body { margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem 1.25rem 3rem; }
h1 { font-size: 1.7rem; margin: 0.5rem 0 0.2rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; border-bottom: 1px solid #d5dae0;
  padding-bottom: 0.2rem; }
.date { color: #5a6470; margin: 0 0 1rem; font-size: 0.9rem; }
.table-wrap { overflow-x: auto; -webkit-overflow-scrolling: touch; background: #fff;
  border: 1px solid #d5dae0; border-radius: 6px; margin: 0.5rem 0 0.3rem; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.88rem; font-variant-numeric: tabular-nums;
  min-width: 100%; }
/* sticky + max-width: the caption wraps to the visible width instead of scrolling away
   with a wide table on a phone */
caption { caption-side: top; text-align: left; padding: 0.55rem 0.75rem; color: #38414b;
  position: sticky; left: 0; max-width: calc(100vw - 3rem); }
th, td { padding: 0.35rem 0.6rem; border-bottom: 1px solid #e6e9ed; white-space: nowrap; }
td { text-align: right; }
/* labels and text wrap (run names, folders) at spaces, hyphens, slashes; numbers do not */
td.text, tbody th { white-space: normal; overflow-wrap: break-word; }
/* headers wrap at spaces, hyphens and the <wbr> after underscores of long names */
thead th { white-space: normal; }
td.text { text-align: left; }
td.tied { text-decoration: underline dotted #0b4fa3; text-underline-offset: 0.2em; }
.mark { color: #a33b0b; font-weight: 600; }
/* cards: a table wider than its box shows one card per row (set by the inline script) */
.table-wrap.stacked table, .table-wrap.stacked tbody, .table-wrap.stacked caption {
  display: block; min-width: 0; }
.table-wrap.stacked thead { display: none; }
.table-wrap.stacked tbody tr { display: grid; column-gap: 1.25rem;
  grid-template-columns: repeat(auto-fill, minmax(min(9.5rem, 100%), 1fr));
  padding: 0.45rem 0.75rem; border-top: 1px solid #d5dae0; }
.table-wrap.stacked tbody th { grid-column: 1 / -1; border: none; padding: 0.1rem 0; }
.table-wrap.stacked td { display: flex; justify-content: space-between; gap: 0.6rem;
  border: none; border-bottom: 1px dotted #e6e9ed; padding: 0.15rem 0; white-space: normal;
  min-width: 0; }
.table-wrap.stacked th, .table-wrap.stacked td.text { overflow-wrap: anywhere; }
.table-wrap.stacked td.text { grid-column: 1 / -1; }
.table-wrap.stacked td::before { content: attr(data-label); color: #5a6470; text-align: left;
  flex: 0 0 auto; max-width: 60%; overflow-wrap: anywhere; }
.table-wrap.stacked td > span { min-width: 0; text-align: right; }
#glance figure img { max-height: 75vh; width: auto; }
.glance-run h3 { font-size: 1rem; margin: 0.8rem 0 0.3rem; }
.cards { display: grid; gap: 0.6rem; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); }
.card { background: #fff; border: 1px solid #d5dae0; border-radius: 6px; padding: 0.6rem 0.8rem; }
.card .label { color: #5a6470; font-size: 0.85rem; }
.card .value { font-size: 1.6rem; font-weight: 650; color: #0b4fa3;
  font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.card .detail { font-size: 0.8rem; color: #38414b; }
.card.warn { border-color: #d99a2b; background: #fff8eb; }
.card.warn .value { color: #8a4b00; }
.warnings { background: #fff8eb; border: 1px solid #d99a2b; border-radius: 6px;
  padding: 0.5rem 0.9rem; margin: 0.8rem 0; font-size: 0.9rem; }
.warnings p { margin: 0.2rem 0; }
thead th { background: #eef1f5; text-align: center; font-weight: 600; }
tbody th { text-align: left; font-weight: 600; }
tbody tr:hover { background: #f7f9fc; }
td strong { color: #0b4fa3; }
.notes { font-size: 0.8rem; color: #5a6470; margin: 0 0 1.5rem; }
.notes p { margin: 0.1rem 0; }
details { background: #fff; border: 1px solid #d5dae0; border-radius: 6px; margin: 0.4rem 0;
  padding: 0.45rem 0.75rem; }
summary { cursor: pointer; font-weight: 600; }
pre { overflow-x: auto; font-size: 0.8rem; margin: 0.5rem 0 0; }
figure { margin: 0 0 1.5rem; background: #fff; border: 1px solid #d5dae0; border-radius: 6px;
  padding: 0.5rem; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 0.85rem; color: #38414b; margin-top: 0.4rem; }
@media (max-width: 600px) {
  main { padding: 0.6rem 0.6rem 2rem; }
  h1 { font-size: 1.3rem; }
  table { font-size: 0.78rem; }
  caption { max-width: calc(100vw - 1.5rem); }
  th, td { padding: 0.3rem 0.4rem; }
}
"""

# Shows too-wide tables as cards, and records what the browser rendered (module docstring).
_SCRIPT = """
function torchlapFit() {
  var stacked = [];
  document.querySelectorAll(".table-wrap").forEach(function (wrap) {
    wrap.classList.remove("stacked");
    if (wrap.scrollWidth > wrap.clientWidth + 1) {
      wrap.classList.add("stacked");
      var table = wrap.querySelector("table");
      stacked.push(table ? table.id : "?");
    }
  });
  return stacked;
}
function torchlapClipped() {
  var root = document.documentElement;
  var clipped = [];
  document.querySelectorAll(".table-wrap").forEach(function (wrap) {
    if (!wrap.hasAttribute("data-scroller") && wrap.scrollWidth > wrap.clientWidth + 1) {
      var table = wrap.querySelector("table");
      clipped.push(table ? table.id : "?");
    }
  });
  var outside = 0;
  document.querySelectorAll("td, th").forEach(function (cell) {
    if (cell.closest("[data-scroller]") || cell.getClientRects().length === 0) { return; }
    var box = cell.getBoundingClientRect();
    if (box.left < -1 || box.right > root.clientWidth + 1) { outside += 1; }
  });
  return {clipped: clipped, outside: outside};
}
window.addEventListener("resize", torchlapFit);
window.addEventListener("load", function () {
  var stacked = torchlapFit();
  var check = torchlapClipped();
  var images = Array.prototype.slice.call(document.images);
  var root = document.documentElement;
  var data = document.body.dataset;
  data.stacked = stacked.join(" ");
  data.clipped = check.clipped.join(" ");
  data.cellsOutside = String(check.outside);
  data.tables = String(document.querySelectorAll("table").length);
  data.imagesTotal = String(images.length);
  data.imagesLoaded = String(images.filter(function (image) {
    return image.complete && image.naturalWidth > 0;
  }).length);
  data.pageOverflow = root.scrollWidth > root.clientWidth + 1 ? "1" : "0";
  data.ready = "1";
});
"""

_HEADINGS = {
    "glance": "At a glance",
    "table-model-lap": "Model and LAP layers as predictors",
    "table-localization": "Localization: IoU",
    "table-paired": "Localization: paired leads",
    "table-other-localization": "Localization: other metrics",
    "table-faithfulness": "Faithfulness",
    "table-paired-faithfulness": "Faithfulness: paired leads",
    "table-stability": "Stability",
    "table-lime": "Faithfulness to LIME (BLA)",
    "table-timing": "Timing",
}

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


# ------------------------------------------------------------------------------- tables


def _header_html(table: Table) -> str:
    """Two header rows when columns have groups (spanning group cells), else one."""
    grouped = any(column.group for column in table.columns)
    if not grouped:
        cells = [f'<th scope="col">{escape(label)}</th>' for label in table.stub]
        cells += [f'<th scope="col">{_label_html(c.label)}</th>' for c in table.columns]
        return "<tr>" + "".join(cells) + "</tr>"
    top = [f'<th scope="col" rowspan="2">{escape(label)}</th>' for label in table.stub]
    bottom = []
    index = 0
    while index < len(table.columns):
        column = table.columns[index]
        if not column.group:
            top.append(f'<th scope="col" rowspan="2">{_label_html(column.label)}</th>')
            index += 1
            continue
        span = 1
        while (
            index + span < len(table.columns) and table.columns[index + span].group == column.group
        ):
            span += 1
        top.append(f'<th scope="colgroup" colspan="{span}">{escape(column.group)}</th>')
        bottom += [
            f'<th scope="col">{_label_html(c.label)}</th>'
            for c in table.columns[index : index + span]
        ]
        index += span
    return "<tr>" + "".join(top) + "</tr>\n<tr>" + "".join(bottom) + "</tr>"


def html_tables(tables: Sequence[Table]) -> list[Table]:
    """The tables as the HTML shows them: tables flagged ``split_groups`` (Table II, and
    grouped tables with many columns) split into one table per column group."""
    return [part for table in tables for part in (
        split_by_group(table) if table.split_groups else [table]
    )]  # fmt: skip


def _label_html(label: str) -> str:
    """Escaped label; a long one may wrap after its underscores (``<wbr>``)."""
    text = escape(label)
    return text.replace("_", "_<wbr>") if len(label) > 12 else text


def _cell_html(cell: Cell, column: Column) -> str:
    text = escape(cell.text)
    if cell.mark:
        text += f'<span class="mark">{escape(cell.mark)}</span>'
    if cell.bold:
        text = f"<strong>{text}</strong>"
    text = f"<span>{text}</span>"  # one flex item next to the label in the card layout
    note = cell.note
    if cell.tied:
        note += ("; " if note else "") + "tied for the best"
    title = f' title="{escape(note)}"' if note else ""
    classes = [name for name, on in (("text", not column.numeric), ("tied", cell.tied)) if on]
    kind = f' class="{" ".join(classes)}"' if classes else ""
    label = f"{column.group} · {column.label}" if column.group else column.label
    return f'<td{kind} data-label="{escape(label)}"{title}>{text}</td>'


def render_table(table: Table, *, notes: bool = True) -> str:
    """HTML of a :class:`~torchlap.report.tables.Table` (same cells, marks and bolding as its
    Markdown), in a box that scrolls horizontally when scripts are off (the report's script
    shows a table wider than its box as cards), with its notes below (``notes=False``: none).
    ``table`` must be a ``Table`` and ``notes`` a bool (TypeError otherwise)."""
    if not isinstance(table, Table):
        raise TypeError(
            f"table must be a torchlap.report.Table (e.g. from all_tables(results)), got "
            f"{type(table).__name__}"
        )
    notes = check_bool(notes, "notes")
    body = []
    for row in table.rows:
        cells = [
            f'<th scope="row" data-label="{escape(stub)}">{_label_html(label)}</th>'
            for stub, label in zip(table.stub, row.labels, strict=False)
        ]
        cells += [
            _cell_html(cell, column) for cell, column in zip(row.cells, table.columns, strict=True)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes_html = "".join(f"<p>{escape(note)}</p>" for note in table.notes) if notes else ""
    caption = f" {escape(table.caption)}" if table.caption else ""
    return (
        f'<div class="table-wrap"><table id="{escape(table.id)}">\n'
        f"<caption><b>{escape(table.title)}.</b>{caption}</caption>\n"
        f"<thead>\n{_header_html(table)}\n</thead>\n"
        "<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table></div>\n"
        + (f'<div class="notes">{notes_html}</div>\n' if notes_html else "")
    )


# ------------------------------------------------------------------------------ figures


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG header (IHDR is always the first chunk)."""
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _figure_entries(figures: object) -> list[tuple[Path, str, bytes]]:
    if figures is None:
        return []
    if isinstance(figures, (str, os.PathLike)) or not isinstance(figures, Sequence):
        raise TypeError(
            "figures must be a list of PNG paths or (path, caption) pairs, "
            f"got {type(figures).__name__}"
        )
    entries = []
    for item in figures:
        if isinstance(item, tuple) and len(item) == 2:
            path, caption = item
        else:
            path, caption = item, None
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"each figure must be a path or (path, caption), got {item!r}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"figure {str(path)!r} does not exist")
        data = path.read_bytes()
        if not data.startswith(_PNG_SIGNATURE) or len(data) < 24:
            raise ValueError(f"figure {str(path)!r} is not a PNG file (only PNG is embedded)")
        if caption is None:
            caption = next(
                (text for stem, text in _DEFAULT_CAPTIONS.items() if path.stem.startswith(stem)),
                path.stem.replace("_", " ").replace("-", " "),
            )
        entries.append((path, str(caption), data))
    return entries


def _figure_anchors(entries: list[tuple[Path, str, bytes]]) -> list[str]:
    """One id per figure: ``figure-<file stem>``, and ``-2``, ``-3``, ... for the figures of
    several runs that share a file name (ids must be unique in a page)."""
    seen: dict[str, int] = {}
    anchors = []
    for path, _, _ in entries:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        count = seen[path.stem]
        anchors.append(f"figure-{path.stem}" + (f"-{count}" if count > 1 else ""))
    return anchors


def _figure_html(path: Path, caption: str, data: bytes, anchor: str) -> str:
    width, height = _png_size(data)
    source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure id="{escape(anchor)}"><img src="{source}" alt="{escape(caption)}" '
        f'width="{width}" height="{height}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>\n"
    )


# ---------------------------------------------------------------------------- at a glance


def _glance_html(
    runs: Mapping[str, Mapping[str, Any]], figure: tuple[Path, str, bytes, str] | None
) -> str:
    parts = ['<section id="glance"><h2>At a glance</h2>\n']
    for name, run in runs.items():
        parts.append('<div class="glance-run">')
        if len(runs) > 1:
            parts.append(f"<h3>{escape(name)}</h3>")
        parts.append('<div class="cards">')
        for number in glance_numbers(run):
            kind = "card warn" if number.warn else "card"
            parts.append(
                f'<div class="{kind}"><div class="label">{escape(number.label)}</div>'
                f'<div class="value">{escape(number.value)}</div>'
                f'<div class="detail">{escape(number.detail)}</div></div>'
            )
        parts.append("</div></div>\n")
    warnings = [w for name, run in runs.items() for w in glance_warnings(name, run)]
    warnings += revision_warnings(runs)
    if warnings:
        parts.append('<div class="warnings" role="note">')
        parts += [f"<p>⚠ {escape(warning)}</p>" for warning in warnings]
        parts.append("</div>\n")
    if figure is not None:
        parts.append(_figure_html(*figure))
    parts.append("</section>\n")
    return "".join(parts)


# ------------------------------------------------------------------------------- report


# Builders of extra sections, called in order with {run name: results dict} after the tables
# and before the figures; a builder returns None when its results are absent (use
# render_table() for their tables).
SECTION_BUILDERS: list[Callable[[Mapping[str, Mapping[str, Any]]], ReportSection | None]] = [
    checks_section
]


def _configs(configs: object) -> dict[str, Mapping[str, Any]]:
    if configs is None:
        return {}
    if not isinstance(configs, Mapping):
        raise TypeError(f"configs must be a dict of run name -> config dict, got {type(configs)}")
    for name, config in configs.items():
        if not isinstance(name, str) or not isinstance(config, Mapping):
            raise TypeError(
                f"configs must map run names (str) to config dicts, got {name!r}: "
                f"{type(config).__name__}"
            )
    return dict(configs)


def _config_html(name: str, config: Mapping[str, Any]) -> str:
    text = json.dumps(config, indent=2, default=str, ensure_ascii=False)
    return (
        f"<details><summary>{escape(name)}</summary>"
        f"<pre><code>{escape(text)}</code></pre></details>\n"
    )


def _report_target(out_dir: str | os.PathLike[str], overwrite: object) -> Path:
    """``out_dir/report.html``; FileExistsError when it exists and ``overwrite`` is False."""
    check_bool(overwrite, "overwrite")
    folder = Path(out_dir)
    found = (p for p in (folder, *folder.parents) if p.exists() or p.is_symlink())
    existing = next(found, None)
    if existing is not None and not existing.is_dir():  # (mkdir failed after the rendering)
        what = "a symlink to nothing" if not existing.exists() else "a file"
        where = "is" if existing == folder else f"is inside {existing}, which is"
        raise NotADirectoryError(
            f"out_dir {folder} {where} {what}; pass a folder (report.html is written into it)"
        )
    target = folder / REPORT_NAME
    if target.is_dir():  # never replaced, overwrite or not
        raise IsADirectoryError(f"{target} is a folder; report.html is written as a file there")
    if (target.exists() or target.is_symlink()) and not overwrite:  # a link to nothing too
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True to replace it, or choose another out_dir"
        )
    return target


def write_report(
    out_dir: str | os.PathLike[str],
    results_by_run: object,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    figures: Sequence[str | os.PathLike[str] | tuple[str | os.PathLike[str], str]] = (),
    title: str = "torchlap evaluation report",
    *,
    date: datetime | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path.

    ``overwrite`` (True or False): an existing ``out_dir/report.html`` is refused
    (FileExistsError, after the inputs are checked and before anything is rendered) unless
    True; ``torchlap evaluate`` and
    ``compare`` pass True for the output folders they have checked are theirs.

    Contents: ``title`` and ``date`` (default: now, UTC); "At a glance" (per run: accuracy,
    best localization, best faithfulness; warnings for flat maps and a model at chance; the
    one figure, see the module docstring); the runs table and each run's configuration
    (collapsible, pretty JSON); every table of :func:`torchlap.report.tables.all_tables`
    (paper 000 Tables I and II, other localization metrics, faithfulness, stability, timing),
    each with an id and a caption; the sections of :data:`SECTION_BUILDERS`; the other
    ``figures`` (PNG paths, or ``(path, caption)`` pairs) embedded as data URIs with alt text
    and captions. All text is HTML-escaped. Inputs are checked (missing or non-PNG figures,
    malformed results) before anything is written.
    """
    runs = as_runs(results_by_run)
    config_map = _configs(configs)
    figure_entries = _figure_entries(figures)
    anchors = _figure_anchors(figure_entries)
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string")
    if date is None:
        date = datetime.now(timezone.utc)
    if not isinstance(date, datetime):
        raise TypeError(f"date must be a datetime or None, got {type(date).__name__}")
    target = _report_target(out_dir, overwrite)
    tables = all_tables(runs)
    glance = glance_figure(figure_entries, runs)
    extra = [built for build in SECTION_BUILDERS if (built := build(runs)) is not None]

    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n',
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n",
        f"<script>{_SCRIPT}</script>\n</head>\n<body>\n<main>\n",
        f"<h1>{escape(title)}</h1>\n",
        f'<p class="date">Generated <time datetime="{escape(date.isoformat())}">'
        f"{escape(date.strftime('%Y-%m-%d %H:%M %Z').strip())}</time> by torchlap.</p>\n",
        _glance_html(runs, None if glance is None else (*figure_entries[glance], anchors[glance])),
    ]
    parts.append('<section id="runs"><h2>Runs</h2>\n')
    parts.append(render_table(tables[0]))
    if config_map:
        parts.append("<h3>Configurations</h3>\n")
        parts += [_config_html(name, config) for name, config in config_map.items()]
    parts.append("</section>\n")
    for table in tables[1:]:
        heading = _HEADINGS.get(table.id, table.title)
        parts.append(f'<section id="section-{escape(table.id)}"><h2>{escape(heading)}</h2>\n')
        parts += [render_table(part) for part in html_tables([table])]
        parts.append("</section>\n")
    for extra_section in extra:
        parts.append(
            f'<section id="{escape(extra_section.id)}"><h2>{escape(extra_section.heading)}</h2>\n'
            f"{extra_section.html}</section>\n"
        )
    others = [(*entry, anchors[i]) for i, entry in enumerate(figure_entries) if i != glance]
    if others:
        parts.append('<section id="figures"><h2>Figures</h2>\n')
        parts += [_figure_html(*entry) for entry in others]
        parts.append("</section>\n")
    parts.append("</main>\n</body>\n</html>\n")
    # without overwrite, published without replacing: a report.html that appeared while
    # rendering is refused too (FileExistsError), not replaced
    return atomic_write(target, "".join(parts), replace=bool(overwrite))
