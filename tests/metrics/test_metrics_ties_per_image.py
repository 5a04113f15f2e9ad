"""The random tie-breaks of keep-k% (paper 000) and Drop%/Increase% (paper 003) are seeded per
image: an image's score depends on its own map, its index and the seed, never on the maps of the
other images scored with it (another method's ties), on which images are scored together (the
images explained again for another class) or on the earlier levels k."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.metrics import drop_increase, keep_top_k
from torchlap.metrics._common import tie_keys, top_k_mask

C, H, W = 2, 3, 4


def model():
    generator = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 5)).double()
    with torch.no_grad():
        net[1].weight.copy_(3 * torch.randn(5, C * H * W, generator=generator))
        net[1].bias.copy_(torch.randn(5, generator=generator))
    return net


def data(n=6):
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(n, C, H, W, generator=generator, dtype=torch.float64)
    maps = torch.randn(n, H, W, generator=generator, dtype=torch.float64)
    maps[0] = 0.0  # flat: every pixel tied
    maps[1, :2] = 1.0  # a tied plateau at the cut
    labels = torch.randint(0, 5, (n,), generator=generator)
    return images, maps, labels


def scores(function, images, maps, labels, **extra):
    """Per-sample scores of every result of ``function`` (keep_top_k or drop_increase)."""
    common = {"ties": "random", "tie_draws": 3, "seed": 7, "batch_size": 4}
    if function is keep_top_k:
        common["ks"] = (30, 50)
    out = function(model(), images, maps, labels, **common, **extra)
    return {name: result.per_sample for name, result in out.items()}


@pytest.mark.parametrize("function", [keep_top_k, drop_increase])
def test_an_image_score_does_not_depend_on_the_other_images_maps(function):
    """Two methods with the same map of images 0 and 1 (tied) and different maps elsewhere
    (one with ties, one without) score images 0 and 1 alike."""
    images, maps, labels = data()
    other = maps.clone()
    other[2:] = 0.0  # every other image tied too: draws 2.. ran on more rows
    first = scores(function, images, maps, labels)
    second = scores(function, images, other, labels)
    for name in first:
        torch.testing.assert_close(first[name][:2], second[name][:2], rtol=0, atol=0)


@pytest.mark.parametrize("function", [keep_top_k, drop_increase])
def test_a_subset_scored_with_its_indices_scores_as_in_the_whole_set(function):
    """The images explained again for another class, scored on their own with their indices
    in the set, get the draws of the whole set's evaluation."""
    images, maps, labels = data()
    whole = scores(function, images, maps, labels)
    rows = torch.tensor([1, 0, 4])
    part = scores(function, images[rows], maps[rows], labels[rows], image_ids=rows)
    for name in whole:
        torch.testing.assert_close(part[name], whole[name][rows], rtol=0, atol=0)


def test_a_level_scores_the_same_alone_and_after_other_levels():
    images, maps, labels = data()
    both = scores(keep_top_k, images, maps, labels)
    alone = keep_top_k(model(), images, maps, labels, ks=(50,), ties="random", tie_draws=3,
                       seed=7, batch_size=4)  # fmt: skip
    for name, result in alone.items():
        torch.testing.assert_close(result.per_sample, both[name], rtol=0, atol=0)


def test_the_seed_changes_the_draws_of_tied_images_only():
    images, maps, labels = data()
    base = scores(keep_top_k, images, maps, labels)
    other = keep_top_k(model(), images, maps, labels, ks=(30, 50), ties="random", tie_draws=3,
                       seed=8, batch_size=4)  # fmt: skip
    assert any(not torch.equal(base[n][:2], r.per_sample[:2]) for n, r in other.items())
    for name, result in other.items():  # untied images: the same pixels whatever the draw
        torch.testing.assert_close(result.per_sample[2:], base[name][2:], rtol=0, atol=0)


def test_tie_keys_pick_every_tied_pixel_equally_often():
    """A flat 4x4 map, top 4 of 16 pixels over 4000 (image, draw) keys: each pixel is kept
    about a quarter of the time; keys follow the device, are reproducible and per image."""
    n = 4000
    ids = torch.arange(n)
    keys = tie_keys(11, ids, torch.zeros(n, dtype=torch.long), 16, torch.device("cpu"))
    assert keys.dtype == torch.long and keys.shape == (n, 16)
    assert torch.equal(keys, tie_keys(11, ids, torch.zeros(n, dtype=torch.long), 16, "cpu"))
    assert torch.equal(keys[7:9], tie_keys(11, ids[7:9], torch.zeros(2, dtype=torch.long), 16,
                                           "cpu"))  # fmt: skip
    assert not torch.equal(keys, tie_keys(12, ids, torch.zeros(n, dtype=torch.long), 16, "cpu"))
    mask = top_k_mask(torch.zeros(n, 4, 4), 4, tie_break="random", keys=keys)
    share = mask.double().mean(dim=0).flatten()
    assert bool((share - 0.25).abs().max() < 0.03), share
    assert tie_keys(0, ids[:3], torch.zeros(3, dtype=torch.long), 5, "meta").device.type == "meta"


def test_tie_keys_are_refused_when_they_do_not_fit():
    maps = torch.zeros(2, 2, 2)
    with pytest.raises(ValueError, match="keys must be"):
        top_k_mask(maps, 1, tie_break="random", keys=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="keys"):
        top_k_mask(maps, 1, keys=torch.zeros(2, 4, dtype=torch.long))
    images, maps, labels = data(3)
    with pytest.raises(ValueError, match="image_ids"):
        keep_top_k(model(), images, maps, labels, ks=(50,), image_ids=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image_ids"):
        drop_increase(model(), images, maps, labels, image_ids=torch.tensor([0, -1, 2]))
