"""write_report's arguments: each refusal names what was wrong and what is accepted, before
anything is written; the accepted forms (no figures, a (path, caption) pair, the default date)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from report_synthetic import lap_results

from torchlap.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _runs() -> dict:
    return {"WS-LAP": lap_results()}


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"figures": "keep_k.png"}, TypeError, r"figures must be a list of PNG paths or \(path, "
         r"caption\) pairs, got str"),
        ({"figures": Path("keep_k.png")}, TypeError, r"figures must be a list .* got \w*Path"),
        ({"figures": 3}, TypeError, r"figures must be a list .* got int"),
        ({"figures": [3]}, TypeError, r"each figure must be a path or \(path, caption\), got 3"),
        ({"figures": [("a.png", "b", "c")]}, TypeError, r"each figure must be a path or \(path"),
        ({"title": ""}, ValueError, r"title must be a non-empty string"),
        ({"title": "  "}, ValueError, r"title must be a non-empty string"),
        ({"title": 5}, ValueError, r"title must be a non-empty string"),
        ({"date": "2024-05-01"}, TypeError, r"date must be a datetime or None, got str"),
        ({"configs": "epochs=2"}, TypeError, r"configs must be a dict of run name -> config"),
        ({"configs": {1: {}}}, TypeError, r"configs must map run names \(str\) to config dicts"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_before_writing(
    tmp_path: Path, arguments: dict, error: type, match: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        write_report(out, _runs(), **arguments)
    assert not out.exists()


def test_figures_that_are_no_png_files_are_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.png"  # the signature, but no complete IHDR to read the size from
    short.write_bytes(PNG + b"\x00" * 15)  # 23 bytes
    gif = tmp_path / "plot.gif"
    gif.write_bytes(b"GIF89a" + b"\x00" * 100)
    (tmp_path / "figs.png").mkdir()
    for path in (short, gif):
        with pytest.raises(ValueError, match=rf"{path.stem}\.\w+' is not a PNG file \(only PNG"):
            write_report(tmp_path / "out", _runs(), figures=[path])
    for path in (tmp_path / "missing.png", tmp_path / "figs.png"):
        with pytest.raises(FileNotFoundError, match=rf"figure '.*{path.stem}\.png' does not exist"):
            write_report(tmp_path / "out", _runs(), figures=[path])
    assert not (tmp_path / "out").exists()


def test_no_figures_and_the_default_date(tmp_path: Path) -> None:
    before = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    text = write_report(tmp_path, _runs(), figures=None).read_text(encoding="utf-8")
    after = datetime.now(timezone.utc)
    stamp = text.split('<time datetime="')[1].split('"')[0]
    assert before <= datetime.fromisoformat(stamp) <= after
    assert "<img" not in text and 'id="figures"' not in text
    # one run: its cards are not headed by its name (several runs: one heading each)
    glance = text.split('<section id="glance">')[1].split("</section>")[0]
    assert "<h3>" not in glance and glance.count('class="glance-run"') == 1
