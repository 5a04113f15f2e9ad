"""Bootstrap intervals (torchlap.metrics.uncertainty) against a slow reference written from the
definition: draw the images with replacement, average each draw, take the percentiles."""

import math

import pytest
import torch
from torch.testing import assert_close

import torchlap.metrics.uncertainty as uncertainty
from torchlap.metrics import bootstrap_interval, paired_difference


def _reference_interval(values: list[float], level: float, resamples: int, seed: int):
    """One draw at a time: n indices from the seeded CPU generator, their mean by a loop; then
    the percentiles by linear interpolation between the sorted means (numpy's default)."""
    n = len(values)
    generator = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(resamples):
        index = torch.randint(n, (1, n), generator=generator)[0].tolist()
        total = 0.0
        for i in index:
            total += values[i]
        means.append(total / n)
    means.sort()
    bounds = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        position = q * (resamples - 1)
        low = math.floor(position)
        high = min(low + 1, resamples - 1)
        bounds.append(means[low] + (position - low) * (means[high] - means[low]))
    return bounds


def test_interval_matches_the_slow_reference():
    scores = torch.tensor([0.1, 0.45, float("nan"), 0.3, 0.9, 0.05, 0.6, float("nan"), 0.2])
    kept = [v for v in scores.tolist() if not math.isnan(v)]
    for level, resamples, seed in ((0.95, 500, 0), (0.8, 333, 7)):
        fast = bootstrap_interval(scores, level=level, resamples=resamples, seed=seed)
        assert_close(
            torch.tensor(fast, dtype=torch.float64),
            torch.tensor(_reference_interval(kept, level, resamples, seed), dtype=torch.float64),
        )


def test_paired_difference_matches_the_slow_reference():
    nan = float("nan")
    lap = torch.tensor([0.5, 0.4, nan, 0.7, 0.2, 0.6, 0.3], dtype=torch.float64)
    other = torch.tensor([0.3, nan, 0.1, 0.6, 0.25, 0.2, 0.1], dtype=torch.float64)
    # images scored by both: 0, 3, 4, 5, 6
    differences = [0.5 - 0.3, 0.7 - 0.6, 0.2 - 0.25, 0.6 - 0.2, 0.3 - 0.1]
    result = paired_difference(lap, other, level=0.9, resamples=400, seed=3)
    assert result["n"] == 5
    assert_close(result["difference"], sum(differences) / 5)
    assert_close(
        torch.tensor(result["interval"], dtype=torch.float64),
        torch.tensor(_reference_interval(differences, 0.9, 400, 3), dtype=torch.float64),
    )


def test_chunked_draws_give_the_same_interval(monkeypatch):
    """The draws are made in chunks (bounded memory): the chunk size changes nothing."""
    scores = torch.rand(37, generator=torch.Generator().manual_seed(1))
    whole = bootstrap_interval(scores, resamples=300)
    monkeypatch.setattr(uncertainty, "_CHUNK_ELEMENTS", 37 * 7)  # 7 draws a chunk
    assert bootstrap_interval(scores, resamples=300) == whole


def test_degenerate_cases():
    assert bootstrap_interval(torch.full((6,), 0.25)) == [0.25, 0.25]
    assert bootstrap_interval(torch.tensor([0.4])) is None  # one image: no spread
    assert bootstrap_interval(torch.tensor([float("nan")] * 3)) is None
    same = paired_difference(torch.tensor([0.5, 0.2]), torch.tensor([0.4, 0.1]))
    assert_close(same["interval"], [0.1, 0.1])
    none = paired_difference(torch.tensor([0.5, float("nan")]), torch.tensor([float("nan"), 0.1]))
    assert none == {"difference": None, "interval": None, "n": 0}


