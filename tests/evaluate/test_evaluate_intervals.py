"""The bootstrap intervals of an evaluation: each localization mean's, and the paired lead of
the own-map method (LAP) over every other method, from the per-image scores the methods keep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.metrics import bootstrap_interval, paired_difference


def _options(**kwargs) -> EvaluateOptions:
    settings = dict(
        methods=("lap", "gradcam", "guided_backprop"), max_images=12, max_val_images=8,
        stability_images=2, stability_fractions=(0.1,), batch_size=8, lime_images=0,
    )  # fmt: skip
    return EvaluateOptions(**(settings | kwargs))


def _cached_scores(out: Path, method: str, metric: str) -> torch.Tensor:
    cached = json.loads((out / "methods" / f"{method}.json").read_text())["results"]
    values = cached["per_sample"][metric]
    return torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float64)


def test_intervals_and_paired_leads_come_from_the_cached_scores(lap_run, tmp_path):
    out = tmp_path / "eval"
    options = _options(bootstrap_resamples=300, bootstrap_level=0.9, seed=4)
    evaluate_run(lap_run, out=out, options=options, write_report=False)
    results = json.loads((out / "results.json").read_text())
    settings = {"level": 0.9, "resamples": 300, "seed": 4}
    for method in options.methods:
        for metric in ("iou_threshold", "iou_topk", "ebpg", "pointing_game"):
            entry = results["localization"][method][metric]
            if entry["value"] is None:  # IoU by thresholding when no threshold could be fitted
                assert metric == "iou_threshold" and "interval" not in entry, entry
                continue
            scores = _cached_scores(out, method, metric)
            # the mean the metric reports is the mean of the scores the interval resamples
            assert entry["value"] == pytest.approx(float(scores.nanmean()))
            assert entry["interval"] == bootstrap_interval(scores, **settings)
            low, high = entry["interval"]
            assert low <= entry["value"] <= high
    paired = results["paired"]
    assert {k: paired[k] for k in settings} == settings
    assert list(paired["references"]) == ["lap"]  # the own-map method; Grad-CAM and GBP are not
    leads = paired["references"]["lap"]["iou_topk"]
    assert list(leads) == ["gradcam", "guided_backprop"]
    for other, lead in leads.items():
        expected = paired_difference(
            _cached_scores(out, "lap", "iou_topk"), _cached_scores(out, other, "iou_topk"),
            **settings,
        )  # fmt: skip
        assert lead == expected
        assert lead["n"] == results["localization"]["lap"]["iou_topk"]["n"]


def test_other_bootstrap_settings_reuse_every_method(lap_run, tmp_path):
    """The intervals are the run's, computed from the cached per-image scores: new settings
    recompute no map; 0 resamples writes no interval and no paired section."""
    out = tmp_path / "eval"
    evaluate_run(lap_run, out=out, options=_options(), write_report=False)
    computed: list[str] = []
    results = evaluate_run(
        lap_run, out=out, options=_options(bootstrap_resamples=0), write_report=False,
        on_method=lambda method, seconds: computed.append(method),
    )  # fmt: skip
    assert computed == []
    assert "paired" not in results
    assert all("interval" not in entry for entry in results["localization"]["lap"].values()
               if isinstance(entry, dict))  # fmt: skip
    results = evaluate_run(
        lap_run, out=out, options=_options(bootstrap_level=0.5), write_report=False,
        on_method=lambda method, seconds: computed.append(method),
    )  # fmt: skip
    assert computed == []
    narrow = results["localization"]["lap"]["iou_topk"]["interval"]
    wide = evaluate_run(lap_run, out=out, options=_options(), write_report=False)
    wide = wide["localization"]["lap"]["iou_topk"]["interval"]
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]


def test_a_cache_without_per_image_scores_is_recomputed(lap_run, tmp_path, caplog):
    """A method cached by a torchlap that kept only IoU top-K per image has nothing for the
    intervals: it is recomputed, and the log says why."""
    out = tmp_path / "eval"
    options = _options(methods=("gradcam",))
    evaluate_run(lap_run, out=out, options=options, write_report=False)
    cache = out / "methods" / "gradcam.json"
    cached = json.loads(cache.read_text())
    cached["results"]["per_sample_iou_topk"] = cached["results"].pop("per_sample")["iou_topk"]
    cache.write_text(json.dumps(cached))
    computed: list[str] = []
    with caplog.at_level("WARNING", logger="torchlap.evaluate.common"):
        results = evaluate_run(
            lap_run, out=out, options=options, write_report=False,
            on_method=lambda method, seconds: computed.append(method),
        )  # fmt: skip
    assert computed == ["gradcam"]
    assert "has no per-image scores" in caplog.text
    assert results["localization"]["gradcam"]["iou_topk"]["interval"] is not None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bootstrap_resamples", -1, r"bootstrap_resamples must be an int from 0 \(no interv"),
        ("bootstrap_resamples", 2.5, "bootstrap_resamples must be an int from 0"),
        ("bootstrap_resamples", 10**7, "to 1000000, got 10000000"),
        ("bootstrap_level", 1.0, r"bootstrap_level must be a coverage in \(0, 1\)"),
        ("bootstrap_level", math.nan, r"bootstrap_level must be a coverage in \(0, 1\)"),
        ("bootstrap_level", "0.9", r"bootstrap_level must be a coverage in \(0, 1\)"),
    ],
)
def test_bad_bootstrap_settings_are_refused_before_any_work(field, value, message):
    with pytest.raises(ValueError, match=message):
        _options(**{field: value}).validate()


def test_the_cli_refuses_a_bad_level(lap_run, tmp_path):
    result = CliRunner().invoke(
        app, ["evaluate", "--run", str(lap_run), "--out", str(tmp_path / "e"),
              "--bootstrap-level", "1.5"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "bootstrap_level must be a coverage in (0, 1)" in result.output
    assert not (tmp_path / "e").exists()
