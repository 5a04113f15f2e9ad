"""`torchlap evaluate` / `compare` on tiny trained runs: files, keys, resume, errors."""

import json
import logging
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, common, compare_runs, evaluate_run
from torchlap.train import TrainConfig, fit

FAST_METHODS = ("lap", "gradcam", "rise")


def _train(out: Path, lap: str, supervision: str) -> Path:
    config = TrainConfig(
        data="lesions",
        out=str(out),
        arch="smallcnn",
        lap=lap,
        supervision=supervision,
        epochs=1,
        n_images=120,
        image_size=32,
        batch_size=16,
        progress_bar=False,
    )
    return fit(config)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    return {
        "lap": _train(root / "lap", "auto", "weak"),
        "vanilla": _train(root / "vanilla", "none", "none"),
    }


def _options(**kwargs) -> EvaluateOptions:
    defaults = dict(
        methods=FAST_METHODS,
        max_images=12,
        max_val_images=12,
        stability_images=3,
        stability_fractions=(0.1, 0.3),
        method_options={"rise": {"n_masks": 40, "mask_batch_size": 40}},
        batch_size=8,
    )
    defaults.update(kwargs)
    return EvaluateOptions(**defaults)


def test_evaluate_writes_the_contract_files_and_resumes(runs, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    computed: list[str] = []
    results = evaluate_run(
        runs["lap"], None, out, _options(), on_method=lambda m, s: computed.append(m)
    )
    assert computed == list(FAST_METHODS)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    for key in ("model", "lap_predictors", "localization", "faithfulness", "stability"):
        assert key in on_disk
    for method in FAST_METHODS:
        localization = on_disk["localization"][method]
        assert set(localization) >= {
            "iou_threshold",
            "iou_topk",
            "ebpg",
            "miou_top20",
            "bbox",
            "pointing_game",
        }
        for metric in ("iou_topk", "ebpg"):
            assert set(localization[metric]) >= {"value", "higher_is_better", "n"}
            assert localization[metric]["higher_is_better"] is True
        faithfulness = on_disk["faithfulness"][method]
        assert set(faithfulness) >= {"keep_top_k", "drop", "increase", "win"}
        assert set(faithfulness["keep_top_k"]) == {"10", "30", "50", "70", "90"}
        assert faithfulness["drop"]["higher_is_better"] is False
        assert set(on_disk["stability"][method]) == {"0.1", "0.3"}
    assert on_disk["localization"]["lap"]["threshold"] == 0.5
    assert on_disk["model"]["balanced_accuracy"]["n"] == on_disk["data"]["n_images"] > 0
    assert list(on_disk["lap_predictors"])  # one entry per LAP layer
    for name in ("tables.md", "report.html", "figures/keep_k.png", "figures/iou_bars.png"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "overlays_lap.png").is_file()
    assert "Table II" in (out / "tables.md").read_text()

    computed.clear()  # a second call reuses every method ...
    evaluate_run(runs["lap"], None, out, _options(), on_method=lambda m, s: computed.append(m))
    assert computed == []
    computed.clear()  # ... unless forced, or the settings changed
    evaluate_run(runs["lap"], None, out, _options(methods=("gradcam",)), force=True,
                 on_method=lambda m, s: computed.append(m))  # fmt: skip
    assert computed == ["gradcam"]
    evaluate_run(runs["lap"], None, out, _options(methods=("gradcam",), ks=(20,)),
                 on_method=lambda m, s: computed.append(m))  # fmt: skip
    assert computed == ["gradcam", "gradcam"]
    # ... or a metric's definition changed (METRICS_REVISION)
    monkeypatch.setattr(common, "METRICS_REVISION", common.METRICS_REVISION + 1)
    evaluate_run(runs["lap"], None, out, _options(methods=("gradcam",), ks=(20,)),
                 on_method=lambda m, s: computed.append(m))  # fmt: skip
    assert computed == ["gradcam", "gradcam", "gradcam"]


def _drop_stability(text: str) -> str:
    cached = json.loads(text)
    del cached["results"]["stability"]
    return json.dumps(cached)


def _edit_value(text: str, value: str) -> str:
    cached = json.loads(text)
    cached["results"]["localization"]["iou_topk"] = {"value": "@"}
    return json.dumps(cached).replace('"@"', value)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda text: _edit_value(text, '"abc"'), r"is invalid .*\['value'\] must be a number"),
        (lambda text: _edit_value(text, "-5.0"), "holds results that are not the ones torchlap"),
        (_drop_stability, r"holds results that are not the ones torchlap wrote \(edited"),
        (lambda text: _edit_value(text, "NaN"), r"is unreadable .*NaN is not a JSON number"),
        (lambda text: b"\xff" + text.encode(), r"is unreadable .*utf-8"),
    ],
    ids=["string value", "a valid number", "a section deleted", "nan", "not utf-8"],
)
def test_a_damaged_method_cache_is_recomputed(runs, tmp_path, caplog, damage, why):
    """A cache edited with its fingerprint kept was reused, then results.json was rewritten
    with the bad value and the report failed; non-UTF-8 bytes and NaN failed without a name;
    a valid number edited (IoU -5) or a section deleted was reused in silence."""
    out = tmp_path / "eval"
    options = _options(methods=("gradcam",), max_images=4, max_val_images=4, stability_images=1)
    evaluate_run(runs["lap"], None, out, options, write_report=False)
    cache = out / "methods" / "gradcam.json"
    damaged = damage(cache.read_text())
    if isinstance(damaged, bytes):
        cache.write_bytes(damaged)
    else:
        cache.write_text(damaged)
    computed: list[str] = []
    with caplog.at_level("WARNING", logger="torchlap.evaluate.common"):
        results = evaluate_run(runs["lap"], None, out, options, write_report=False,
                               on_method=lambda m, s: computed.append(m))  # fmt: skip
    assert computed == ["gradcam"]
    assert re.search(re.escape(str(cache)) + " " + why, caplog.text), caplog.text
    value = results["localization"]["gradcam"]["iou_topk"]["value"]
    assert isinstance(value, float)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["localization"]["gradcam"]["iou_topk"]["value"] == value
    rewritten = json.loads(cache.read_text())["results"]["localization"]["iou_topk"]
    # the bootstrap interval is the run's, computed after every method from the cached scores
    reported = dict(results["localization"]["gradcam"]["iou_topk"])
    assert reported.pop("interval") is not None
    assert rewritten == reported


