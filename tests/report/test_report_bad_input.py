"""The report's Python API on input of the wrong shape: names that are not str, keep-k%
levels that are not percentages, metric flags and counts of the wrong type, a table that is
not a Table, an out_dir that is a file, and a tables.md that exists (each was an
AttributeError/TypeError deep in the rendering, a wrong bold, or a silently replaced file)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from report_synthetic import results_by_run

from torchlap.report import render_table, runs_table, tables_markdown, write_report, write_tables


def _edit(change) -> dict:
    runs = copy.deepcopy(results_by_run())
    change(runs["WS-LAP"])
    return runs


def _int_method(run: dict) -> None:
    run["localization"][5] = run["localization"]["gradcam"]


def _keep_k(level: str):
    def change(run: dict) -> None:
        keep = run["faithfulness"]["gradcam"]["keep_top_k"]
        keep[level] = keep[next(iter(keep))]

    return change


def _metric(key: str, value: object):
    def change(run: dict) -> None:
        run["model"]["accuracy"][key] = value

    return change


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (_int_method, TypeError, r"\['localization'\] keys must be names \(str\).* got 5 \(int\)"),
        (_keep_k("nan"), ValueError, r"\['keep_top_k'\] keys must be percentages in \(0, 100\]"),
        (_keep_k("-5"), ValueError, r"percentages in \(0, 100\] .* got '-5'"),
        (_keep_k("1000"), ValueError, r"percentages in \(0, 100\] .* got '1000'"),
        (_metric("higher_is_better", "no"), TypeError, r"\['higher_is_better'\] must be True or"),
        (_metric("n", -3), TypeError, r"\['accuracy'\]\['n'\] must be a count .* got -3"),
        (_metric("n", "x"), TypeError, r"\['n'\] must be a count"),
        (_metric("n_excluded", 1.5), TypeError, r"\['n_excluded'\] must be a count"),
    ],
)
def test_malformed_names_levels_and_metric_fields_are_named(change, error, match) -> None:
    """Before: an int method name was ``expected string or bytes-like object`` (tables) or
    ``'int' object has no attribute 'replace'`` (report); 'nan', '-5' and '1000' became keep-k%
    columns; ``higher_is_better="no"`` was true, so the highest value was bolded as best."""
    with pytest.raises(error, match=r"results_by_run\['WS-LAP'\].*" + match):
        tables_markdown(_edit(change))


def test_render_table_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"table must be a torchlap.report.Table .* got str"):
        render_table("Table I")  # was: 'str' object has no attribute 'rows'
    with pytest.raises(TypeError, match=r"notes must be True or False, got 'no'"):
        render_table(runs_table(results_by_run()), notes="no")  # was: notes shown


def test_an_out_dir_that_is_a_file_is_named_before_rendering(tmp_path: Path) -> None:
    """Before: ``[Errno 17] File exists`` from mkdir, after the report was rendered."""
    mine = tmp_path / "mine.txt"
    mine.write_text("keep")
    with pytest.raises(NotADirectoryError, match=r"out_dir .*mine\.txt is a file; pass a folder"):
        write_report(mine, results_by_run())
    with pytest.raises(NotADirectoryError, match=r"is inside .*mine\.txt, which is a file"):
        write_report(mine / "sub", results_by_run())
    assert mine.read_text() == "keep"
    (tmp_path / "dl").symlink_to(tmp_path / "nowhere")  # was: [Errno 17] after rendering
    with pytest.raises(NotADirectoryError, match=r"dl is a symlink to nothing; pass a folder"):
        write_report(tmp_path / "dl", results_by_run())
    (tmp_path / "out" / "report.html").mkdir(parents=True)  # was: [Errno 21] after rendering
    with pytest.raises(IsADirectoryError, match=r"report\.html is a folder"):
        write_report(tmp_path / "out", results_by_run(), overwrite=True)


def test_write_tables_does_not_replace_a_file_without_overwrite(tmp_path: Path) -> None:
    """Before: a tables.md torchlap did not write was replaced in silence."""
    target = tmp_path / "tables.md"
    target.write_text("my notes")
    with pytest.raises(FileExistsError, match=r"tables\.md already exists; pass overwrite=True"):
        write_tables(results_by_run(), target)
    assert target.read_text() == "my notes"
    assert write_tables(results_by_run(), target, overwrite=True) == target
    assert target.read_text() == tables_markdown(results_by_run())
    with pytest.raises(TypeError, match=r"overwrite must be True or False"):
        write_tables(results_by_run(), target, overwrite="no")
    with pytest.raises(IsADirectoryError, match=r"is a folder; pass the path of the Markdown"):
        write_tables(results_by_run(), tmp_path)


def test_figures_replace_only_their_own_files(tmp_path: Path) -> None:
    """The plot functions replaced any file at their path, a user's own PNG included; now
    only a figure torchlap wrote (its PNG mark), or any file with overwrite=True. Checked
    before any drawing; a folder at the path is named."""
    from PIL import Image

    from torchlap.report.plots import is_torchlap_figure, plot_iou_bars, plot_keep_k
    from torchlap.report.sanity import plot_sanity_curves

    runs = results_by_run()
    mine = tmp_path / "keep_k.png"
    Image.new("RGB", (4, 4)).save(mine)
    before = mine.read_bytes()
    for plot in (plot_keep_k, plot_iou_bars, plot_sanity_curves):
        with pytest.raises(FileExistsError, match=r"keep_k\.png exists and is not a figure"):
            plot(runs, mine)
        assert mine.read_bytes() == before and not is_torchlap_figure(mine)
    assert plot_keep_k(runs, mine, overwrite=True) == mine and is_torchlap_figure(mine)
    plot_iou_bars(runs, mine)  # torchlap's own figure: replaced without the flag
    with pytest.raises(TypeError, match="overwrite must be True or False, got 'no'"):
        plot_keep_k(runs, mine, overwrite="no")  # type: ignore[arg-type]
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(IsADirectoryError, match=r"folder\.png is a folder"):
        plot_keep_k(runs, tmp_path / "folder.png", overwrite=True)


def test_a_file_that_appears_while_a_figure_is_drawn_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The existence check runs before drawing; a PNG written at the path meanwhile (another
    process, the user) was replaced at publication. Now it is refused, named, and kept;
    torchlap's own figure is still replaced, and any file with overwrite=True."""
    import torchlap.report._figure as figure_module
    import torchlap.report.plots as plots

    target = tmp_path / "keep_k.png"
    draw = figure_module._literal_text

    def draw_while_someone_writes(figure) -> None:
        target.write_bytes(b"my own picture")
        draw(figure)

    monkeypatch.setattr(figure_module, "_literal_text", draw_while_someone_writes)
    with pytest.raises(FileExistsError, match=r"torchlap left it as it is.*keep_k\.png"):
        plots.plot_keep_k(results_by_run(), target)
    assert target.read_bytes() == b"my own picture"
    assert [p.name for p in tmp_path.iterdir()] == ["keep_k.png"]  # no temporary left
    assert plots.plot_keep_k(results_by_run(), target, overwrite=True) == target
    assert plots.is_torchlap_figure(target)
    monkeypatch.setattr(figure_module, "_literal_text", draw)
    plots.plot_iou_bars(results_by_run(), target)  # torchlap's own figure: replaced
    assert plots.is_torchlap_figure(target)


