"""``run_test_images``: the run's test split, 32 images at most by default (``torchlap export
--verify-images``'s default), and an error of the data loader re-raised naming how to export
without the check, a missing file still a ``FileNotFoundError`` and nothing else one; a
negative ``--verify-images`` refused before the run is read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cli_errors import error_line
from torchlap.export import run_test_images
from torchlap.runs import RunError, RunFileNotFoundError


def test_at_most_32_test_images_by_default(run_dir, monkeypatch) -> None:
    asked: list[tuple[str, int]] = []

    def load(run, data, split, max_images):
        asked.append((split, max_images))
        return SimpleNamespace(images=torch.zeros(1, 1, 32, 32))

    monkeypatch.setattr("torchlap.export.load_eval_data", load)
    assert run_test_images(run_dir).shape == (1, 1, 32, 32)
    assert asked == [("test", 32)]


@pytest.mark.parametrize(
    ("raised", "kind", "missing"),
    [
        (ValueError("the data is bad"), RunError, False),
        (FileNotFoundError("the data is gone"), RunFileNotFoundError, True),
    ],
)
def test_a_data_error_names_how_to_export_without_the_check(
    run_dir, monkeypatch, raised: Exception, kind: type, missing: bool
) -> None:
    def load(*args):
        raise raised

    monkeypatch.setattr("torchlap.export.load_eval_data", load)
    with pytest.raises(kind, match=r"^the data is \w+; .*pass --verify-images 0") as caught:
        run_test_images(run_dir, 2)
    assert isinstance(caught.value, FileNotFoundError) is missing


def test_a_negative_verify_images_is_refused_before_the_run_is_read(tmp_path) -> None:
    args = ["export", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")]
    error = error_line([*args, "--verify-images", "-1"])
    assert "--verify-images must be >= 0, got -1" in error
    assert list(tmp_path.iterdir()) == []
