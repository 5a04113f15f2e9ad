"""Paper 004, section 3.3 "Assessing the stability", against slow references.

(a) ``salt_and_pepper`` from its docstring, checked pixel by pixel: exactly
``floor(fraction * H * W + 0.5)`` pixels per image, each set in all channels to ``high`` (salt)
or ``low`` (pepper), defaults each image's per-channel minimum / maximum, the other pixels
untouched; a uniform choice of pixels, salt with probability 1/2; a seeded generator
reproduces the noise. Its draws seeded per image (``seed``/``image_ids``/``level``) against
:func:`reference_salt_and_pepper`, a loop over images and pixels written from the docstring.

(b) ``stability``: CD / CI = |Drop(%) or Inc(%) on noisy images - on clean images|, noise
fractions 0.1 .. 0.5 (Table 5). The noisy images are :func:`reference_salt_and_pepper`'s, the
level's index drawing independent noise of each image (as ``stability`` documents); Drop,
Inc and Win (paper 004's formulas with E and I the target-class softmax probabilities of the
(binarized) energy map image and of the image, as ``drop_inc_win``'s docstring states them) are
computed image by image and pixel by pixel, with the binarization of
``torchlap.metrics.binarize_map`` (min-max per image, keep >= 0.8) re-implemented in the loops.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from torchlap.metrics import drop_inc_win, salt_and_pepper, stability
from torchlap.metrics._common import KEY_STREAMS, tie_keys

B, C, H, W = 8, 2, 5, 6


def noisy_pixels(images, noisy, low, high):
    """For each image: the pixels changed, and whether each is salt (all channels ``high``),
    pepper (all ``low``) or anything else. ``low``/``high``: per image, per channel floats."""
    found = []
    for b in range(images.shape[0]):
        changed, salt, pepper, other = set(), set(), set(), set()
        for r in range(images.shape[2]):
            for q in range(images.shape[3]):
                values = [float(noisy[b, c, r, q]) for c in range(images.shape[1])]
                original = [float(images[b, c, r, q]) for c in range(images.shape[1])]
                if values == original:
                    continue
                changed.add((r, q))
                if values == [high[b][c] for c in range(len(values))]:
                    salt.add((r, q))
                elif values == [low[b][c] for c in range(len(values))]:
                    pepper.add((r, q))
                else:
                    other.add((r, q))
        found.append((changed, salt, pepper, other))
    return found


def reference_salt_and_pepper(images, fraction, seed, image_ids, level, low=None, high=None):
    """``salt_and_pepper(images, fraction, seed=, image_ids=, level=)`` from its docstring, one
    image and one pixel at a time: the ``floor(fraction * H * W + 0.5)`` pixels of lowest
    ``noise_pixels`` key (ties: lower flat index first) noised, salt where the ``noise_salt``
    key is >= 2**61; ``low``/``high`` (floats; default 0 and 1 for [0, 1] images, else each
    image's per-channel extremes)."""
    batch, channels, height, width = images.shape
    n_noisy = math.floor(Fraction(str(fraction)) * height * width + Fraction(1, 2))
    unit = all(0 <= float(v) <= 1 for v in images.flatten())
    lows, highs = channel_extremes(images)
    out = images.clone()
    for b in range(batch):

        def keys(stream, b=b):
            ids, draws = torch.tensor([int(image_ids[b])]), torch.tensor([level])
            return tie_keys(seed, ids, draws, height * width, "cpu", stream=KEY_STREAMS[stream])[0]

        pixel_keys, salt_keys = keys("noise_pixels").tolist(), keys("noise_salt").tolist()
        chosen = sorted(range(height * width), key=lambda i: (pixel_keys[i], i))[:n_noisy]
        for i in chosen:
            salt = salt_keys[i] >= 2**61
            for c in range(channels):
                if salt:
                    value = high if high is not None else (1.0 if unit else highs[b][c])
                else:
                    value = low if low is not None else (0.0 if unit else lows[b][c])
                out[b, c, i // width, i % width] = value
    return out


def channel_extremes(images):
    """Each image's per-channel minimum and maximum, by loops."""
    low, high = [], []
    for b in range(images.shape[0]):
        channels = [
            [
                float(images[b, c, r, q])
                for r in range(images.shape[2])
                for q in range(images.shape[3])
            ]
            for c in range(images.shape[1])
        ]
        low.append([min(v) for v in channels])
        high.append([max(v) for v in channels])
    return low, high


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0])
def test_salt_and_pepper_with_given_values_matches_its_definition(fraction):
    images = torch.rand(4, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    low = torch.tensor([-1.0, -2.0, -3.0]).view(1, 3, 1, 1)  # per channel, outside (0, 1)
    noisy = salt_and_pepper(
        images, fraction, generator=torch.Generator().manual_seed(1), low=low, high=2.0
    )
    expected_count = math.floor(fraction * 7 * 9 + 0.5)  # 0.1 -> 6, 0.3 -> 19, 0.5 -> 32
    lows = [[-1.0, -2.0, -3.0]] * 4
    highs = [[2.0, 2.0, 2.0]] * 4
    for changed, salt, pepper, other in noisy_pixels(images, noisy, lows, highs):
        assert len(changed) == expected_count
        assert not other  # every changed pixel is salt or pepper in all its channels
        assert salt | pepper == changed
    assert noisy.dtype == images.dtype and noisy.shape == images.shape


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_salt_and_pepper_defaults_to_each_images_channel_extremes(fraction):
    images = torch.randn(5, 3, 6, 8, generator=torch.Generator().manual_seed(2))
    noisy = salt_and_pepper(images, fraction, generator=torch.Generator().manual_seed(3))
    low, high = channel_extremes(images)
    # no clean pixel holds all its channels' extremes at once, so "changed" is well defined
    clean = noisy_pixels(torch.full_like(images, 99.0), images, low, high)
    assert all(not salt and not pepper for _, salt, pepper, _ in clean)
    for b, (changed, salt, pepper, other) in enumerate(noisy_pixels(images, noisy, low, high)):
        # a pixel drawn may already hold the value it gets in one channel, not in all
        assert len(changed) == math.floor(fraction * 48 + 0.5), b
        assert not other and salt | pepper == changed


def test_salt_and_pepper_is_uniform_half_salt_and_seeded():
    images = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(4))
    hits = [[0] * 5 for _ in range(5)]
    n_salt = n_noisy = 0
    for seed in range(400):
        noisy = salt_and_pepper(
            images, 0.2, generator=torch.Generator().manual_seed(seed), low=-1.0, high=2.0
        )
        again = salt_and_pepper(
            images, 0.2, generator=torch.Generator().manual_seed(seed), low=-1.0, high=2.0
        )
        assert torch.equal(noisy, again)
        for r in range(5):
            for q in range(5):
                if float(noisy[0, 0, r, q]) != float(images[0, 0, r, q]):
                    hits[r][q] += 1
                    n_noisy += 1
                    n_salt += float(noisy[0, 0, r, q]) == 2.0
    assert n_noisy == 400 * 5
    # each pixel ~ Binomial(400, 0.2): 80 +- 8; salt ~ Binomial(2000, 1/2): 1000 +- 22.4;
    # bounds at 5 standard deviations
    assert all(40 <= count <= 120 for row in hits for count in row), hits
    assert 888 <= n_salt <= 1112
    other = salt_and_pepper(images, 0.2, generator=torch.Generator().manual_seed(400))
    first = salt_and_pepper(images, 0.2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(other, first)


# ---------------------------------------------------------------------------- Drop/Inc/Win


def classifier(num_classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, num_classes)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(num_classes, C * H * W, generator=generator) * 0.7)
        model[1].bias.copy_(torch.randn(num_classes, generator=generator))
    return model


