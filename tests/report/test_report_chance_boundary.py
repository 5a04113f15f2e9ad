"""The "not above chance" mark at its boundary: ``value <= chance + z sqrt(c (1 - c) / n)``
includes equality (a one-sided 5% test)."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from torchlap.report import table_data


def test_chance_z_is_the_one_sided_five_percent_quantile() -> None:
    """z is the 95% quantile of the standard normal (1.645)."""
    assert abs(table_data._CHANCE_Z - NormalDist().inv_cdf(0.95)) < 1e-4


@pytest.mark.parametrize(("chance", "n"), [(0.5, 10), (0.2, 37), (0.9, 1000)])
def test_value_exactly_at_the_bound_is_not_above_chance(chance: float, n: int) -> None:
    """At the bound the test does not reject: marked; just above it: not marked."""
    bound = chance + table_data._CHANCE_Z * math.sqrt(chance * (1.0 - chance) / n)
    assert table_data.at_chance(bound, chance, n)
    assert not table_data.at_chance(math.nextafter(bound, math.inf), chance, n)
    assert table_data.at_chance(math.nextafter(bound, -math.inf), chance, n)


@pytest.mark.parametrize(("k", "n_classes"), [(5, 3), (5, 5), (2, 4)])
def test_top_k_chance_without_counts_is_at_most_one(k: int, n_classes: int) -> None:
    """Without label counts, top-k chance is min(k, classes) / classes (top-5 of 3 classes: 1)."""
    run = {"data": {"n_classes": n_classes}, "model": {}}
    expected = min(k, n_classes) / n_classes
    assert table_data.model_chance(run, f"top{k}_accuracy") == pytest.approx(expected)
