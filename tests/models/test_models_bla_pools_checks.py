"""The explanation pools of paper 002 (BLA, BLA-T, L2X-F): what their constructors refuse, at
the boundary of what they accept, with the message naming the argument and the value."""

from __future__ import annotations

import pytest
import torch

from torchlap.models.bla_pools import BoundedLogitAttention, L2XFeatureSelection


@pytest.mark.parametrize("make", [BoundedLogitAttention, L2XFeatureSelection])
@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (True, TypeError), (2.0, TypeError)], ids=str
)
def test_in_channels_must_be_a_positive_int(make, value, error):
    with pytest.raises(error, match=rf"in_channels must be .*, got {value!r}"):
        make(value)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(theta=-0.1), ValueError, r"theta must be .*, got -0\.1"),
        (dict(threshold=1), TypeError, r"threshold must be a bool, got 1"),
        (dict(threshold=True, gamma=0.0), ValueError, r"gamma must be .*, got 0\.0"),
        (dict(threshold=True, gamma=1.0), ValueError, r"gamma must lie in \(0, 1\).*got 1\.0"),
        (dict(threshold=True, gamma_factor=0.0), ValueError, r"gamma_factor must be .*got 0\.0"),
        (dict(pool="mean"), ValueError, r"pool must be one of .*, got 'mean'"),
        (dict(eval_path="top"), ValueError, r"unknown eval_path 'top' for BoundedLogitAttention"),
        (dict(init="ones"), ValueError, r"unknown init 'ones'; expected one of"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_bla_refusals(kwargs, error, match):
    with pytest.raises(error, match=match):
        BoundedLogitAttention(4, **kwargs)


def test_bla_accepts_the_boundaries():
    module = BoundedLogitAttention(1, theta=1e-9, threshold=True, gamma=0.999)
    assert (module.in_channels, module.gamma, module.theta) == (1, 0.999, 1e-9)
    assert module.gamma_for(7) == 0.999  # a given gamma is taken as it is
    assert BoundedLogitAttention(1, threshold=True, gamma_factor=0.5).gamma_for(8) == 0.5 / 8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(k=0), ValueError, r"k must be .*, got 0"),
        (dict(k=2.0), TypeError, r"k must be .*, got 2\.0"),
        (dict(tau=0.0), ValueError, r"tau must be .*, got 0\.0"),
        (dict(pool="max"), ValueError, r"pool must be one of .*, got 'max'"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_l2x_refusals(kwargs, error, match):
    with pytest.raises(error, match=match):
        L2XFeatureSelection(4, **kwargs)


def test_l2x_takes_k_up_to_the_number_of_positions():
    module = L2XFeatureSelection(2, k=6).eval()
    x = torch.randn(3, 2, 2, 3)
    # k = n: every position is selected, the plain average
    torch.testing.assert_close(module(x), x.mean(dim=(2, 3), keepdim=True))
    assert module.maps.hard.all()
    with pytest.raises(ValueError, match=r"k=6 positions but the feature map has only 4 \(2x2\)"):
        module(torch.randn(1, 2, 2, 2))


def test_defaults_are_the_papers_and_the_authors_code():
    # paper 002, section 4: "temperature theta = 0.1"; plain BLA unless thresholding is asked
    bla = BoundedLogitAttention(4)
    assert (bla.theta, bla.threshold, bla.gamma, bla.eval_path) == (0.1, False, None, "hard")
    assert bla.variant == "bla" and BoundedLogitAttention(4, threshold=True).variant == "bla-t"
    # L2X-F: the authors' code, softmax((G + l) * 0.1) pooled by sum; evaluated on the top k
    l2x = L2XFeatureSelection(4)
    assert (l2x.tau, l2x.pool, l2x.eval_path) == (10.0, "sum", "hard")
    assert BoundedLogitAttention(4, threshold=True).pool == "sum"