def probability(model, image, label):
    """Softmax probability of ``label`` for one image, by hand from the logits."""
    with torch.no_grad():
        logits = [float(v) for v in model(image[None])[0]]
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return exps[label] / sum(exps)


def weights_of(map_, variant, normalize, threshold, normalization):
    """The per-pixel factor of the (binarized) energy map, drop_inc_win's docstring."""
    rows, cols = map_.shape
    values = [[float(map_[r, q]) for q in range(cols)] for r in range(rows)]
    if normalize:
        values = [[max(v, 0.0) for v in row] for row in values]  # clipped at 0
    flat = [v for row in values for v in row]
    peak, floor = max(flat), min(flat)
    if variant == "energy":
        if not normalize:
            return values
        return [[v / peak if peak > 0 else 0.0 for v in row] for row in values]
    if normalize and normalization == "min_max":
        span = peak - floor
        scaled = [[(v - floor) / span if span > 0 else 0.0 for v in row] for row in values]
    elif normalize and normalization == "max":
        scaled = [[v / peak if peak > 0 else 0.0 for v in row] for row in values]
    else:
        scaled = values
    return [[1.0 if v >= threshold else 0.0 for v in row] for row in scaled]


def reference_drop_inc_win(model, images, maps, labels, variant, normalize, normalization):
    """Drop(%), Inc(%), Win(%) of paper 004 (E and I swapped as drop_inc_win documents)."""
    drops, incs = [], []
    for b in range(images.shape[0]):
        label = int(labels[b])
        weights = weights_of(maps[b], variant, normalize, 0.8, normalization)
        perturbed = images[b].clone()
        for c in range(images.shape[1]):
            for r in range(images.shape[2]):
                for q in range(images.shape[3]):
                    perturbed[c, r, q] = float(images[b, c, r, q]) * weights[r][q]
        i_p = probability(model, images[b], label)
        e_p = probability(model, perturbed, label)
        if e_p < i_p:
            drops.append((i_p - e_p) / i_p * 100)
        elif e_p > i_p:
            incs.append((e_p - i_p) / e_p * 100)
    drop = sum(drops) / len(drops) if drops else math.nan
    inc = sum(incs) / len(incs) if incs else math.nan
    return drop, inc, 100 * len(incs) / images.shape[0]


