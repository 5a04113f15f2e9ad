"""`evaluate --sanity --grid-pg` and `compare` with a shuffled-label run: keys, caches, report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, compare_runs, evaluate_run
from torchlap.train import TrainConfig, fit

METHODS = ("lap", "gradcam")


def _train(out: Path, shuffle: bool) -> Path:
    config = TrainConfig(
        data="lesions", out=str(out), arch="smallcnn", lap="auto", supervision="weak",
        epochs=2, lr=3e-3, n_images=120, image_size=32, batch_size=16, progress_bar=False,
        shuffle_labels=shuffle,
    )  # fmt: skip
    return fit(config)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("check_runs") / "real", False)


def _options(**kwargs) -> EvaluateOptions:
    defaults = dict(
        methods=METHODS, max_images=16, max_val_images=8, stability_images=2,
        stability_fractions=(0.2,), batch_size=16, lime_images=0, sanity=True,
        sanity_images=3, grid_pg=True, grid_pg_grids=3, grid_pg_confidence=0.0,
    )  # fmt: skip
    defaults.update(kwargs)
    return EvaluateOptions(**defaults)


def test_evaluate_writes_sanity_and_grid_pointing_game(real_run, tmp_path):
    out = tmp_path / "eval"
    results = evaluate_run(real_run, None, out, _options())
    on_disk = json.loads((out / "results.json").read_text())
    for method in METHODS:
        sanity = on_disk["sanity"][method]
        steps = sanity["cascading"]["steps"]
        assert steps[0] == "net.fc" and steps == sanity["units_forward_order"][::-1]
        assert len(sanity["cascading"]["spearman_abs"]) == len(steps)
        assert len(sanity["independent"]["ssim"]) == len(steps)
        assert sanity["threshold"] == 0.5 and isinstance(sanity["passed"], bool)
        assert sanity["summary"]["spearman_abs"] == sanity["cascading"]["spearman_abs"][-1]
    setup = on_disk["grid_pointing_setup"]
    if "skipped" in setup:  # the tiny model got no image of one class right
        assert "classes" in setup["skipped"] and on_disk["grid_pointing_game"] == {}
    else:
        assert setup["shape"] == [1, 2]  # lesions has 2 classes: auto = 1x2
        for method in METHODS:
            game = on_disk["grid_pointing_game"][method]
            assert game["n"] == 3 * 2 and 0.0 <= game["mean"] <= 1.0
            assert set(game["distribution"]) == {"std", "min", "q25", "median", "q75", "max"}
        assert (out / "figures" / "grid_pg_examples.png").is_file()
    assert (out / "figures" / "sanity_curves.png").is_file()
    html = (out / "report.html").read_text()
    assert 'id="sanity-checks"' in html and "Spearman |map| at full randomization" in html
    # cached: a second evaluation reads the per-method files and gives the same numbers
    again = evaluate_run(real_run, None, out, _options())
    assert again["sanity"] == results["sanity"]
    assert (out / "methods" / "sanity_lap.json").is_file()


def test_a_damaged_sanity_cache_is_recomputed(real_run, tmp_path, caplog):
    """A sanity cache edited with its fingerprint kept was reused as it was: a string where
    the summary's number belongs reached results.json and failed the report after all the
    work. It is now checked as the report reads it, and recomputed."""
    out = tmp_path / "eval"
    options = _options(methods=("gradcam",), grid_pg=False, sanity_modes=("cascading",))
    evaluate_run(real_run, None, out, options, write_report=False)
    cache = out / "methods" / "sanity_gradcam.json"
    cached = json.loads(cache.read_text())
    good = cached["results"]["summary"]["spearman_abs"]
    cached["results"]["summary"]["spearman_abs"] = "high"
    cache.write_text(json.dumps(cached))
    with caplog.at_level("WARNING", logger="torchlap.evaluate.common"):
        results = evaluate_run(real_run, None, out, options, write_report=False)
    assert "sanity gradcam" in caplog.text and "is invalid" in caplog.text, caplog.text
    assert "['summary']['spearman_abs'] must be a number" in caplog.text
    assert results["sanity"]["gradcam"]["summary"]["spearman_abs"] == pytest.approx(good)
    assert json.loads(cache.read_text())["results"]["summary"]["spearman_abs"] == good


@pytest.mark.slow
def test_compare_puts_the_shuffled_run_against_the_real_one(real_run, tmp_path):
    runs = {"real": real_run, "shuffled": _train(tmp_path / "shuffled", True)}
    options = _options(grid_pg=False, sanity_modes=("cascading",))
    compare_runs([runs["real"], runs["shuffled"]], None, tmp_path / "cmp", options)
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    entry = comparison["runs"]["shuffled"]["data_randomization"]
    assert entry["against"] == "real" and entry["target"] == "label"
    assert set(entry["methods"]) == set(METHODS)
    for values in entry["methods"].values():
        assert -1.0 <= values["spearman_abs"]["mean"] <= 1.0 and values["spearman_abs"]["n"] == 3
    assert "data_randomization" not in comparison["runs"]["real"]
    config = json.loads((runs["shuffled"] / "config.json").read_text())
    assert config["shuffle_labels"] is True


def test_cli_options_and_refusals(real_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--run", str(real_run), "--out",
                                 str(tmp_path / "e"), "--methods", "gradcam", "--sanity",
                                 "--sanity-threshold", "2"])  # fmt: skip
    assert result.exit_code != 0 and "sanity_threshold" in result.output
    with pytest.raises(ValueError, match="grid shape"):
        _options(grid_pg_shape="2by2").validate()
    with pytest.raises(ValueError, match="sanity_modes"):
        _options(sanity_modes=("downward",)).validate()


def test_a_grid_of_more_cells_than_classes_is_refused_before_any_work(real_run, tmp_path):
    """A 2x2 grid on the 2-class lesions was a game skipped in results.json, exit 0, after
    every method ran."""
    out = tmp_path / "e"
    with pytest.raises(ValueError, match=r"--grid-pg-shape 2x2: a 2x2 grid needs 4 distinct "):
        evaluate_run(real_run, None, out, _options(grid_pg_shape="2x2", sanity=False))
    assert not out.exists()
    result = CliRunner().invoke(app, ["evaluate", "--run", str(real_run), "--out", str(out),
                                      "--methods", "gradcam", "--grid-pg", "--grid-pg-shape",
                                      "3x3"])  # fmt: skip
    assert result.exit_code == 2
    assert (
        "Error: --grid-pg-shape 3x3: a 3x3 grid needs 9 distinct classes, the data has 2; "
        "use a smaller grid (e.g. 1x2) or 'auto'" in result.output
    )
    assert not out.exists()


def test_checks_report_progress(real_run, tmp_path, caplog, monkeypatch):
    # the sanity checks take minutes on real models: they show progress like the evaluation
    # does (plain lines here, as when stderr is a log file)
    from torchlap import logs

    monkeypatch.setattr(logs, "PLAIN_INTERVAL_SECONDS", 0.0)
    logs.set_progress_mode("plain")
    try:
        with caplog.at_level(logging.INFO, logger="torchlap.progress"):
            evaluate_run(real_run, None, tmp_path / "eval", _options(methods=("gradcam",)))
    finally:
        logs.set_progress_mode("auto")
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("cascading randomization: ") for line in lines), lines
    assert any(line.startswith("independent randomization: ") for line in lines), lines
    assert any(line.startswith("sanity checks gradcam: 1/1 methods") for line in lines), lines
    assert any("(sanity checks gradcam: 0/1 methods" in line for line in lines), lines
