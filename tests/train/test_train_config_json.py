"""TrainConfig.from_dict on a config.json whose phases are not what to_dict writes: the
phases must be a list of dicts (a phase written as its CLI text is refused as a str, not read
letter by letter as unknown keys), and a phase without its epochs is named as a bad phase."""

from __future__ import annotations

import pytest

from torchlap.train import PhaseConfig, TrainConfig


def _data(**changes: object) -> dict:
    return {**TrainConfig(data="lesions", out="runs/x").to_dict(), **changes}


@pytest.mark.parametrize(
    ("phases", "error", "message"),
    [
        (["lap:1"], TypeError, r"^a phase must be a dict, got str"),
        ([{"epochs": 1}, 5], TypeError, r"^a phase must be a dict, got int"),
        ({"epochs": 1}, TypeError, r"^'phases' must be a list, got \{"),
        ([{"lr": 1e-3}], TypeError, r"^bad phase: .*epochs"),
        ([{"epochs": 1, "decay": 0.1}], ValueError, r"^unknown phase keys \['decay'\]"),
    ],
)
def test_bad_phases_in_a_config_json_are_named(phases, error, message) -> None:
    with pytest.raises(error, match=message):
        TrainConfig.from_dict(_data(phases=phases))


def test_phases_as_to_dict_writes_them_read_back() -> None:
    config = TrainConfig.from_dict(_data(phases=[{"epochs": 2, "train": "lap"}]))
    assert config.phases == [PhaseConfig(2, train="lap")]
