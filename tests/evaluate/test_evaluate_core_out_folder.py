"""``evaluate_run``'s output folder: a ``results.json`` torchlap did not write is refused unless
forced; :func:`prepare_evaluation` (its checks) writes, removes and logs nothing, and refuses a
request none of whose methods applies; once every check passed the forced replacement is said
once and the temp files of a killed evaluation are removed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.evaluate.core import prepare_evaluation

OPTIONS = dict(
    methods=("gradcam",), ks=(50,), stability_images=1, stability_fractions=(0.2,),
    batch_size=8, max_images=4, max_val_images=4, examples=False, bootstrap_resamples=20,
)  # fmt: skip
#: the temp file of an evaluation killed mid-write (a process id above Linux's maximum)
STALE = ".results.json.4194305.0123abcd.torchlap-tmp"


def _occupied(folder: Path) -> Path:
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"mine": 1}))
    (folder / STALE).write_text("{")
    return folder


def _replacing(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "--force: replacing" in r.getMessage()]


def test_a_foreign_results_file_is_refused_unless_forced(lap_run, tmp_path, caplog) -> None:
    out = _occupied(tmp_path / "eval")
    options = EvaluateOptions(**OPTIONS)
    for call in (evaluate_run, prepare_evaluation):  # force defaults to False
        with pytest.raises(FileExistsError, match=r"holds results\.json, which torchlap did not"):
            call(lap_run, out=out, options=options)
    with caplog.at_level(logging.WARNING):
        prepare_evaluation(lap_run, out=out, options=options, force=True)
    assert (out / STALE).is_file()  # the checks remove nothing ...
    assert json.loads((out / "results.json").read_text()) == {"mine": 1}
    assert _replacing(caplog) == []  # ... and say nothing yet
    with caplog.at_level(logging.WARNING):
        results = evaluate_run(lap_run, out=out, options=options, force=True, write_report=False)
    assert _replacing(caplog) == [f"--force: replacing {out / 'results.json'}"]
    assert not (out / STALE).exists()
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))


def test_prepare_refuses_a_request_none_of_whose_methods_applies(lap_run, tmp_path) -> None:
    options = EvaluateOptions(**{**OPTIONS, "methods": ("bla",)})
    with pytest.raises(ValueError, match=r"no requested method applies to its model: bla \("):
        prepare_evaluation(lap_run, out=tmp_path / "eval", options=options)
    assert not (tmp_path / "eval").exists()


def test_the_default_output_folder_is_the_runs_eval_split(lap_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(lap_run, run)  # (the session's run is only read)
    options = EvaluateOptions(**{**OPTIONS, "split": "val"})
    assert prepare_evaluation(run, options=options).out_dir == run / "eval-val"
    _occupied(run / "eval-val")  # checked there before any work
    with pytest.raises(FileExistsError, match=r"eval-val holds results\.json, which torchlap"):
        prepare_evaluation(run, options=options)


def test_bad_options_are_refused_by_prepare_before_any_work(lap_run, tmp_path) -> None:
    """(A bootstrap level is read only once every method ran: the check comes first.)"""
    options = EvaluateOptions(**{**OPTIONS, "bootstrap_level": 1.5})
    with pytest.raises(ValueError, match=r"bootstrap_level must be a coverage in \(0, 1\)"):
        prepare_evaluation(lap_run, out=tmp_path / "eval", options=options)
    assert not (tmp_path / "eval").exists()