def test_interval_covers_the_true_mean_about_as_often_as_it_says():
    """Over 200 seeded samples of 40 scores from a known distribution the 90% interval holds
    the true mean in 84-96% of them (deterministic: fixed seeds); the width shrinks with n."""
    covered = 0
    for trial in range(200):
        generator = torch.Generator().manual_seed(1000 + trial)
        scores = torch.rand(40, generator=generator, dtype=torch.float64) ** 2  # mean 1/3
        low, high = bootstrap_interval(scores, level=0.9, resamples=1000, seed=trial)
        covered += low <= 1 / 3 <= high
    assert 168 <= covered <= 192, covered
    generator = torch.Generator().manual_seed(5)
    wide = bootstrap_interval(torch.rand(10, generator=generator))
    narrow = bootstrap_interval(torch.rand(1000, generator=generator))
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: bootstrap_interval([0.1, 0.2]), TypeError, "1-D float tensor"),
        (lambda: bootstrap_interval(torch.ones(2, 2)), ValueError, r"got shape \(2, 2\)"),
        (lambda: bootstrap_interval(torch.ones(3, dtype=torch.long)), ValueError, "torch.int64"),
        (lambda: bootstrap_interval(torch.tensor([0.1, math.inf])), ValueError, "infinite"),
        (lambda: bootstrap_interval(torch.ones(3), level=1.0), ValueError, r"in \(0, 1\)"),
        (lambda: bootstrap_interval(torch.ones(3), level=0), ValueError, r"in \(0, 1\)"),
        (lambda: bootstrap_interval(torch.ones(3), level=math.nan), ValueError, "coverage"),
        (lambda: bootstrap_interval(torch.ones(3), resamples=0), ValueError, "resamples"),
        (lambda: bootstrap_interval(torch.ones(3), resamples=True), TypeError, "resamples"),
        (lambda: bootstrap_interval(torch.ones(3), resamples=10**7), ValueError, "1000000"),
        (lambda: bootstrap_interval(torch.ones(3), seed=-1), ValueError, "seed"),
        (
            lambda: paired_difference(torch.ones(3), torch.ones(4)),
            ValueError,
            "same images: got 3 and 4",
        ),
    ],
)
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_defaults_match_the_reference_on_untied_scores():
    """Continuous scores (no tied means, so a draw more or less moves the percentiles): the
    defaults are 95 %, 2000 draws and seed 0, and every draw counts (found by mutation testing:
    the tied means of a few distinct scores hid a lost draw)."""
    scores = torch.rand(37, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    values = scores.tolist()
    assert_close(
        torch.tensor(bootstrap_interval(scores), dtype=torch.float64),
        torch.tensor(_reference_interval(values, 0.95, 2000, 0), dtype=torch.float64),
    )
    other = torch.rand(37, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    differences = (scores - other).tolist()
    assert_close(
        torch.tensor(paired_difference(scores, other)["interval"], dtype=torch.float64),
        torch.tensor(_reference_interval(differences, 0.95, 2000, 0), dtype=torch.float64),
    )


def test_a_single_draw_is_an_interval_of_one_mean():
    scores = torch.rand(9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    low, high = bootstrap_interval(scores, resamples=1, seed=4)
    assert low == high
    assert_close(low, _reference_interval(scores.tolist(), 0.95, 1, 4)[0])


@pytest.mark.parametrize("level", [1.5, 0.0, -0.2])
def test_a_coverage_outside_0_1_is_refused_by_both(level):
    for call in (
        lambda: bootstrap_interval(torch.ones(3), level=level),
        lambda: paired_difference(torch.ones(3), torch.ones(3), level=level),
    ):
        with pytest.raises(ValueError, match="level"):
            call()
    with pytest.raises(ValueError, match="resamples"):
        paired_difference(torch.ones(3), torch.ones(3), resamples=0)


def test_the_most_draws_is_one_million():
    assert uncertainty.MAX_RESAMPLES == 1_000_000
    with pytest.raises(ValueError, match="1000000"):
        bootstrap_interval(torch.ones(3), resamples=1_000_001)
