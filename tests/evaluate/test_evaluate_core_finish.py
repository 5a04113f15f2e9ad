"""The driver's last steps: the sanity checks and grid pointing game run on the applicable
methods that ``check_methods`` chooses (all when ``None``), in the order of ``methods``; and
``finish_evaluation`` writes the report unless told not to."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from torchlap.evaluate import EvaluateOptions, core, outputs
from torchlap.evaluate.core import finish_evaluation, prepare_evaluation

OPTIONS = dict(
    methods=("gradcam",), ks=(50,), stability_images=1, stability_fractions=(0.2,),
    batch_size=8, max_images=4, max_val_images=4, examples=False, bootstrap_resamples=20,
)  # fmt: skip


@pytest.mark.parametrize(
    ("chosen", "expected"),
    [
        (None, ["gradcam", "rise"]),  # every applicable method, lap being skipped
        (("rise", "lap"), ["rise"]),  # the chosen ones that apply
        (("lap",), []),
    ],
)
def test_the_checks_run_on_the_chosen_methods_that_apply(monkeypatch, chosen, expected) -> None:
    options = EvaluateOptions(methods=("lap", "gradcam", "rise"), check_methods=chosen)
    job = SimpleNamespace(options=options, **dict.fromkeys(
        ("model", "test", "test_targets", "method_options", "out_dir", "stamp", "data_key",
         "force")))  # fmt: skip
    seen = []
    monkeypatch.setattr(
        core,
        "run_checks",
        lambda _m, _t, _y, _o, methods, *_a: seen.append(methods) or {"x": 1},
    )
    assert core._checks(job, {"lap": "the model has no LAP layer"}) == {"x": 1}
    assert seen == [expected]


def test_finish_writes_the_report_by_default(lap_run, tmp_path, monkeypatch) -> None:
    written = []
    monkeypatch.setattr(outputs, "write_run_outputs", lambda out, *_a: written.append(out))
    out = tmp_path / "eval"
    job = prepare_evaluation(lap_run, out=out, options=EvaluateOptions(**OPTIONS))
    results = finish_evaluation(job)
    assert written == [out]
    assert set(results["localization"]) == {"gradcam"}
    assert (out / "results.json").is_file()
