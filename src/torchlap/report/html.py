"""One self-contained HTML report per evaluation: ``report.html`` with the run
configurations, every table of :mod:`torchlap.report.tables` (rendered from the same
:class:`~torchlap.report.tables.Table` data as the Markdown) and the figures embedded as
base64 PNG data URIs.

The page loads nothing from outside (inline CSS and script, a Content-Security-Policy that
allows only inline style/script and ``data:`` images), so it can be mailed or archived as
one file. It is responsive: a max-width container, tables that scroll horizontally inside
their own box on narrow screens, images scaled to the width.

A small inline script records on ``<body>``, once the page has loaded, how many tables and
images it has and how many images decoded (``data-tables``, ``data-images-total``,
``data-images-loaded``) and whether the page overflows horizontally
(``data-page-overflow``); a headless browser's ``--dump-dom`` shows them, which is how the
tests check the rendered page.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from torchlap.report._common import as_runs, atomic_write_text
from torchlap.report.tables import Table, all_tables

__all__ = ["REPORT_NAME", "render_table", "write_report"]

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
td.text { text-align: left; }
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

# Records what the browser rendered (see the module docstring).
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var root = document.documentElement;
  var data = document.body.dataset;
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
    "table-model-lap": "Model and LAP layers as predictors",
    "table-localization": "Localization: IoU",
    "table-other-localization": "Localization: other metrics",
    "table-faithfulness": "Faithfulness",
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
        cells += [f'<th scope="col">{escape(c.label)}</th>' for c in table.columns]
        return "<tr>" + "".join(cells) + "</tr>"
    top = [f'<th scope="col" rowspan="2">{escape(label)}</th>' for label in table.stub]
    bottom = []
    index = 0
    while index < len(table.columns):
        column = table.columns[index]
        if not column.group:
            top.append(f'<th scope="col" rowspan="2">{escape(column.label)}</th>')
            index += 1
            continue
        span = 1
        while (
            index + span < len(table.columns) and table.columns[index + span].group == column.group
        ):
            span += 1
        top.append(f'<th scope="colgroup" colspan="{span}">{escape(column.group)}</th>')
        bottom += [
            f'<th scope="col">{escape(c.label)}</th>' for c in table.columns[index : index + span]
        ]
        index += span
    return "<tr>" + "".join(top) + "</tr>\n<tr>" + "".join(bottom) + "</tr>"


def render_table(table: Table) -> str:
    """HTML of a :class:`~torchlap.report.tables.Table` (same cells and bolding as its
    Markdown), wrapped in a horizontally scrollable box, with its notes below."""
    body = []
    for row in table.rows:
        cells = [f'<th scope="row">{escape(label)}</th>' for label in row.labels]
        for cell, column in zip(row.cells, table.columns, strict=True):
            text = escape(cell.text)
            if cell.bold:
                text = f"<strong>{text}</strong>"
            title = f' title="{escape(cell.note)}"' if cell.note else ""
            align = "" if column.numeric else ' class="text"'
            cells.append(f"<td{align}{title}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f"<p>{escape(note)}</p>" for note in table.notes)
    return (
        f'<div class="table-wrap"><table id="{escape(table.id)}">\n'
        f"<caption><b>{escape(table.title)}.</b> {escape(table.caption)}</caption>\n"
        f"<thead>\n{_header_html(table)}\n</thead>\n"
        "<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table></div>\n"
        f'<div class="notes">{notes}</div>\n'
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


def _figure_html(path: Path, caption: str, data: bytes) -> str:
    width, height = _png_size(data)
    source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure id="figure-{escape(path.stem)}"><img src="{source}" alt="{escape(caption)}" '
        f'width="{width}" height="{height}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>\n"
    )


# ------------------------------------------------------------------------------- report


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


def write_report(
    out_dir: str | os.PathLike[str],
    results_by_run: object,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    figures: Sequence[str | os.PathLike[str] | tuple[str | os.PathLike[str], str]] = (),
    title: str = "torchlap evaluation report",
    *,
    date: datetime | None = None,
) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path.

    Contents: ``title`` and ``date`` (default: now, UTC); the runs table and each run's
    configuration (collapsible, pretty JSON); every table of
    :func:`torchlap.report.tables.all_tables` (paper 000 Tables I and II, other
    localization metrics, faithfulness, stability, timing), each with an id and a caption;
    the ``figures`` (PNG paths, or ``(path, caption)`` pairs) embedded as data URIs with
    alt text and captions. All text is HTML-escaped. Inputs are checked (missing or
    non-PNG figures, malformed results) before anything is written.
    """
    runs = as_runs(results_by_run)
    config_map = _configs(configs)
    figure_entries = _figure_entries(figures)
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string")
    if date is None:
        date = datetime.now(timezone.utc)
    if not isinstance(date, datetime):
        raise TypeError(f"date must be a datetime or None, got {type(date).__name__}")
    tables = all_tables(runs)

    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n',
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n",
        f"<script>{_SCRIPT}</script>\n</head>\n<body>\n<main>\n",
        f"<h1>{escape(title)}</h1>\n",
        f'<p class="date">Generated <time datetime="{escape(date.isoformat())}">'
        f"{escape(date.strftime('%Y-%m-%d %H:%M %Z').strip())}</time> by torchlap.</p>\n",
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
        parts.append(render_table(table))
        parts.append("</section>\n")
    if figure_entries:
        parts.append('<section id="figures"><h2>Figures</h2>\n')
        parts += [_figure_html(*entry) for entry in figure_entries]
        parts.append("</section>\n")
    parts.append("</main>\n</body>\n</html>\n")
    return atomic_write_text(Path(out_dir) / REPORT_NAME, "".join(parts))
