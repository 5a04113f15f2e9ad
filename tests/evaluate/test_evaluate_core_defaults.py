"""``evaluate_run``'s and ``prepare_evaluation``'s defaults: a request none of whose methods
applies is refused by default, before the output folder is made; no options means the
default ones."""

from __future__ import annotations

import pytest

from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.evaluate.core import prepare_evaluation


def test_evaluate_run_refuses_by_default_a_request_none_of_whose_methods_applies(
    lap_run, tmp_path
) -> None:
    options = EvaluateOptions(methods=("bla",), max_images=2, max_val_images=2)
    with pytest.raises(ValueError, match=r"no requested method applies to its model: bla \("):
        evaluate_run(lap_run, out=tmp_path / "eval", options=options)
    assert not (tmp_path / "eval").exists()


def test_no_options_means_the_default_options(lap_run, tmp_path) -> None:
    job = prepare_evaluation(lap_run, out=tmp_path / "eval")
    assert job.options == EvaluateOptions()
    assert job.out_dir == tmp_path / "eval"
    assert not (tmp_path / "eval").exists()
