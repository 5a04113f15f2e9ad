"""`torchlap evaluate`/`compare` options refused before any work: option values that are NaN or
infinite, options of a method that is not evaluated, a seed out of range, too many tie draws,
and flag combinations that would be ignored without a word (--check-methods without a check,
--tie-draws with --ties index, a method checked twice)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from cli_errors import error_line
from torchlap.evaluate import EvaluateOptions
from torchlap.evaluate.options import MAX_TIE_DRAWS


def _evaluate(tmp_path: Path, *extra: str) -> list[str]:
    # a run folder that does not exist: a refusal that names the option, not the missing run,
    # came before the run was read (before any work)
    return [
        "evaluate", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"),
        "--methods", "gradcam", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('{"lap": {"threshold": NaN}}', r"holds NaN; option values take finite numbers only"),
        ('{"gradcam": {"x": -Infinity}}', r"holds -Infinity; option values take finite numbers"),
        ('{"rise": {"n_masks": 0}}', r"options for rise, which is not evaluated \(--methods: "),
        ('{"gradcam": {}, "gradcam": {}}', r"names 'gradcam' twice in one object"),
        ('{"gradcam": {"layer": "a", "layer": "b"}}', r"names 'layer' twice in one object"),
    ],
)
def test_method_options_are_refused_before_any_work(tmp_path, options, message) -> None:
    # NaN used to be evaluated for 37 s and fail writing results.json; options of a method
    # not evaluated were accepted without a word; a repeated key kept its last value
    error = error_line(_evaluate(tmp_path, "--method-options", options))
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "-1"], r"seed must be an int from 0 to 4294967295, got -1"),
        (["--tie-draws", "99999999999999"], rf"tie_draws must be an int from 1 to {MAX_TIE_DRAWS}"),
        (["--check-methods", "gradcam"], r"--check-methods .* add --sanity or --grid-pg"),
        (["--ties", "index", "--tie-draws", "7"], r"--tie-draws applies to --ties random only"),
        (["--ties", "index", "--tie-draws", "4"], r"--tie-draws applies to --ties random only"),
        (
            ["--sanity", "--check-methods", "gradcam,gradcam"],
            r"check_methods are listed twice: \['gradcam', 'gradcam'\]",
        ),
        (
            ["--grid-pg", "--check-methods", "gradcam,rise"],
            r"--check-methods names rise, which is not evaluated \(--methods: gradcam\)",
        ),
    ],
)
def test_cli_refuses_bad_or_ignored_values_before_any_work(tmp_path, extra, message) -> None:
    # --seed -1 was refused after the LAP predictors were fitted, --tie-draws 1e14 ran out of
    # memory after work, and the other combinations were ignored without a word
    error = error_line(_evaluate(tmp_path, *extra))
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


def test_compare_refuses_them_too(tmp_path) -> None:
    args = ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"),
            "--methods", "gradcam", "--method-options", '{"lap": {"threshold": 0.5}}']  # fmt: skip
    assert "options for lap, which is not evaluated" in error_line(args)


@pytest.mark.parametrize(
    "extra",
    [
        ["--ties", "index"],  # --tie-draws left at its default: nothing to refuse
        ["--tie-draws", str(MAX_TIE_DRAWS), "--seed", str(2**32 - 1)],
        ["--sanity", "--check-methods", "gradcam", "--method-options", '{"gradcam": {}}'],
    ],
)
def test_accepted_values_reach_the_run(tmp_path, extra) -> None:
    # the options pass: the first refusal is the missing run folder
    error = error_line(_evaluate(tmp_path, *extra))
    assert "nowhere" in error and "tie" not in error and "check" not in error, error


def test_evaluate_options_validate_refuses_them() -> None:
    cases = [
        (dict(seed=-1), r"seed must be an int from 0 to 4294967295, got -1"),
        (dict(seed=1.5), r"seed must be an int from 0 to 4294967295, got 1.5"),
        (dict(tie_draws=MAX_TIE_DRAWS + 1), rf"tie_draws must be an int from 1 to {MAX_TIE_DRAWS}"),
        (dict(check_methods=("gradcam", "gradcam")), r"check_methods are listed twice"),
        (dict(methods=("gradcam", "gradcam")), r"methods are listed twice"),
        (
            dict(method_options={"lap": {"threshold": math.nan}}),
            r"lap.threshold is nan; the options take finite numbers only",
        ),
        (
            dict(method_options={"rise": {"n_masks": 8, "p": math.inf}}),
            r"rise.p is inf; the options take finite numbers only",
        ),
        (
            dict(method_options={"lap": {"concept_sets": {"0": [0, -math.inf]}}}),
            r"lap.concept_sets.0\[1\] is -inf",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(ValueError, match=message):
            EvaluateOptions(**{"methods": ("gradcam", "lap"), **fields}).validate()
    # the library accepts options of a method it does not evaluate (the demo passes its RISE
    # and SISE options to every suite); finite values only
    EvaluateOptions(methods=("gradcam",), method_options={"rise": {"n_masks": 8}}).validate()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(ks=(50, 50)), r"ks repeats the level\(s\) 50"),
        (dict(ks=("a",)), r"every element of ks must be a percentage in \(0, 100\], got 'a'"),
        (dict(ks=(True,)), r"every element of ks must be a percentage in \(0, 100\], got True"),
        (dict(ks=()), r"ks must be a number or a non-empty sequence of percentages"),
        (dict(stability_fractions=(0.1, 0.1)), r"stability_fractions repeats the level\(s\) 0.1"),
        (dict(stability_fractions="0.1"), r"stability_fractions must be a number or a non-empty"),
        (dict(stability_fractions=()), r"stability_fractions must be a number or a non-empty"),
        (dict(stability_fractions=(1.0,)), r"stability_fractions must be in \(0, 1\)"),
        (dict(split="foo"), r"unknown split 'foo'; accepted splits are train, val, test"),
        (dict(examples="no"), r"examples must be True or False, got 'no'"),
        (dict(methods="gradcam"), r"methods must be a tuple of method names, e.g. \('gradcam',\)"),
    ],
)
def test_evaluate_options_validate_refuses_levels_split_and_flags(fields, message) -> None:
    # the metrics refused these only after the first method's maps (ks=("a",) as a bare
    # "'<' not supported"), examples="no" was taken as True and methods="gradcam" was read
    # as the methods g, r, a, ...
    with pytest.raises(ValueError, match=message):
        EvaluateOptions(**fields).validate()


@pytest.mark.parametrize("command", ["evaluate", "compare"])
@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused(tmp_path, monkeypatch, command, out) -> None:
    # --out "" (an unset shell variable) was the current folder: results.json, figures/ and
    # methods/ written next to the user's files (torchlap train refuses it)
    monkeypatch.chdir(tmp_path)
    run = str(tmp_path / "nowhere")
    args = ["evaluate", "--run", run] if command == "evaluate" else ["compare", run]
    error = error_line([*args, "--out", out, "--methods", "gradcam"])
    assert error == (
        "Error: Invalid value: --out is empty or blank; pass the output folder (. for the "
        "current folder)"
    )
    assert list(tmp_path.iterdir()) == []


def test_grid_pointing_grids_are_bounded(tmp_path) -> None:
    # every grid is built as an image up front: 10**9 grids asked torch's allocator for
    # gigabytes (terabytes at 224 px) after every method had run
    with pytest.raises(ValueError, match=r"grid_pg_grids must be an int from 1 to 10000, got 10"):
        EvaluateOptions(grid_pg=True, grid_pg_grids=10**9).validate()
    EvaluateOptions(grid_pg=True, grid_pg_grids=10_000).validate()
    error = error_line(_evaluate(tmp_path, "--grid-pg", "--grid-pg-grids", "1000000000"))
    assert "grid_pg_grids must be an int from 1 to 10000, got 1000000000" in error
    assert not (tmp_path / "out").exists()