def explainer(images, labels):
    """An input-dependent explainer with negative values (clipped at 0 by normalize=True)."""
    weights = torch.linspace(-0.5, 1.5, H * W, dtype=images.dtype).view(H, W)
    return images[:, 0] * weights + 0.3 * images[:, 1].abs()


def floor_explainer(images, labels):
    """Positive maps with a high floor: min-max and max normalisation keep different pixels."""
    return explainer(images, labels).abs() + 2.0


def unit_explainer(images, labels):
    """Maps in [0, 1], for normalize=False."""
    return torch.sigmoid(2 * explainer(images, labels))


CASES = [
    # (variant, normalize, binarize_normalization, explain_fn)
    ("energy", True, "min_max", explainer),
    ("binarized", True, "min_max", explainer),
    ("binarized", True, "min_max", floor_explainer),
    ("binarized", True, "max", floor_explainer),
    ("energy", False, "min_max", unit_explainer),
    ("binarized", False, "min_max", unit_explainer),
]


def data(seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(B, C, H, W, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (B,), generator=generator)
    return images, labels


@pytest.mark.parametrize(("variant", "normalize", "normalization", "explain_fn"), CASES)
def test_drop_inc_win_matches_loops(variant, normalize, normalization, explain_fn):
    model = classifier()
    images, labels = data(seed=1)
    maps = explain_fn(images, labels)
    result = drop_inc_win(
        model, images, maps, labels, variants=(variant,), normalize=normalize,
        binarize_normalization=normalization,
    )  # fmt: skip
    drop, inc, win = reference_drop_inc_win(
        model, images, maps, labels, variant, normalize, normalization
    )
    assert 0 < win < 100  # both drops and increases occur: every formula is exercised
    torch.testing.assert_close(result[f"{variant}/drop_pct"].value, drop)
    torch.testing.assert_close(result[f"{variant}/inc_pct"].value, inc)
    torch.testing.assert_close(result[f"{variant}/win_pct"].value, win)


@pytest.mark.parametrize(("variant", "normalize", "normalization", "explain_fn"), CASES)
def test_stability_matches_loops(variant, normalize, normalization, explain_fn):
    model = classifier(seed=2)
    images, labels = data(seed=3)
    seen = []

    def recorded(inputs, targets):
        seen.append(inputs.clone())
        return explain_fn(inputs, targets)

    fractions = (0.1, 0.2, 0.3, 0.4, 0.5)
    result = stability(
        model, recorded, images, labels, fractions=fractions, variant=variant, seed=11,
        normalize=normalize, binarize_normalization=normalization, batch_size=B,
    )  # fmt: skip
    clean = reference_drop_inc_win(
        model, images, explain_fn(images, labels), labels, variant, normalize, normalization
    )
    assert torch.equal(seen[0], images)  # the clean maps come from the explainer
    for index, fraction in enumerate(fractions):
        noisy = reference_salt_and_pepper(images, fraction, 11, range(B), index)
        assert torch.equal(seen[index + 1], noisy)  # the explainer saw these noisy images
        drop, inc, _ = reference_drop_inc_win(
            model, noisy, explain_fn(noisy, labels), labels, variant, normalize, normalization
        )
        change_drop = result[f"noise_{fraction:g}/change_drop_pct"]
        change_inc = result[f"noise_{fraction:g}/change_inc_pct"]
        torch.testing.assert_close(change_drop.value, abs(drop - clean[0]))
        torch.testing.assert_close(change_inc.value, abs(inc - clean[1]))
        assert change_drop.n == change_inc.n == B
        assert not change_drop.higher_is_better and not change_inc.higher_is_better
    assert len(seen) == 1 + len(fractions)
