"""Stability's salt-and-pepper noise seeded per image: an image's noisy copy is a function of
(seed, image id, level, pixel) alone (``salt_and_pepper(seed=, image_ids=, level=)``), the same
alone, in any batch, at any position; against the loop reference written from the docstring
(:func:`reference_salt_and_pepper` in ``test_metrics_stability_reference``)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from test_metrics_stability_reference import reference_salt_and_pepper

from torchlap.metrics import salt_and_pepper, stability
from torchlap.metrics._common import tie_keys


def unit_images(n, seed=0, size=(3, 9, 7)):
    return torch.rand(n, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("kind", ["unit", "normalised", "given"])
def test_per_image_noise_matches_the_loop_reference(fraction, kind):
    images = unit_images(3, seed=1)
    bounds = {}
    if kind == "normalised":
        images = (images - 0.5) / 0.25  # outside [0, 1]: each image's per-channel extremes
    elif kind == "given":
        bounds = {"low": -1.0, "high": 2.0}
    ids = torch.tensor([7, 0, 40])
    got = salt_and_pepper(images, fraction, seed=9, image_ids=ids, level=3, **bounds)
    expected = reference_salt_and_pepper(images, fraction, 9, ids, 3, **bounds)
    assert torch.equal(got, expected)
    # exactly floor(f * H * W + 1/2) noisy pixels per image (given values no pixel holds)
    if kind == "given":
        noisy = ((got == -1.0) | (got == 2.0)).all(dim=1)
        assert (
            noisy.flatten(1).sum(1).tolist()
            == [math.floor(Fraction(str(fraction)) * 63 + Fraction(1, 2))] * 3
        )


def test_an_images_noise_does_not_depend_on_the_other_images_or_its_position():
    images = unit_images(5, seed=2)
    ids = torch.arange(5)
    whole = salt_and_pepper(images, 0.3, seed=4, image_ids=ids, level=1)
    for i in range(5):  # alone, with its index in the set
        alone = salt_and_pepper(images[i : i + 1], 0.3, seed=4, image_ids=ids[i : i + 1], level=1)
        assert torch.equal(alone[0], whole[i]), i
    order = torch.tensor([4, 2, 0, 3, 1])  # first, last, in the middle of another batch
    shuffled = salt_and_pepper(images[order], 0.3, seed=4, image_ids=order, level=1)
    assert torch.equal(shuffled, whole[order])
    others = torch.cat([images[:1], unit_images(3, seed=3, size=(3, 9, 7))])
    mixed = salt_and_pepper(others, 0.3, seed=4, image_ids=torch.tensor([0, 8, 9, 10]), level=1)
    assert torch.equal(mixed[0], whole[0])
    # the image's id, the level and the seed each draw other noise; the default ids are the
    # positions
    changed = (whole != images).any(dim=1)
    for kwargs in ({"image_ids": ids + 1, "seed": 4, "level": 1},
                   {"image_ids": ids, "seed": 4, "level": 2},
                   {"image_ids": ids, "seed": 5, "level": 1}):  # fmt: skip
        other = salt_and_pepper(images, 0.3, **kwargs)
        assert not torch.equal((other != images).any(dim=1), changed), kwargs
    assert torch.equal(salt_and_pepper(images, 0.3, seed=4, level=1), whole)


def test_salt_is_half_and_every_pixel_equally_likely():
    # 400 images of 8x8, 20% noised: 13 pixels each, 5200 noisy pixels in all
    images = torch.full((400, 1, 8, 8), 0.5)
    noisy = salt_and_pepper(images, 0.2, seed=0, image_ids=torch.arange(400), level=0)
    changed = noisy != 0.5
    assert changed.flatten(1).sum(1).tolist() == [13] * 400
    n_salt = int((noisy == 1.0).sum())
    # salt ~ Binomial(5200, 1/2): 2600 +- 36; each pixel noised ~ Binomial(400, 13/64): 81 +- 8;
    # bounds at 6 standard deviations, a deterministic draw at this seed
    assert abs(n_salt - 2600) <= 6 * 36, n_salt
    hits = changed.sum(dim=(0, 1)).flatten()
    assert int(hits.min()) >= 81 - 48 and int(hits.max()) <= 81 + 48, hits.tolist()


def test_the_generator_path_stays_as_it_was():
    images = unit_images(2, seed=5)
    generator = torch.Generator().manual_seed(1)
    got = salt_and_pepper(images, 0.5, generator=torch.Generator().manual_seed(1))
    draws = torch.rand(2, 9, 7, generator=generator)  # the documented stream across the batch
    salt = torch.rand(2, 1, 9, 7, generator=generator) < 0.5
    order = draws.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :32]
    noisy = torch.zeros(2, 63, dtype=torch.bool).scatter_(1, order, True).view(2, 1, 9, 7)
    expected = torch.where(noisy, torch.where(salt, 1.0, 0.0).expand_as(images), images)
    assert torch.equal(got, expected)


def test_the_noise_streams_are_independent_of_the_tie_breaks():
    ids, draws = torch.arange(3), torch.zeros(3, dtype=torch.long)
    ties = tie_keys(0, ids, draws, 16, "cpu")
    assert torch.equal(tie_keys(0, ids, draws, 16, "cpu", stream=0), ties)  # as before streams
    pixels = tie_keys(0, ids, draws, 16, "cpu", stream=1)
    salt = tie_keys(0, ids, draws, 16, "cpu", stream=2)
    assert not torch.equal(pixels, ties) and not torch.equal(pixels, salt)
    assert int(pixels.min()) >= 0 and int(pixels.max()) < 2**62
    with pytest.raises(ValueError, match="stream"):
        tie_keys(0, ids, draws, 16, "cpu", stream=-1)


def test_bad_draw_arguments_are_refused():
    images = unit_images(2)
    with pytest.raises(ValueError, match="not both"):
        salt_and_pepper(images, 0.5, generator=torch.Generator(), seed=1)
    with pytest.raises(ValueError, match="level"):
        salt_and_pepper(images, 0.5, level=2)  # without seed/image_ids: nothing it seeds
    with pytest.raises(ValueError, match="image_ids must be None or an integer tensor"):
        salt_and_pepper(images, 0.5, image_ids=torch.tensor([1, 1]))
    with pytest.raises(TypeError, match="image_ids"):
        salt_and_pepper(images, 0.5, image_ids=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="image_ids"):
        salt_and_pepper(images, 0.5, image_ids=torch.tensor([0]))
    with pytest.raises(ValueError, match="seed must be an int from 0"):
        salt_and_pepper(images, 0.5, seed=-1)
    with pytest.raises(TypeError, match="level"):
        salt_and_pepper(images, 0.5, seed=0, level=1.5)
    with pytest.raises(TypeError, match="level"):  # checked whichever draws: never ignored
        salt_and_pepper(images, 0.5, level=True)
    with pytest.raises(TypeError, match="image_ids"):  # stability checks them up front
        stability(lambda x: x.flatten(1), lambda x, t: x[:, 0], images, torch.zeros(2).long(),
                  image_ids=[0, 1])  # fmt: skip


def test_stability_noises_a_subset_as_the_whole_set():
    images = unit_images(6, seed=6)
    labels = torch.zeros(6, dtype=torch.long)
    seen = {}

    def explain_fn(key):
        def explain(x, targets):
            seen.setdefault(key, []).append(x.clone())
            return x.mean(dim=1)

        return explain

    def model(x):
        return torch.stack([x.mean(dim=(1, 2, 3)), -x.mean(dim=(1, 2, 3))], dim=1)

    options = {"fractions": (0.1, 0.4), "seed": 3, "batch_size": 4}
    stability(model, explain_fn("whole"), images, labels, **options)
    rows = torch.tensor([5, 1])
    stability(model, explain_fn("part"), images[rows], labels[rows], image_ids=rows, **options)
    # calls in chunks of 4: the clean maps, then the noisy images of each level
    assert [len(x) for x in seen["whole"]] == [4, 2] * 3 and len(seen["part"]) == 3
    whole = [torch.cat(seen["whole"][2:4]), torch.cat(seen["whole"][4:6])]
    assert torch.equal(seen["part"][1], whole[0][rows])
    assert torch.equal(seen["part"][2], whole[1][rows])
    assert not torch.equal(whole[0], whole[1])  # levels draw their own noise


def test_noise_counts_round_the_decimal_written():
    # 70% of 45 pixels is 31.5: 32 noisy pixels (the float 0.7, below 7/10, gave 31)
    images = torch.full((2, 1, 5, 9), 0.5)
    got = salt_and_pepper(images, 0.7, seed=0, image_ids=torch.tensor([0, 1]), low=-1.0, high=2.0)
    assert (got != 0.5).flatten(1).sum(1).tolist() == [32, 32]