def test_invalid_results_are_not_written(runs, tmp_path, monkeypatch):
    """results.json is checked as the report reads it before it is replaced."""
    import torchlap.evaluate.core as core

    out = tmp_path / "eval"
    options = _options(methods=("gradcam",), max_images=4, max_val_images=4, stability_images=1)
    evaluate_run(runs["lap"], None, out, options, write_report=False)
    before = (out / "results.json").read_text()
    original = core._results_head
    monkeypatch.setattr(core, "_results_head", lambda *a: {**original(*a), "notes": {"x": 5}})
    with pytest.raises(TypeError, match=r"\['notes'\]\['x'\] must be a text"):
        evaluate_run(runs["lap"], None, out, options, write_report=False)
    assert (out / "results.json").read_text() == before


def test_split_val_says_its_thresholds_were_fitted_on_the_evaluated_images(runs, tmp_path, caplog):
    """--split val scores the global thresholds on the images they were fitted on (they are
    always fitted on "val"): allowed, but said (it used to pass without a word)."""
    quick = dict(methods=("gradcam",), examples=False, stability_images=1, max_images=6)
    with caplog.at_level(logging.WARNING):
        results = evaluate_run(runs["lap"], None, tmp_path / "val", _options(split="val", **quick),
                               write_report=False)  # fmt: skip
    (note,) = results["notes"]["thresholds"]
    assert "fitted on the validation images, the very images evaluated" in note
    assert "--split val: the post-hoc methods' global thresholds" in caplog.text
    results = evaluate_run(runs["lap"], None, tmp_path / "test", _options(**quick),
                           write_report=False)  # fmt: skip
    assert "thresholds" not in results.get("notes", {})


