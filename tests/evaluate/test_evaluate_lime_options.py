"""``torchlap evaluate``/``compare --lime-option KEY=VALUE``: paper 002's LIME check options
(LIME's baseline, perturbations_per_eval, score, weighting; Grad-CAM's cam_relu) reach the
check from the command line, are recorded, key the check's cache (a result computed with other
options is recomputed, the methods' caches are not touched), and are refused, before any work,
where they are unknown, bad, or would be ignored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.evaluate import EvaluateOptions, bla_comparison, evaluate_run
from torchlap.train import TrainConfig, fit

QUICK = dict(max_images=4, max_val_images=4, stability_images=1, stability_fractions=(0.1,),
             batch_size=8, ks=(50,), tie_draws=1, bootstrap_resamples=0, lime_images=2,
             lime_samples=16)  # fmt: skip
_FLAGS = ["--max-images", "4", "--max-val-images", "4", "--stability-images", "1",
          "--tie-draws", "1", "--bootstrap-resamples", "0", "--lime-images", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def bla_run(tmp_path_factory) -> Path:
    """A one-epoch BLA-T run of the small CNN on 40 `lesions` images at 32 px."""
    torch.set_num_threads(1)
    config = TrainConfig(
        data="lesions", out=str(tmp_path_factory.mktemp("lime") / "bla"), arch="smallcnn",
        model="bla-t", lap="none", epochs=1, n_images=40, image_size=32, batch_size=16,
        supervision="none", progress_bar=False,
    )  # fmt: skip
    return fit(config)


@pytest.fixture
def lime_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every LIME check run (bla_lime_faithfulness, spied)."""
    calls: list[dict] = []
    real = bla_comparison.bla_lime_faithfulness

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(bla_comparison, "bla_lime_faithfulness", spy)
    return calls


def _options(**lime_options) -> EvaluateOptions:
    return EvaluateOptions(methods=("bla",), lime_options=lime_options, **QUICK)


