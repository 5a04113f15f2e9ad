"""Cross-checks with Quantus (test-only dependency) on random maps and masks.

Definitional differences, checked or avoided on purpose:
- RelevanceMassAccuracy sums raw attributions (``abs=False`` by default) while EBPG
  (paper 003) uses the L1 norm; they agree on non-negative maps, and with ``abs=True`` on
  signed maps. Its default max-normalization does not change the ratio.
- TopKIntersection uses a fixed k for the whole batch and scores ``|top_k ∩ G| / k``; our
  Bbox uses k = N = |G| per sample, so the comparison sets Quantus' k to each sample's area.
  Quantus sorts with numpy's unstable argsort, so maps are continuous (no ties).
- Both score an empty mask as ``nan``; we exclude such samples and count them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchlap.metrics import bbox_accuracy, ebpg

quantus = pytest.importorskip("quantus")

B, H, W = 6, 8, 10


def model():
    return nn.Sequential(nn.Flatten(), nn.Linear(H * W, 2))


def random_case(seed, signed=False):
    rng = np.random.default_rng(seed)
    x = rng.random((B, 1, H, W)).astype(np.float32)
    a = rng.random((B, 1, H, W)).astype(np.float32)
    if signed:
        a = a - 0.3
    s = (rng.random((B, 1, H, W)) > 0.7).astype(np.float32)
    s[1] = 0.0  # empty region
    return x, a, s


@pytest.mark.filterwarnings("ignore:Return np.nan:UserWarning")
@pytest.mark.parametrize("signed", [False, True])
def test_ebpg_equals_relevance_mass_accuracy(signed):
    x, a, s = random_case(0, signed)
    metric = quantus.RelevanceMassAccuracy(abs=signed, disable_warnings=True)
    theirs = np.asarray(
        metric(
            model=model(),
            x_batch=x,
            y_batch=np.zeros(B, dtype=int),
            a_batch=a,
            s_batch=s,
            device="cpu",
        ),
        dtype=np.float64,
    )
    ours = ebpg(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0] > 0))
    assert math.isnan(theirs[1]) and math.isnan(float(ours.per_sample[1]))
    keep = ~np.isnan(theirs)
    np.testing.assert_allclose(ours.per_sample.numpy()[keep], theirs[keep], rtol=1e-5)
    assert ours.n_excluded == 1


def test_bbox_equals_top_k_intersection_with_k_equal_to_the_area():
    x, a, s = random_case(1)
    ours = bbox_accuracy(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0] > 0))
    for i in range(B):
        area = int(s[i].sum())
        if area == 0:
            assert math.isnan(float(ours.per_sample[i]))
            continue
        metric = quantus.TopKIntersection(k=area, disable_warnings=True)
        theirs = metric(
            model=model(),
            x_batch=x[i : i + 1],
            y_batch=np.zeros(1, dtype=int),
            a_batch=a[i : i + 1],
            s_batch=s[i : i + 1],
            device="cpu",
        )
        assert float(ours.per_sample[i]) == pytest.approx(float(theirs[0]), rel=1e-6)