def test_vanilla_run_skips_lap_and_compare_makes_one_table(runs, tmp_path):
    report = compare_runs(
        [runs["vanilla"], runs["lap"]],
        "lesions",
        tmp_path / "cmp",
        _options(methods=("lap", "gradcam")),
    )
    assert report.is_file()
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(comparison["runs"]) == {"vanilla", "lap"}
    assert comparison["runs"]["vanilla"]["skipped"] == {"lap": "the model has no LAP layer"}
    assert comparison["runs"]["vanilla"]["lap_predictors"] == {}
    tables = (tmp_path / "cmp" / "tables.md").read_text()
    assert "| vanilla |" in tables and "| lap |" in tables


def test_progress_counts_only_the_methods_that_run(runs, tmp_path, caplog, monkeypatch):
    # LAP does not apply to the vanilla model: the counter says 1/1 methods, not 2/2 with one
    # of them never shown
    import logging

    from torchlap import logs

    monkeypatch.setattr(logs, "PLAIN_INTERVAL_SECONDS", 0.0)
    logs.set_progress_mode("plain")
    try:
        with caplog.at_level(logging.INFO, logger="torchlap.progress"):
            results = evaluate_run(
                runs["vanilla"], None, tmp_path / "eval", _options(methods=("lap", "gradcam"))
            )
    finally:
        logs.set_progress_mode("auto")
    assert results["skipped"] == {"lap": "the model has no LAP layer"}
    lines = [record.getMessage() for record in caplog.records]
    counted = [line for line in lines if line.startswith("evaluating ")]
    assert any(line.startswith("evaluating gradcam: 1/1 methods") for line in counted), lines
    assert not any("/2 methods" in line for line in lines), lines


def test_bad_options_fail_before_any_work(runs, tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        evaluate_run(runs["lap"], None, tmp_path / "x", _options(methods=("gradcamm",)))
    with pytest.raises(ValueError, match="split"):
        evaluate_run(runs["lap"], None, tmp_path / "x", _options(split="dev"))
    with pytest.raises(FileNotFoundError, match="not a torchlap run folder"):
        evaluate_run(tmp_path, None, tmp_path / "x", _options())
    with pytest.raises(ValueError, match="classes"):
        evaluate_run(runs["lap"], "digits", tmp_path / "x", _options())
    assert not (tmp_path / "x").exists()
    # option values, layers and choices: named before any method runs (they used to fail when
    # the method's turn came, after LAP's results were written)
    late = [
        ({"rise": {"n_masks": 40, "grid_size": 0}}, ValueError, r"the options of rise .*grid_size"),
        ({"gradcam": {"layer": "nosuch"}}, ValueError, r"the options of gradcam .*unknown layer"),
        ({"gradcam": {"layer": "net.fc"}}, ValueError, r"'net.fc' outputs shape \(B, 2\); GradCam"),
        ({"lap": {"threshold": "abc"}}, TypeError, r"the options of lap .*threshold must be a num"),
    ]  # fmt: skip
    for method_options, error, message in late:
        with pytest.raises(error, match=message):
            evaluate_run(runs["lap"], None, tmp_path / "x", _options(method_options=method_options))
        assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match=r"baseline must be one of 'zero', 'mean', 'blur'"):
        evaluate_run(runs["lap"], None, tmp_path / "x", _options(baseline="foo"))
    with pytest.raises(ValueError, match=r"check_methods: none of gradcam is among the evaluated"):
        checks = _options(methods=("lap",), sanity=True, check_methods=("gradcam",))
        evaluate_run(runs["lap"], None, tmp_path / "x", checks)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="distinct names"):
        compare_runs([runs["lap"], runs["lap"]], None, tmp_path / "y", _options())
    # runs trained on other data would share one table without a word: refused unless --data
    import shutil

    other = tmp_path / "other"
    shutil.copytree(runs["lap"], other)
    config = json.loads((other / "config.json").read_text())
    config["train"]["data"] = "digits"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"trained on different data \(lap: lesions, other: "):
        compare_runs([runs["lap"], other], None, tmp_path / "y", _options())
    assert not (tmp_path / "y").exists()


def test_cli_evaluate_rejects_unknown_method(runs):
    result = CliRunner().invoke(app, ["evaluate", "--run", str(runs["lap"]), "--methods", "nope"])
    assert result.exit_code != 0
    assert "unknown method" in result.output
