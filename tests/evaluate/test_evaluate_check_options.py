"""The options of the sanity checks and the grid pointing game, refused at each boundary of
what they accept (:func:`torchlap.evaluate.checks.validate_check_options`), the grid checked
against the run's classes (:func:`check_grid_request`), and the per-method fingerprint that
leaves the check options out (:func:`method_fingerprint_options`)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.checks import (
    CHECK_OPTION_FIELDS,
    MAX_GRID_PG_GRIDS,
    check_grid_request,
    method_fingerprint_options,
    validate_check_options,
)


def _options(**fields: Any) -> EvaluateOptions:
    base = {"methods": ("gradcam", "lap")}
    return dataclasses.replace(EvaluateOptions(**base), **fields)


def _refused(match: str, **fields: Any) -> None:
    with pytest.raises(ValueError, match=match):
        validate_check_options(_options(**fields))


def test_the_defaults_and_values_at_the_accepted_edges_pass() -> None:
    validate_check_options(_options())  # check_methods None: every evaluated method
    for fields in (
        {"check_methods": ("gradcam",), "sanity": True},
        {"check_methods": ("gradcam", "rise"), "grid_pg": True},  # a filter: one evaluated
        {"check_methods": ("rise",)},  # no check asked for: nothing is left unchecked
        {"sanity_images": 1, "grid_pg_grids": 1},
        {"grid_pg_grids": MAX_GRID_PG_GRIDS},
        {"sanity_modes": ("independent",)},
        {"sanity_modes": ("independent", "cascading")},
        {"sanity_granularity": "layer"},
        {"sanity_threshold": 1.0},
        {"sanity_threshold": 1},
        {"sanity_threshold": -0.999},
        {"grid_pg_confidence": 0.0},
        {"grid_pg_confidence": 0},
        {"grid_pg_confidence": 0.999},
        {"grid_pg_shape": " auto "},
        {"grid_pg_shape": "8x8"},  # 64 cells: the class count is checked against the run
        {"grid_pg_shape": (1, 2)},  # a (rows, cols) pair, as resolve_grid_shape takes it
    ):
        validate_check_options(_options(**fields))


def test_check_methods_are_names_of_known_methods() -> None:
    _refused(r"check_methods must be None or a non-empty tuple of method names, got 'gradcam'",
             check_methods="gradcam")  # fmt: skip
    _refused(r"check_methods must be None or a non-empty tuple .* got \('gradcam', 3\)",
             check_methods=("gradcam", 3))  # fmt: skip
    _refused(r"check_methods must be None or a non-empty tuple .* got \(\)", check_methods=())
    _refused(r"check_methods: unknown method\(s\) nosuch; available: ", check_methods=("nosuch",))


@pytest.mark.parametrize("check", ["sanity", "grid_pg"])
def test_check_methods_that_keep_no_evaluated_method_are_refused(check: str) -> None:
    _refused(r"check_methods: none of rise is among the evaluated methods \(gradcam, lap\)",
             check_methods=("rise",), **{check: True})  # fmt: skip


def test_flags_and_counts() -> None:
    for name in ("sanity", "grid_pg"):
        _refused(rf"{name} must be a bool, got 1", **{name: 1})
    for name in ("sanity_images", "grid_pg_grids"):
        for bad in (0, True, 2.0):
            _refused(rf"{name} must be an int >= 1, got {bad!r}", **{name: bad})
    _refused(rf"grid_pg_grids must be an int from 1 to {MAX_GRID_PG_GRIDS}, got 10001",
             grid_pg_grids=MAX_GRID_PG_GRIDS + 1)  # fmt: skip


def test_modes_and_granularity() -> None:
    for bad in ((), ("downward",), ("cascading", "cascading"), ("cascading", "downward")):
        _refused(r"sanity_modes must be distinct names from", sanity_modes=bad)
    _refused(r"sanity_granularity must be one of \('block', 'layer'\), got 'neuron'",
             sanity_granularity="neuron")  # fmt: skip


@pytest.mark.parametrize("bad", [-1.0, -1, -1.2, 1.0001, 1.2, True, "0.5"])
def test_the_sanity_threshold_is_a_number_in_minus_one_exclusive_to_one(bad: Any) -> None:
    _refused(r"sanity_threshold must be a number in \(-1, 1\]", sanity_threshold=bad)


@pytest.mark.parametrize("bad", [-0.001, 1.0, 1, 1.2, False, "0.9"])
def test_the_grid_confidence_is_a_number_in_zero_to_one_exclusive(bad: Any) -> None:
    _refused(r"grid_pg_confidence must be a number in \[0, 1\)", grid_pg_confidence=bad)


def test_a_grid_shape_of_bad_syntax_is_refused_with_the_option_named() -> None:
    _refused(r"grid_pg_shape: grid shape must be 'auto' or 'RxC'", grid_pg_shape="2by2")
    _refused(r"grid_pg_shape: a grid needs at least 2 cells, got 1x1", grid_pg_shape="1x1")


def test_the_grid_is_checked_against_the_run_classes_only_when_the_game_runs() -> None:
    run = SimpleNamespace(classes=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"--grid-pg-shape 2x2: a 2x2 grid needs 4 distinct "):
        check_grid_request(_options(grid_pg=True, grid_pg_shape="2x2"), run)
    check_grid_request(_options(grid_pg=True, grid_pg_shape="1x3"), run)
    check_grid_request(_options(grid_pg=False, grid_pg_shape="2x2"), run)  # no game: no check
    # 'auto' fits any run with 2 classes or more; with fewer the game is skipped later
    check_grid_request(_options(grid_pg=True), SimpleNamespace(classes=["a"]))


def test_the_method_fingerprint_leaves_the_check_and_run_level_options_out() -> None:
    options = _options(max_images=7)
    data = method_fingerprint_options(options)
    assert data["methods"] is None and data["max_images"] == 7
    assert not set(CHECK_OPTION_FIELDS) & set(data)
    assert not {"bootstrap_resamples", "lime_images", "lime_options"} & set(data)
    expected = set(dataclasses.asdict(options)) - set(CHECK_OPTION_FIELDS)
    expected -= {"bootstrap_resamples", "bootstrap_level", "lime_images", "lime_samples",
                 "lime_patch", "lime_options"}  # fmt: skip
    assert set(data) == expected
    changed = dataclasses.replace(options, sanity=True, grid_pg_grids=3, methods=("gradcam",))
    assert method_fingerprint_options(changed) == data
    assert method_fingerprint_options(dataclasses.replace(options, max_images=8)) != data
