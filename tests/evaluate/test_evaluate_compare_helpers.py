"""``torchlap compare``'s own steps, without evaluating a run: the protocol check of the joint
table, the run name on a refusal, the data plan without ``--data``, the choice of each BLA
run's LIME baseline, and an empty list of runs."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pytest

import torchlap.evaluate.compare as compare_module
from torchlap.evaluate.compare import (
    _data_plan,
    _lime_baselines,
    _named,
    check_protocols,
    compare_runs,
)
from torchlap.evaluate.options import EvaluateOptions
from torchlap.runs import RunError


def _results(**protocols: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {"protocol": protocol} for name, protocol in protocols.items()}


def test_results_under_one_protocol_pass_and_the_concept_sets_may_differ() -> None:
    same = {"metrics_revision": 6, "ties": "random"}
    check_protocols({})
    check_protocols(_results(a=same, b=dict(same), c=dict(same)))
    check_protocols(
        _results(a={**same, "lap_concept_sets": [[0]]}, b={**same, "lap_concept_sets": None})
    )


def test_results_under_different_protocols_are_refused_naming_the_keys() -> None:
    first = {"metrics_revision": 6, "ties": "random", "binarize": "otsu"}
    # the third run differs from the first in two keys, one of them missing
    runs = _results(a=first, b=dict(first), c={"metrics_revision": 5, "ties": "random"})
    with pytest.raises(ValueError, match=r"^a and c were evaluated under different protocols "
                       r"\(binarize, metrics_revision\); one table"):  # fmt: skip
        check_protocols(runs)


def test_a_refusal_names_the_run_and_keeps_its_type() -> None:
    def fails(error: Exception) -> None:
        raise error

    with pytest.raises(TypeError, match=r"^run r1 \(path/r1\): bad type$"):
        _named("r1", "path/r1", fails, TypeError("bad type"))
    with pytest.raises(ValueError, match=r"^run r1 \(path/r1\): bad value$"):
        _named("r1", "path/r1", fails, ValueError("bad value"))
    with pytest.raises(RunError, match=r"^not a run$"):  # torchlap's own classes as they are
        _named("r1", "path/r1", fails, RunError("not a run"))
    assert _named("r1", "path/r1", lambda x: x + 1, 2) == 3


def _config(data: str = "lesions", n_images: int = 40) -> dict[str, Any]:
    return {"image_size": 32, "train": {"data": data, "n_images": n_images, "seed": 0}}


def test_without_data_the_runs_must_have_seen_the_same_images() -> None:
    assert _data_plan(None, {"a": _config(), "b": _config()}) == (None, None)
    # the same data options written in another order are the same images
    first, second = _config(), _config()
    first["train"]["data_options"] = {"scale": 2, "shapes": "disk"}
    second["train"]["data_options"] = {"shapes": "disk", "scale": 2}
    assert _data_plan(None, {"a": first, "b": second}) == (None, None)
    with pytest.raises(ValueError, match=r"trained on different data \(a: lesions "
                       r"n_images=40, b: lesions n_images=60\).*pass --data"):  # fmt: skip
        _data_plan(None, {"a": _config(), "b": _config(n_images=60)})


@pytest.mark.parametrize(
    ("methods", "lime_images", "expected"),
    [(("gradcam",), 4, {}), (("bla",), 0, {}), (("gradcam", "bla"), 4, {"bla1": "vanilla"})],
)
def test_a_bla_runs_lime_baseline_is_asked_for_only_when_its_check_runs(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    methods: tuple,
    lime_images: int,
    expected: dict,
) -> None:
    asked: list[str] = []

    def baseline_of(name: str, configs: dict) -> str | None:
        asked.append(name)
        return "vanilla" if name == "bla1" else None

    monkeypatch.setattr(compare_module, "lime_baseline_of", baseline_of)
    options = EvaluateOptions(methods=methods, lime_images=lime_images)
    with caplog.at_level(logging.INFO, logger="torchlap"):
        assert _lime_baselines(["bla1", "bla2"], {}, options) == expected
    assert asked == (["bla1", "bla2"] if expected else [])
    said = "bla1: LIME check on the vanilla run vanilla (paper 002, 4.3)" in caplog.text
    assert said == bool(expected)


def test_a_bla_run_without_a_vanilla_twin_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(compare_module, "lime_baseline_of", lambda name, configs: None)
    with caplog.at_level(logging.INFO, logger="torchlap"):
        assert _lime_baselines(["bla2"], {}, EvaluateOptions(methods=("bla",))) == {}
    assert "bla2: no vanilla run of the same architecture and data" in caplog.text


def test_compare_needs_a_run(tmp_path) -> None:
    with pytest.raises(ValueError, match="compare needs at least one run folder"):
        compare_runs([], None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_options_are_checked_first_and_nothing_is_replaced_unasked(tmp_path) -> None:
    # the options are refused before any run folder is read (this one does not exist)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got 0"):
        compare_runs([tmp_path / "missing"], None, tmp_path / "out", EvaluateOptions(batch_size=0))
    assert not (tmp_path / "out").exists()
    # a library call replaces files it did not write only when asked (force=True)
    assert inspect.signature(compare_runs).parameters["force"].default is False
