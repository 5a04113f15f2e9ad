"""The sanity-check figures leave a file they did not write alone unless told to replace it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchlap.report.sanity import plot_grid_examples, plot_grid_pg_distribution, plot_sanity_curves

RUNS = {
    "r": {
        "sanity": {
            "gradcam": {"cascading": {"steps": ["fc"], "spearman_abs": [0.1], "ssim": [0.2]}}
        },
        "grid_pointing_game": {"gradcam": {"mean": 0.5, "n": 2, "scores": [0.4, 0.6]}},
    }
}


def _examples(path: Path, **kwargs) -> Path:
    maps = {"gradcam": torch.rand(1, 8, 8)}
    return plot_grid_examples(
        torch.rand(1, 3, 8, 8), torch.tensor([0]), (2, 2), maps, ["a"], path, **kwargs
    )


@pytest.mark.parametrize(
    "plot",
    [
        lambda path, **kw: plot_sanity_curves(RUNS, path, **kw),
        lambda path, **kw: plot_grid_pg_distribution(RUNS, path, **kw),
        _examples,
    ],
    ids=["curves", "grid_pg", "examples"],
)
def test_a_users_file_is_replaced_only_with_overwrite(tmp_path: Path, plot):
    path = tmp_path / "mine.png"
    path.write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match=r"mine\.png"):
        plot(path)
    assert path.read_bytes() == b"the user's file"
    assert plot(path, overwrite=True) == path
    assert path.read_bytes().startswith(b"\x89PNG")
