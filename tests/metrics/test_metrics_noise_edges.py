"""Salt-and-pepper noise (paper 004's stability): the boundaries and refusals no other test
pinned (found by mutation testing): which images count as [0, 1] images (their pepper and
salt are 0 and 1), per-channel low/high, the default seed, and the arguments refused."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from torchlap.metrics import salt_and_pepper, stability


def noised(images, **kwargs):
    out = salt_and_pepper(images, 1.0, seed=3, **kwargs)  # every pixel noised
    return out


@pytest.mark.parametrize(
    ("low_value", "high_value", "pepper", "salt"),
    [
        (0.0, 0.8, 0.0, 1.0),  # holds 0, inside [0, 1]: black and white
        (0.2, 1.0, 0.0, 1.0),  # holds 1, inside [0, 1]
        (0.2, 1.5, 0.2, 1.5),  # outside [0, 1]: the image's own minimum and maximum
    ],
)
def test_default_pepper_and_salt_follow_the_value_range(low_value, high_value, pepper, salt):
    images = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    images[0, 0, 0, 0] = low_value
    images[0, 0, 3, 3] = high_value
    out = noised(images)
    values = set(out.flatten().tolist())
    assert values <= {pepper, salt} and len(values) == 2  # 16 pixels: both drawn


def test_low_or_high_alone_and_per_channel_values():
    images = torch.full((1, 2, 3, 3), 0.5, dtype=torch.float64)
    out = noised(images, low=0.25)  # high stays the default 1 of a [0, 1] image
    assert set(out.flatten().tolist()) <= {0.25, 1.0}
    same = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    assert set(noised(images, low=same, high=same).flatten().tolist()) == {0.5}  # low == high
    with pytest.raises(ValueError, match="low and high must be finite with low <= high"):
        noised(images, low=2.0)
    for low, high in (
        (torch.tensor([0.0, float("inf")]).view(1, 2, 1, 1), None),
        (torch.tensor([0.0, -float("inf")]).view(1, 2, 1, 1), None),  # below high, not finite
        (None, torch.tensor([1.0, float("inf")]).view(1, 2, 1, 1)),
        (None, torch.tensor([1.0, float("nan")]).view(1, 2, 1, 1)),
        (torch.tensor([0.1, 0.9]).view(1, 2, 1, 1), torch.tensor([0.5, 0.6]).view(1, 2, 1, 1)),
    ):
        with pytest.raises(ValueError, match="low and high must be finite with low <= high"):
            noised(images, low=low, high=high)


def test_default_seed_and_refusals():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 5, 5, generator=generator, dtype=torch.float64)
    ids = torch.tensor([4, 0, 7])
    torch.testing.assert_close(
        salt_and_pepper(images, 0.3, image_ids=ids),
        salt_and_pepper(images, 0.3, seed=0, image_ids=ids),
    )
    assert not torch.equal(
        salt_and_pepper(images, 0.3, image_ids=ids),
        salt_and_pepper(images, 0.3, seed=1, image_ids=ids),
    )
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\]"):
        salt_and_pepper(images, 1.5, seed=0)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None"):
        salt_and_pepper(images, 0.3, generator=5)


def stability_setup():
    generator = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    images = torch.rand(4, 2, 4, 4, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1])
    calls = []

    def explain_fn(x, y):
        calls.append(x.shape[0])
        return x.mean(dim=1)

    return model, explain_fn, images, labels, calls


def test_stability_counts_every_image_and_documents_its_seed():
    model, explain_fn, images, labels, _ = stability_setup()
    result = stability(model, explain_fn, images, labels, fractions=(0.2,))
    for value in result.values():
        assert value.n == 4 and value.n_excluded == 0 and math.isfinite(value.value)
    assert inspect.signature(stability).parameters["seed"].default == 0
    again = stability(model, explain_fn, images, labels, fractions=(0.2,), seed=0)
    assert {k: v.value for k, v in again.items()} == {k: v.value for k, v in result.items()}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be"),
        ({"variant": "heat"}, ValueError, "variant must be one of"),
        ({"explain_fn": "gradcam"}, TypeError, "explain_fn must be callable"),
    ],
)
def test_stability_refuses_before_any_explanation(kwargs, error, match):
    model, explain_fn, images, labels, calls = stability_setup()
    chosen = kwargs.pop("explain_fn", explain_fn)
    with pytest.raises(error, match=match):
        stability(model, chosen, images, labels, fractions=(0.2,), **kwargs)
    assert calls == []


def test_stability_without_any_drop_counts_no_image():
    """A model whose probabilities never move: no image drops or increases, Drop(%) and Inc(%)
    are undefined (nan), and so are their changes, over 0 images (all 4 excluded)."""
    _, explain_fn, images, labels, _ = stability_setup()
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    with torch.no_grad():
        model[1].weight.zero_()
    result = stability(model, explain_fn, images, labels, fractions=(0.2,))
    for value in result.values():
        assert math.isnan(value.value) and value.n == 0 and value.n_excluded == 4
