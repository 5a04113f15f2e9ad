"""The report reads NaN/inf numbers as missing (n/a, no verdict), checks ``results["maps"]``,
and does not replace a report.html without ``overwrite``."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
from report_synthetic import lap_results, results_by_run

from torchlap.report import tables_markdown, write_report

NON_FINITE = re.compile(r"(?<![A-Za-z_])-?(nan|inf)(?![A-Za-z_])", re.IGNORECASE)


def _shown_text(html: str) -> str:
    """The visible text of a report (tags, scripts, figures and JSON configs left out)."""
    html = re.sub(r"<script>.*?</script>|<pre>.*?</pre>|data:image/png;base64,[^\"]+", "", html,
                  flags=re.S)  # fmt: skip
    return re.sub(r"<[^>]+>", " ", html)


def _sanity(spearman: float, threshold: float, passed: bool) -> dict:
    steps = ["net.fc", "net.conv1"]
    return {
        "threshold": threshold,
        "cascading": {"steps": steps, "spearman_abs": [0.5, spearman], "ssim": [0.4, 0.2]},
        "summary": {"spearman_abs": spearman, "ssim": 0.2},
        "passed": passed,
    }


def _data_randomization(threshold: float, spearman: float) -> dict:
    return {
        "threshold": threshold,
        "n_images": 2,
        "against": "bb",
        "methods": {
            "gradcam": {"spearman_abs": {"mean": spearman}, "ssim": {"mean": 0.1}, "passed": True}
        },
    }


def _run(**changes: object) -> dict:
    run = copy.deepcopy(lap_results())
    run.update(changes)
    return run


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_sanity_numbers_give_no_verdict(tmp_path: Path, bad: float) -> None:
    # "pass (< nan)": a verdict shown against a threshold that is not a number
    run = _run(
        sanity={"gradcam": _sanity(0.1, bad, True), "lap": _sanity(bad, 0.5, True)},
        data_randomization=_data_randomization(bad, 0.2),
    )
    markdown = tables_markdown({"r": run})
    assert "| GC | 0.100 | 0.200 | n/a |" in markdown  # threshold not finite: no verdict
    assert "| LAP | n/a | 0.200 | n/a (&lt; 0.5) |" in markdown  # value not finite: no verdict
    html = write_report(tmp_path, {"r": run}).read_text(encoding="utf-8")
    assert "pass (&lt;" not in html and "Spearman below n/a" in html
    assert not NON_FINITE.findall(markdown) and not NON_FINITE.findall(_shown_text(html))


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_non_finite_counts_and_tolerances_are_shown_as_missing(tmp_path: Path, bad: float) -> None:
    run = _run()
    run["data"]["n_images"] = bad
    run["model"]["balanced_accuracy"]["n"] = bad
    run["maps"] = {"gradcam": {"n": 4, "n_flat": 3, "tolerance": bad}}
    markdown = tables_markdown({"r": run})
    html = _shown_text(write_report(tmp_path, {"r": run}).read_text(encoding="utf-8"))
    assert "| r | shapes | test | n/a |" in markdown  # the runs table's images
    assert "balanced, n = n/a" in html
    assert "3 of 4 maps flat." in html  # no "constant within nan"
    assert not NON_FINITE.findall(markdown) and not NON_FINITE.findall(html)


def test_results_are_not_changed_by_reading_them(tmp_path: Path) -> None:
    run = _run(sanity={"gradcam": _sanity(0.1, math.nan, True)})
    write_report(tmp_path, {"r": run})
    assert math.isnan(run["sanity"]["gradcam"]["threshold"])  # the caller's dict is its own


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        ("x", r"results_by_run\['r'\]\['maps'\] must be a dict, got str"),
        ([1], r"\['maps'\] must be a dict, got list"),
        ({"gradcam": 5}, r"\['maps'\]\['gradcam'\] must be a dict, got int"),
        ({"gradcam": {"n": "x"}}, r"\['maps'\]\['gradcam'\]\['n'\] must be a number or None"),
    ],
)
def test_maps_of_the_wrong_type_are_named(tmp_path: Path, maps: object, message: str) -> None:
    # used to fail inside table_data.flat_maps with a bare AttributeError
    with pytest.raises(TypeError, match=message):
        write_report(tmp_path, {"r": _run(maps=maps)})
    assert not (tmp_path / "report.html").exists()


def test_write_report_does_not_replace_a_report_without_overwrite(tmp_path: Path) -> None:
    mine = tmp_path / "report.html"
    mine.write_text("<p>my own report</p>")
    with pytest.raises(FileExistsError, match=r"report\.html already exists; pass overwrite=True"):
        write_report(tmp_path, {"r": _run()})
    assert mine.read_text() == "<p>my own report</p>"
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        write_report(tmp_path, {"r": _run()}, overwrite="yes")  # type: ignore[arg-type]
    assert write_report(tmp_path, {"r": _run()}, overwrite=True) == mine
    assert "my own report" not in mine.read_text(encoding="utf-8")


def test_a_report_that_appears_while_rendering_is_not_replaced(tmp_path: Path, monkeypatch) -> None:
    """The existence check runs before rendering; a report.html written meanwhile (another
    process) is refused at publication too, not replaced."""
    import torchlap.report.html as html_module

    mine = tmp_path / "report.html"
    render = html_module.all_tables

    def render_while_someone_writes(runs):
        mine.write_text("<p>written meanwhile</p>")
        return render(runs)

    monkeypatch.setattr(html_module, "all_tables", render_while_someone_writes)
    with pytest.raises(FileExistsError):
        write_report(tmp_path, {"r": _run()})
    assert mine.read_text() == "<p>written meanwhile</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary left


@pytest.mark.parametrize("protocol", ["x", 8, [8], True])
def test_a_protocol_that_is_not_a_dict_is_named(tmp_path, protocol) -> None:
    """Before: ``AttributeError: 'str' object has no attribute 'get'`` from the at-a-glance
    revision warning, with no key named."""
    results = results_by_run()
    results["vanilla"]["protocol"] = protocol
    with pytest.raises(
        TypeError, match=r"results_by_run\['vanilla'\]\['protocol'\] must be a dict"
    ):
        write_report(tmp_path, results)
    assert not (tmp_path / "report.html").exists()
