"""``--sanity`` alone or ``--grid-pg`` alone runs its check in an evaluation (either one is
enough; neither: no check section)."""

from __future__ import annotations

import pytest

from torchlap.evaluate import EvaluateOptions, evaluate_run

OPTIONS = dict(
    methods=("gradcam",), ks=(50,), stability_images=1, stability_fractions=(0.2,),
    batch_size=8, max_images=4, max_val_images=4, examples=False, bootstrap_resamples=20,
    sanity_images=2, grid_pg_grids=2, grid_pg_confidence=0.0,
)  # fmt: skip


@pytest.mark.parametrize(
    ("sanity", "grid_pg", "sections"),
    [
        (True, False, {"sanity"}),
        (False, True, {"grid_pointing_game", "grid_pointing_setup"}),  # (run, or skipped: said)
        (False, False, set()),
    ],
)
def test_either_check_alone_is_run(lap_run, tmp_path, sanity, grid_pg, sections) -> None:
    options = EvaluateOptions(**OPTIONS, sanity=sanity, grid_pg=grid_pg)
    results = evaluate_run(lap_run, out=tmp_path / "e", options=options, write_report=False)
    assert {"sanity", "grid_pointing_game", "grid_pointing_setup"} & set(results) == sections
    if sanity:
        assert set(results["sanity"]) == {"gradcam"}
