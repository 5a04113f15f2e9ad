"""Parts of keep-k% / Drop%-Increase% no other test pinned (found by mutation testing): the
default blur baseline (its sigma and the kernel clipped to small images), the seeded tie draws
(draw d of an image uses key d, every draw is re-run, also with two draws or one tied image),
and the documented defaults. References are loops over pixels, samples and draws."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from torchlap.metrics import baseline_images, drop_increase, keep_top_k
from torchlap.metrics._common import tie_keys


def gaussian_1d(size: int, sigma: float) -> list[float]:
    half = (size - 1) / 2
    weights = [math.exp(-0.5 * ((i - half) / sigma) ** 2) for i in range(size)]
    total = sum(weights)
    return [w / total for w in weights]


def reflect(index: int, n: int) -> int:
    """numpy/torch "reflect" padding: the edge pixel is not repeated."""
    if index < 0:
        return -index
    if index >= n:
        return 2 * (n - 1) - index
    return index


def blur_reference(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of one (C, H, W) image by the definition: kernel 2 * ceil(3 sigma) + 1
    per axis, clipped to 2 * side - 1, reflect padding, separable (rows then columns)."""
    channels, height, width = image.shape
    size = 2 * math.ceil(3 * sigma) + 1
    size_h, size_w = min(size, 2 * height - 1), min(size, 2 * width - 1)
    g_h, g_w = gaussian_1d(size_h, sigma), gaussian_1d(size_w, sigma)
    rows = torch.zeros_like(image)
    for ch in range(channels):
        for r in range(height):
            for c in range(width):
                rows[ch, r, c] = sum(
                    g_w[j] * float(image[ch, r, reflect(c + j - size_w // 2, width)])
                    for j in range(size_w)
                )
    out = torch.zeros_like(image)
    for ch in range(channels):
        for r in range(height):
            for c in range(width):
                out[ch, r, c] = sum(
                    g_h[i] * float(rows[ch, reflect(r + i - size_h // 2, height), c])
                    for i in range(size_h)
                )
    return out


@pytest.mark.parametrize(
    ("height", "width", "sigma"),
    [
        (24, 44, 1.2),  # max(1, 0.05 * min(24, 44)) = 1.2: kernel 9
        (44, 24, 1.2),
        (8, 10, 1.0),  # 0.05 * 8 < 1: sigma 1, kernel 7
        (3, 2, 1.0),  # kernel 7 clipped to 5 (H) and 3 (W)
    ],
)
def test_default_blur_baseline_matches_the_definition(height, width, sigma):
    generator = torch.Generator().manual_seed(height * 100 + width)
    images = torch.rand(1, 2, height, width, generator=generator, dtype=torch.float64)
    expected = blur_reference(images[0], sigma)
    torch.testing.assert_close(baseline_images(images, "blur")[0], expected)
    torch.testing.assert_close(baseline_images(images, "blur", blur_sigma=sigma)[0], expected)


def test_baseline_images_refuses_bad_images():
    with pytest.raises(ValueError, match=r"images must be a floating tensor of shape \(B, C"):
        baseline_images(torch.zeros(3, 4, 4), "zero")
    with pytest.raises(ValueError, match="only finite images are accepted"):
        baseline_images(torch.full((1, 1, 2, 2), float("nan")), "mean")


C, H, W = 2, 2, 3


def linear_model(num_classes: int = 5) -> nn.Module:
    generator = torch.Generator().manual_seed(7)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, num_classes))
    with torch.no_grad():
        model[1].weight.copy_(2 * torch.randn(num_classes, C * H * W, generator=generator))
        model[1].bias.copy_(torch.randn(num_classes, generator=generator))
    return model.double()


def drawn_selection(score: torch.Tensor, count: int, seed: int, image_id: int, draw: int):
    """The pixels draw ``draw`` keeps: the highest scores first, ties in ascending order of
    the image's seeded keys for that draw (``tie_keys``, the documented seeding)."""
    keys = tie_keys(seed, torch.tensor([image_id]), torch.tensor([draw]), H * W, "cpu")[0]
    pixels = [(r, c) for r in range(H) for c in range(W)]
    ordered = sorted(pixels, key=lambda p: (-float(score[p]), int(keys[p[0] * W + p[1]])))
    return set(ordered[:count])


def softmax_prob(logits: torch.Tensor, target: int) -> float:
    exps = [math.exp(float(v)) for v in logits]
    return exps[target] / sum(exps)


@pytest.mark.parametrize("draws", [2, 3])
def test_drop_increase_uses_draws_0_to_d_minus_1_with_one_tied_image(draws):
    """One image of three has a tie at the 50% boundary: its value is the mean over draws
    0 .. tie_draws - 1, each re-run (not a copy of the first draw)."""
    model = linear_model()
    generator = torch.Generator().manual_seed(11)
    images = torch.randn(3, C, H, W, generator=generator, dtype=torch.float64)
    maps = torch.tensor(
        [
            [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],  # no tie
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # everything tied: 3 of 6 drawn
            [[0.6, 0.5, 0.4], [0.3, 0.2, 0.1]],  # no tie
        ],
        dtype=torch.float64,
    )
    seed, ids = 4, [5, 9, 2]
    result = drop_increase(
        model, images, maps, fraction=0.5, tie_draws=draws, seed=seed,
        image_ids=torch.tensor(ids),
    )  # fmt: skip
    drops = []
    seen = set()
    for s in range(3):
        with torch.no_grad():
            original = model(images[s][None])[0]
        cls = int(original.argmax())
        p = softmax_prob(original, cls)
        values = []
        for d in range(draws):
            kept = drawn_selection(maps[s], 3, seed, ids[s], d)
            if s == 1:
                seen.add(frozenset(kept))
            image = torch.zeros_like(images[s])
            for r, c in kept:
                image[:, r, c] = images[s][:, r, c]
            with torch.no_grad():
                q = softmax_prob(model(image[None])[0], cls)
            values.append(max(0.0, p - q) / p * 100)
        drops.append(sum(values) / draws)
    assert len(seen) == draws  # the draws of the tied image differ: the test can tell them apart
    torch.testing.assert_close(result["drop_pct"].per_sample, torch.tensor(drops).double())


def test_documented_defaults():
    keep = inspect.signature(keep_top_k).parameters
    assert keep["ks"].default == (10, 30, 50, 70, 90)  # paper 000, Fig. 4
    assert (keep["ties"].default, keep["tie_draws"].default, keep["seed"].default) == (
        "random", 4, 0,
    )  # fmt: skip
    drop = inspect.signature(drop_increase).parameters
    assert drop["fraction"].default == 0.15  # paper 003: the top 15% pixels
    assert (drop["tie_draws"].default, drop["seed"].default) == (4, 0)