def test_a_report_html_link_to_nothing_is_refused_before_rendering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: exists() is False for a dangling link, so the report was rendered and the
    publication refused it afterwards, with an OS error naming the temporary file."""
    import torchlap.report.html as html_module

    (tmp_path / "report.html").symlink_to(tmp_path / "elsewhere.html")
    rendered = []
    render = html_module.all_tables
    monkeypatch.setattr(html_module, "all_tables", lambda runs: rendered.append(1) or render(runs))
    with pytest.raises(FileExistsError, match=r"report\.html already exists; pass overwrite=True"):
        write_report(tmp_path, results_by_run())
    assert rendered == [] and (tmp_path / "report.html").is_symlink()
    assert write_report(tmp_path, results_by_run(), overwrite=True) == tmp_path / "report.html"
    assert not (tmp_path / "report.html").is_symlink()


def test_a_figure_path_that_is_a_link_to_nothing_is_refused_before_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: drawn, then refused at publication with an OS error."""
    import torchlap.report.plots as plots

    link = tmp_path / "keep_k.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    drawn = []
    monkeypatch.setattr(plots, "_new_figure", lambda *a: drawn.append(1))
    with pytest.raises(FileExistsError, match=r"keep_k\.png exists and is not a figure"):
        plots.plot_keep_k(results_by_run(), link)
    assert drawn == [] and link.is_symlink()
