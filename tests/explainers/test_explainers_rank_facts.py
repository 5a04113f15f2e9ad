"""The registry's order facts leave nothing to ties: no two methods share a
``comparison_rank`` or a ``column_rank`` (a tie would fall back to the names' alphabetical or
registration order, which nothing documents)."""

import pytest

import torchlap.explainers  # noqa: F401  (registers the built-in methods)
from torchlap.explainers import available, get


@pytest.mark.parametrize("fact", ["comparison_rank", "column_rank"])
def test_no_two_methods_share_a_rank(fact):
    ranks = {}
    for name in available():
        value = getattr(get(name), fact)
        if value is not None:
            ranks.setdefault(value, []).append(name)
    shared = {rank: names for rank, names in ranks.items() if len(names) > 1}
    assert not shared, shared
    assert {"scorecam", "rise", "sise"} <= {n for names in ranks.values() for n in names}
