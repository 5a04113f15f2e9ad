"""The bootstrap intervals of an evaluation: each localization and faithfulness mean's, and the
paired lead of the own-map method (LAP) over every other method, from the per-image scores the
methods keep."""

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
from torchlap.report.paired_table import faithfulness_paired_table


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


def _faithfulness_entries(section: dict, path: str = "") -> dict[str, dict]:
    """Every metric entry of a method's faithfulness section by its path (``"drop"``,
    ``"keep_top_k/10/top1_vs_label"``)."""
    if "value" in section:
        return {path: section}
    entries: dict[str, dict] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            entries |= _faithfulness_entries(value, f"{path}/{key}" if path else key)
    return entries


def test_faithfulness_intervals_and_paired_leads_come_from_the_cached_scores(lap_run, tmp_path):
    out = tmp_path / "eval"
    options = _options(bootstrap_resamples=200, seed=2, ks=(10, 50))
    evaluate_run(lap_run, out=out, options=options, write_report=False)
    results = json.loads((out / "results.json").read_text())
    settings = {"level": 0.95, "resamples": 200, "seed": 2}
    for method in options.methods:
        entries = _faithfulness_entries(results["faithfulness"][method])
        # every metric of the section: keep-k% at each k (vs label, vs prediction; the images
        # explained again merged in), Drop%/Increase% (003), Drop/Inc/Win (004), Win
        assert {
            "drop",
            "increase",
            "win",
            "keep_top_k/10/top1_vs_label",
            "keep_top_k/50/top2_vs_prediction",
            "drop_inc_win/energy/win_pct",
        } <= set(entries)
        for path, entry in entries.items():
            scores = _cached_scores(out, method, f"faithfulness/{path}")
            if entry["value"] is None:
                assert entry["interval"] is None and bool(scores.isnan().all()), (method, path)
                continue
            assert entry["value"] == pytest.approx(float(scores.nanmean())), (method, path)
            assert entry["n"] == int((~scores.isnan()).sum())
            assert entry["interval"] == bootstrap_interval(scores, **settings), (method, path)
    leads = results["paired"]["references"]["lap"]
    for key in (
        "faithfulness/drop",
        "faithfulness/increase",
        "faithfulness/keep_top_k/10/top1_vs_label",
    ):
        assert list(leads[key]) == ["gradcam", "guided_backprop"]
        for other, lead in leads[key].items():
            expected = paired_difference(
                _cached_scores(out, "lap", key), _cached_scores(out, other, key), **settings
            )
            assert lead == expected, (key, other)
    # the report shows them: Drop% and Increase%, own minus other, in percentage points
    table = faithfulness_paired_table({"run": results})
    assert table.rows[0].labels == ("run", "LAP", "GC")  # Grad-CAM, as paper 000 names it
    drop, increase = (leads[f"faithfulness/{k}"]["gradcam"] for k in ("drop", "increase"))

    def shown(v: float) -> str:  # percentage points with their sign; 0 unsigned
        return f"{v:+.2f}" if round(v, 2) != 0 else "0.00"

    assert [cell.text.strip("*") for cell in table.rows[0].cells] == [
        f"{shown(e['difference'])} [{shown(e['interval'][0])}, {shown(e['interval'][1])}]"
        for e in (drop, increase)
    ]


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


def _localization_scores_only(results: dict) -> None:
    """As torchlap cached a method before the faithfulness metrics had intervals."""
    results["per_sample"] = {k: v for k, v in results["per_sample"].items() if "/" not in k}


def _iou_topk_scores_only(results: dict) -> None:
    """As torchlap cached a method before the bootstrap intervals (IoU top-K per image only)."""
    results["per_sample_iou_topk"] = results.pop("per_sample")["iou_topk"]


def _one_image_short(results: dict) -> None:
    """A damaged cache: one score fewer than the images evaluated."""
    results["per_sample"]["faithfulness/increase"].pop()


@pytest.mark.parametrize(
    ("damage", "message", "section", "metric"),
    [
        (_iou_topk_scores_only, "its localization has no per-image", "localization", "iou_topk"),
        (_localization_scores_only, "its faithfulness has no per-image", "faithfulness", "drop"),
        (
            _one_image_short,
            "must be a list of 8 numbers or None (one per evaluated image)",
            "faithfulness",
            "increase",
        ),
    ],
)
def test_a_cache_without_per_image_scores_is_recomputed(
    lap_run, tmp_path, caplog, damage, message, section, metric
):
    """A method cached by an earlier torchlap has no per-image scores for some intervals: it is
    recomputed, and the log says why."""
    out = tmp_path / "eval"
    options = _options(methods=("gradcam",))
    evaluate_run(lap_run, out=out, options=options, write_report=False)
    cache = out / "methods" / "gradcam.json"
    cached = json.loads(cache.read_text())
    damage(cached["results"])
    cache.write_text(json.dumps(cached))
    computed: list[str] = []
    with caplog.at_level("WARNING", logger="torchlap.evaluate.common"):
        results = evaluate_run(
            lap_run, out=out, options=options, write_report=False,
            on_method=lambda method, seconds: computed.append(method),
        )  # fmt: skip
    assert computed == ["gradcam"]
    assert message in caplog.text
    assert results[section]["gradcam"][metric]["interval"] is not None


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
