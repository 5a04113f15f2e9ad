"""Fairness of the evaluation to every method: a method's numbers do not depend on which other
methods run, in which order, nor on whether its results come from the cache (methods/*.json):
the maps, thresholds, tie-break draws, noise and subsets are drawn the same for every method,
never from a state another method moved."""

from __future__ import annotations

import json

import pytest

from torchlap.evaluate import EvaluateOptions, evaluate_run
from torchlap.explainers import comparison_methods

OPTIONS = dict(
    ks=(30, 70), stability_images=3, stability_fractions=(0.2,), tie_draws=2, batch_size=8,
    max_images=12, max_val_images=8, examples=False, bootstrap_resamples=50,
    method_options={"rise": {"n_masks": 40, "mask_batch_size": 40}},
)  # fmt: skip
SECTIONS = ("localization", "faithfulness", "stability", "maps")


def numbers(results, method):
    """Every number of ``method`` in ``results`` but its timing, as comparable text."""
    picked = {name: results[name].get(method) for name in SECTIONS}
    picked["paired"] = results.get("paired", {}).get("references", {}).get(method)
    return json.dumps(picked, sort_keys=True)


@pytest.fixture(scope="module")
def together(lap_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("together")
    methods = comparison_methods()
    first = evaluate_run(lap_run, out=out / "forward", write_report=False,
                         options=EvaluateOptions(methods=methods, **OPTIONS))  # fmt: skip
    backward = tuple(reversed(methods))
    reverse = evaluate_run(lap_run, out=out / "backward", write_report=False,
                           options=EvaluateOptions(methods=backward, **OPTIONS))  # fmt: skip
    # the cache of the first evaluation, read in the other order
    cached = evaluate_run(lap_run, out=out / "forward", write_report=False, force=False,
                          options=EvaluateOptions(methods=backward, **OPTIONS))  # fmt: skip
    return first, reverse, cached


def test_the_nine_methods_are_compared(together):
    first, _, _ = together
    assert set(first["localization"]) == set(comparison_methods())
    assert not first["skipped"]


@pytest.mark.parametrize("method", comparison_methods())
def test_a_method_scores_alike_alone_in_any_order_and_from_the_cache(
    method, lap_run, together, tmp_path
):
    first, reverse, cached = together
    alone = evaluate_run(lap_run, out=tmp_path / "alone", write_report=False,
                         options=EvaluateOptions(methods=(method,), **OPTIONS))  # fmt: skip
    expected = numbers(first, method)
    assert numbers(reverse, method) == expected
    assert numbers(cached, method) == expected
    picked = json.loads(numbers(alone, method))
    if method == "lap":  # alone, LAP is paired against no other method
        picked["paired"] = json.loads(expected)["paired"]
    assert json.dumps(picked, sort_keys=True) == expected