def test_the_flag_reaches_the_check_and_is_recorded(bla_run, tmp_path, lime_calls):
    out = tmp_path / "eval"
    args = ["evaluate", "--run", str(bla_run), "--out", str(out), "--methods", "bla", *_FLAGS]
    args += ["--lime-option", "weighting=none", "--lime-option", "cam_relu=false"]
    args += ["--lime-option", "baseline=0.5", "--lime-option", "score=logit"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    (call,) = lime_calls
    chosen = {"weighting": "none", "cam_relu": False, "baseline": 0.5, "score": "logit"}
    assert {key: call.get(key) for key in chosen} == chosen
    results = json.loads((out / "results.json").read_text())
    assert results["options"]["lime_options"] == chosen
    assert results["lime_spearman"]["options"] == dict(sorted(chosen.items()))
    assert "cam_relu=False" in (out / "tables.md").read_text()


def test_the_sample_count_and_cell_size_reach_their_fields(bla_run, tmp_path, lime_calls):
    out = tmp_path / "eval"
    args = ["evaluate", "--run", str(bla_run), "--out", str(out), "--methods", "bla", *_FLAGS]
    args += ["--lime-option", "n_samples=24", "--lime-option", "patch=8"]
    args += ["--lime-option", "score=logit"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    (call,) = lime_calls
    assert (call["n_samples"], call["patch"], call["score"]) == (24, 8, "logit")
    results = json.loads((out / "results.json").read_text())
    recorded = results["options"]
    assert (recorded["lime_samples"], recorded["lime_patch"]) == (24, 8)
    assert recorded["lime_options"] == {"score": "logit"}  # each setting in one place
    lime = results["lime_spearman"]
    assert (lime["n_samples"], lime["patch"], lime["grid"]) == (24, "8", [4, 4])


def test_the_sample_count_and_cell_size_recompute_the_check_only(bla_run, tmp_path, lime_calls):
    out, methods = tmp_path / "eval", []

    def run(**fields):
        options = EvaluateOptions(methods=("bla",), **(QUICK | fields))
        return evaluate_run(bla_run, None, out, options, on_method=lambda m, s: methods.append(m))

    run()
    run(lime_samples=24)
    assert [call["n_samples"] for call in lime_calls] == [16, 24]
    run(lime_samples=24, lime_patch=8)
    run(lime_samples=24, lime_patch=8)  # the same settings: the cached check
    assert [call["patch"] for call in lime_calls] == [None, None, 8]
    assert methods == ["bla"]  # bla's own maps computed once: they do not depend on LIME's


def test_other_lime_options_recompute_the_check_and_not_the_methods(
    bla_run, tmp_path, lime_calls, caplog
):
    out, methods = tmp_path / "eval", []

    def run(**lime_options):
        options = _options(**lime_options)
        return evaluate_run(bla_run, None, out, options, on_method=lambda m, s: methods.append(m))

    first = run()
    run()  # the same options: the cached check is reused
    assert len(lime_calls) == 1 and "options" not in first["lime_spearman"]
    with caplog.at_level(logging.INFO, logger="torchlap.evaluate.common"):
        unweighted = run(weighting="none")
    assert len(lime_calls) == 2 and lime_calls[-1]["weighting"] == "none"
    assert unweighted["lime_spearman"]["options"] == {"weighting": "none"}
    lines = [record.getMessage() for record in caplog.records]
    assert any("lime_spearman: recomputing, the LIME check's options" in line for line in lines)
    run(weighting="none", cam_relu=False)
    assert len(lime_calls) == 3 and lime_calls[-1]["cam_relu"] is False
    run(weighting="kernel", cam_relu=True)  # the defaults, spelt out: back to the first result
    assert len(lime_calls) == 4 and "weighting" in lime_calls[-1]
    again = run()
    assert len(lime_calls) == 4  # (the defaults spelt out are the defaults: the same key)
    assert again["lime_spearman"]["bla"] == first["lime_spearman"]["bla"]
    assert methods == ["bla"]  # bla's own maps computed once: its cache ignores LIME's options


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lime-option", "kernel=1"], "unknown LIME check option(s) ['kernel']; accepted: "
         "baseline, perturbations_per_eval, score, weighting, cam_relu, n_samples, patch"),
        (["--lime-option", "n_samples=0"],
         "lime_samples must be an int >= 1, got 0 (--lime-option n_samples)"),
        (["--lime-option", "patch=2.5"],
         "lime_patch must be None or an int >= 1, got 2.5 (--lime-option patch)"),
        (["--lime-option", "patch=8", "--lime-images", "0"], "--lime-option sets paper"),
        (["--lime-option", "score=odds"], "score must be one of 'probability', 'logit'"),
        (["--lime-option", "cam_relu=no"], "cam_relu must be True or False, got 'no'"),
        (["--lime-option", "baseline=NaN"], "baseline must be a finite number, got nan"),
        (["--lime-option", "perturbations_per_eval=0"], "perturbations_per_eval must be"),
        (["--lime-option", "weighting"], "--lime-option expects KEY=VALUE, got 'weighting'"),
        (["--lime-option", "score=logit", "--lime-option", "score=logit"], "given twice"),
        (["--lime-option", "weighting=none", "--lime-images", "0"], "--lime-option sets paper"),
        (["--methods", "gradcam", "--lime-option", "weighting=none"], "add bla to --methods"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_bad_or_ignored_options_are_refused_before_any_work(
    bla_run, tmp_path, lime_calls, command, flags, message
):
    out = tmp_path / "out"
    run = ["--run", str(bla_run)] if command == "evaluate" else [str(bla_run)]
    flags = flags if "--methods" in flags else ["--methods", "bla", *flags]
    result = CliRunner().invoke(app, [command, *run, "--out", str(out), *flags])
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in " ".join(result.output.replace("│", " ").split()), result.output
    assert not out.exists() and not lime_calls


def test_the_library_option_is_checked_as_the_flag_is():
    with pytest.raises(ValueError, match=r"unknown LIME check option\(s\) \['kernel'\]"):
        _options(kernel=10).validate()
    # the sample count and cell size have one place in Python, their own fields
    message = r"\['n_samples', 'patch'\].*n_samples is EvaluateOptions.lime_samples; patch is"
    with pytest.raises(ValueError, match=message):
        _options(n_samples=10, patch=8).validate()
    with pytest.raises(ValueError, match="lime_options must be a dict"):
        EvaluateOptions(lime_options=[("score", "logit")]).validate()  # type: ignore[arg-type]
    options = _options(baseline=1)
    options.validate()
    assert options.lime_options == {"baseline": 1.0}
