"""The grid pointing game's JSON summary against loops: mean, population std, extremes."""

from __future__ import annotations

import math

import pytest
import torch

from torchlap.metrics.grid_pointing import grid_pointing_summary


def test_summary_statistics_match_loops() -> None:
    """Mean and the population standard deviation (divided by n), min/max, n_zero_maps, chance."""
    scores = torch.tensor([0.1, 0.4, 0.25, 1.0, 0.0], dtype=torch.float64)
    zero = torch.tensor([False, False, True, False, False])
    values = [float(v) for v in scores]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    summary = grid_pointing_summary(scores, zero, (2, 2))
    assert summary["mean"] == pytest.approx(mean)
    assert summary["distribution"]["std"] == pytest.approx(std)
    assert summary["distribution"]["min"] == min(values)
    assert summary["distribution"]["max"] == max(values)
    assert summary["distribution"]["median"] == pytest.approx(sorted(values)[2])
    assert summary["n"] == 5 and summary["n_zero_maps"] == 1
    assert summary["chance"] == pytest.approx(0.25)
