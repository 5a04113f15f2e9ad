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
    ],
)
def test_accepted_next_to_a_refusal(tmp_path, methods, extra) -> None:
    # the options pass: the first refusal is the missing run folder
    error = error_line(_evaluate(tmp_path, *extra, methods=methods))
    assert "nowhere" in error and "--" not in error.replace(str(tmp_path), ""), error
