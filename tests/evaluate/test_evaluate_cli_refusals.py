"""``torchlap evaluate``/``compare`` refusals of their options, each with its own message and
before any work (the run folder does not exist: an accepted set of options is refused for it),
and the combinations next to each refusal that are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_errors import error_line


def _evaluate(tmp_path: Path, *extra: str, methods: str = "gradcam") -> list[str]:
    return [
        "evaluate", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"),
        "--methods", methods, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("methods", "extra", "message"),
    [
        ("gradcam,,lap", [], "--methods 'gradcam,,lap' has an empty name"),
        (",", [], "--methods needs at least one method name, got ','"),
        ("gradcam,nosuch", [], "--methods names unknown method(s) nosuch; available: "),
        ("gradcam", ["--sanity", "--check-methods", " , "], "--check-methods needs at least one"),
        ("gradcam", ["--sanity", "--check-methods", "nosuch"], "--check-methods names unknown"),
        ("gradcam", ["--method-options", "{"], "--method-options is not valid JSON"),
        ("gradcam", ["--method-options", "[1]"], "--method-options must map method names"),
        ("gradcam", ["--method-options", '{"gradcam": 1}'], "--method-options must map method"),
        ("gradcam", ["--lime-option", "weighting"], "--lime-option expects KEY=VALUE"),
        (
            "bla",
            ["--lime-option", "kernel=1"],
            "--lime-option: unknown LIME check option(s) ['kernel']; accepted: baseline, "
            "perturbations_per_eval, score, weighting, cam_relu, n_samples, patch",
        ),
        ("gradcam", ["--lime-option", "n_samples=24"], "--lime-option sets paper 002's LIME"),
        ("bla", ["--lime-option", "patch=8", "--lime-images", "0"], "--lime-option sets paper"),
        ("gradcam", ["--data", " "], "--data is empty or blank"),
        ("gradcam", ["--devices", "0"], "--devices '0' selects no process"),
        (
            "gradcam",
            ["--sanity-images", "2"],
            "--sanity-images sets a part of the evaluation that runs only with --sanity, which "
            "is not given: add --sanity, or drop --sanity-images",
        ),
        (
            "gradcam",
            ["--grid-pg-shape", "2x2", "--grid-pg-grids", "2"],
            "--grid-pg-shape, --grid-pg-grids set a part of the evaluation that runs only with "
            "--grid-pg, which is not given",
        ),
        (
            "gradcam",
            ["--bootstrap-resamples", "0", "--bootstrap-level", "0.9"],
            "--bootstrap-level sets a part of the evaluation that runs only with "
            "--bootstrap-resamples > 0",
        ),
        ("gradcam", ["--lime-images", "3"], "--lime-images sets a part of the evaluation that"),
        (
            "gradcam",
            ["--lap-all-ranking", "algorithm1"],
            '--lap-all-ranking sets how "LAP All" (lap\'s maps of every layer) ranks pixels, '
            "which no method of --methods (gradcam) reads and would be ignored: add lap",
        ),
        (
            "lap",
            ["--method-options", '{"lap": {"layer": 0}}', "--lap-all-ranking", "unclipped_sum"],
            "--lap-all-ranking sets how",
        ),
        (
            "lap",
            ["--threshold-classifier", "logistic", "--threshold-fit", "with_region"],
            "--threshold-fit, --threshold-classifier set the global threshold fitted on the "
            "validation images that a method without a threshold of its own is binarized at, "
            "which no method of --methods (lap) reads",
        ),
    ],
)
def test_refused_with_its_message(tmp_path, methods, extra, message) -> None:
    error = error_line(_evaluate(tmp_path, *extra, methods=methods))
    assert message in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("methods", "extra"),
    [
        ("gradcam", ["--grid-pg", "--check-methods", "gradcam"]),
        ("gradcam", ["--sanity", "--sanity-images", "2", "--sanity-threshold", "0.4"]),
        ("gradcam", ["--grid-pg", "--grid-pg-grids", "2", "--grid-pg-confidence", "0.5"]),
        ("gradcam", ["--bootstrap-resamples", "1", "--bootstrap-level", "0.9"]),
        ("gradcam", ["--lime-images", "0"]),
        ("bla", ["--lime-images", "3"]),
        ("bla", ["--lime-option", "weighting=none", "--lime-images", "1"]),
        ("bla", ["--lime-option", "n_samples=24"]),
        ("lap", ["--lap-all-ranking", "algorithm1"]),
        ("lap,gradcam", ["--threshold-classifier", "logistic", "--threshold-fit", "with_region"]),
        ("rise", ["--threshold-fit", "all"]),
    ],
)
def test_accepted_next_to_a_refusal(tmp_path, methods, extra) -> None:
    # the options pass: the first refusal is the missing run folder
    error = error_line(_evaluate(tmp_path, *extra, methods=methods))
    assert "nowhere" in error and "--" not in error.replace(str(tmp_path), ""), error


@pytest.mark.parametrize(
    ("methods", "extra", "message"),
    [
        ("gradcam", ["--lap-all-ranking", "algorithm1"], "--lap-all-ranking sets how"),
        ("lap", ["--threshold-classifier", "logistic"], "--threshold-classifier sets the global"),
    ],
)
def test_compare_refuses_what_no_method_reads(tmp_path, methods, extra, message) -> None:
    """compare shares evaluate's options: a setting no compared method reads is refused too
    (it exited 0 and recorded the setting in every run's protocol)."""
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    out = tmp_path / "out"
    error = error_line(["compare", *runs, "--out", str(out), "--methods", methods, *extra])
    assert message in error, error
    assert not out.exists()
