"""Score-CAM and RISE against slow per-image, per-mask references; batching; RISE's masks."""

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from explainer_references import reference_scorecam
from torch import nn

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.explainers import Rise, RiseMasks, ScoreCam, Sise, rise_masks
from torchlap.explainers.perturbation import unique_masks
from torchlap.layers import LapBase


def lap_cnn() -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        LocalAttentionPool2d(6, 2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    for module in model.modules():
        if isinstance(module, LapBase):
            nn.init.normal_(module.scorer.heads[-1].weight, std=0.5)
    return model.eval()


def test_scorecam_matches_reference_and_batching():
    model = lap_cnn()
    images = torch.randn(3, 3, 12, 12)
    target = torch.tensor([0, 3, 1])
    ours = ScoreCam(model, mask_batch_size=5).raw(images, target)
    assert ours.shape == (3, 6, 6)  # layer "4": the input of the global LAP
    for i in range(3):
        expected = reference_scorecam(model, model[4], images[i], int(target[i]))
        torch.testing.assert_close(ours[i], expected, rtol=1e-4, atol=1e-6)
    for batch_size in (1, 64):
        other = ScoreCam(model, mask_batch_size=batch_size).raw(images, target)
        torch.testing.assert_close(other, ours, rtol=1e-5, atol=1e-7)
    named = ScoreCam(model, layer="1").raw(images, target)
    assert named.shape == (3, 12, 12)
    with pytest.raises(ValueError, match="mask_batch_size"):
        ScoreCam(model, mask_batch_size=0)


def test_unique_masks_groups_exactly_the_equal_normalized_maps():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(5, 3, 3, generator=generator)
    # copies scaled by powers of two normalise to the same bits; group 1 repeats group 0's maps
    maps = torch.cat([base, base[:2] * 4, base[:3] * 0.5, base[:2]])
    group = torch.tensor([0] * 5 + [0, 0] + [0, 0, 0] + [1, 1])
    first, inverse = unique_masks(maps, group)

    def normalized(i):
        m = maps[i].flatten().tolist()
        return tuple((v - min(m)) / (max(m) - min(m)) for v in m)

    for i in range(len(maps)):
        for j in range(len(maps)):
            same = int(group[i]) == int(group[j]) and normalized(i) == normalized(j)
            assert bool(inverse[i] == inverse[j]) == same, (i, j)
    for u, representative in enumerate(first.tolist()):
        members = (inverse == u).nonzero().flatten().tolist()
        assert representative == min(members)
    assert first.numel() == 7  # 5 distinct maps for image 0, 2 for image 1


def duplicated_cnn() -> nn.Sequential:
    """Channels 4-7 of the feature layer are 2x channels 0-3: their masks repeat (and, with
    the same classifier weights, so do the signs of their gradients, which SISE selects by)."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():
        model[0].weight[4:] = model[0].weight[:4] * 2
        model[0].bias[4:] = model[0].bias[:4] * 2
        model[5].weight[:, 4:] = model[5].weight[:, :4]
    return model.eval()


def test_scorecam_and_sise_share_forwards_between_equal_masks():
    model = duplicated_cnn()
    images = torch.randn(3, 3, 8, 8)
    target = torch.tensor([0, 2, 1])
    # SISE on the ReLU and the pooled maps (its default takes the ReLU alone: the pool after it
    # holds no convolution, so it ends no block)
    for explainer_class, options in ((ScoreCam, {}), (Sise, {"layers": ["1", "2"]})):
        fast = explainer_class(model, mask_batch_size=4, **options)
        slow = explainer_class(model, mask_batch_size=4, deduplicate=False, **options)
        maps, expected = fast.raw(images, target), slow.raw(images, target)
        torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-7)
        saved = slow.last_stats["forwards_per_image"] - fast.last_stats["forwards_per_image"]
        assert saved >= 4, explainer_class  # at least the 4 doubled channels per image
    for i in range(3):  # and both still match the one-channel-at-a-time reference
        expected = reference_scorecam(model, model[2], images[i], int(target[i]))
        torch.testing.assert_close(ScoreCam(model).raw(images, target)[i], expected)
    with pytest.raises(TypeError, match="deduplicate must be a bool"):
        ScoreCam(model, deduplicate="yes")


def reference_masks(n, size, grid_size, p, seed):
    """RISE masks one at a time: grid, bilinear upsampling, crop at the random shift."""
    height, width = size
    cell_h, cell_w = -(-height // grid_size), -(-width // grid_size)
    generator = torch.Generator().manual_seed(seed)
    grids = (torch.rand(n, grid_size, grid_size, generator=generator) < p).float()
    shift_y = torch.randint(0, cell_h, (n,), generator=generator)
    shift_x = torch.randint(0, cell_w, (n,), generator=generator)
    masks = []
    for i in range(n):
        up = F.interpolate(
            grids[i][None, None],
            size=((grid_size + 1) * cell_h, (grid_size + 1) * cell_w),
            mode="bilinear",
        )[0, 0]
        sy, sx = int(shift_y[i]), int(shift_x[i])
        masks.append(up[sy : sy + height, sx : sx + width])
    return torch.stack(masks)


@pytest.mark.parametrize("size", [(16, 16), (20, 13)])
def test_rise_masks_match_reference(size):
    masks = rise_masks(9, size, grid_size=4, p=0.3, seed=5)
    torch.testing.assert_close(masks, reference_masks(9, size, 4, 0.3, 5))
    assert masks.shape == (9, *size)
    assert masks.min() >= 0 and masks.max() <= 1
    lazy = RiseMasks(9, size, grid_size=4, p=0.3, seed=5)
    torch.testing.assert_close(lazy(torch.tensor([7, 2])), masks[[7, 2]])


def test_rise_masks_are_seeded_and_keep_p():
    a = rise_masks(400, (24, 24), seed=1)
    b = rise_masks(400, (24, 24), seed=1)
    c = rise_masks(400, (24, 24), seed=2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert abs(a.mean().item() - 0.5) < 0.03
    assert abs(rise_masks(400, (24, 24), p=0.2).mean().item() - 0.2) < 0.03


def test_rise_matches_reference_and_batching():
    model = lap_cnn()
    images = torch.randn(3, 3, 16, 16)
    target = torch.tensor([2, 0, 1])
    n, p = 20, 0.5
    masks = reference_masks(n, (16, 16), 8, p, seed=0)
    expected = torch.zeros(3, 16, 16)
    for b in range(3):
        for i in range(n):
            with torch.no_grad():
                probability = model((images[b] * masks[i])[None]).softmax(1)[0, target[b]]
            expected[b] += probability * masks[i]
    expected /= n * p
    for batch_size in (1, 2, 7, 100):
        ours = Rise(model, n_masks=n, mask_batch_size=batch_size)(images, target)
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)


def test_rise_options_are_checked():
    model = lap_cnn()
    with pytest.raises(ValueError, match="n_masks"):
        Rise(model, n_masks=0)
    with pytest.raises(ValueError, match="p must be"):
        Rise(model, p=1.5)
    with pytest.raises(TypeError, match="seed"):
        Rise(model, seed=1.5)
    with pytest.raises(ValueError, match="grid_size"):
        RiseMasks(3, (8, 8), grid_size=0)
    # before: seed -1 gave the masks of 2**64 - 1, 2**70 failed inside torch, and a grid of
    # 10**6 cells a side tried to allocate terabytes
    for seed in (-1, 2**32, 2**70):
        with pytest.raises(ValueError, match=r"seed must be an int from 0 to 4294967295"):
            Rise(model, seed=seed)
        with pytest.raises(ValueError, match=r"seed must be an int from 0 to 4294967295"):
            RiseMasks(3, (8, 8), seed=seed)
    with pytest.raises(ValueError, match=r"grid_size 9 is larger than the 8x12 images"):
        RiseMasks(3, (8, 12), grid_size=9)
    with pytest.raises(ValueError, match=r"grid_size 1000000 is larger than the 16x16"):
        Rise(model, n_masks=2, grid_size=10**6)(torch.rand(1, 3, 16, 16))
    assert RiseMasks(2, (8, 12), grid_size=8).grid_size == 8


def test_rise_options_that_make_constant_masks_are_refused():
    # a 1x1 grid upsamples to a constant mask and p=1 keeps every cell: every mask was the
    # whole image kept (or removed), and every map came out flat without a word
    model = lap_cnn()
    for build in (lambda **kw: Rise(model, **kw), lambda **kw: RiseMasks(3, (8, 8), **kw)):
        with pytest.raises(ValueError, match=r"grid_size must be an int >= 2, got 1: a 1x1"):
            build(grid_size=1)
        with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\) .*got 1"):
            build(p=1)
    assert RiseMasks(3, (8, 8), grid_size=2, p=0.99).grid_size == 2


def bn_lap_cnn() -> nn.Sequential:
    """lap_cnn with eval batch norms after its convolutions (running statistics far from
    identity), whose masked forwards fold them."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=True),
        LocalAttentionPool2d(6, 2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        AdaptiveLocalAttentionPool2d(8, 1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.3)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        if isinstance(module, LapBase):
            nn.init.normal_(module.scorer.heads[-1].weight, std=0.5)
    return model.eval()


def test_masked_forwards_fold_batch_norms_and_run_in_place():
    model = bn_lap_cnn()
    seen = []  # per forward: (batch norms folded, first ReLU in place)
    model[9].register_forward_pre_hook(
        lambda *args: seen.append((isinstance(model[1], nn.Identity), model[2].inplace))
    )
    images = torch.randn(2, 3, 12, 12)
    target = torch.tensor([1, 3])
    maps = ScoreCam(model, mask_batch_size=4).raw(images, target)
    # the forwards before the masked ones (target check, layer search, capture) out of place
    # and not folded; the fold's probe in place, not yet folded; then its check and the masked
    # forwards folded and in place
    probe = seen.index((False, True))
    assert seen[:probe] == [(False, False)] * probe and probe >= 1
    assert seen[probe + 1 :] == [(True, True)] * (len(seen) - probe - 1) and len(seen) > probe + 2
    assert isinstance(model[1], nn.BatchNorm2d) and model[2].inplace
    for i in range(2):  # the one-channel-at-a-time reference runs the model as it is
        expected = reference_scorecam(model, model[6], images[i], int(target[i]))
        torch.testing.assert_close(maps[i], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", [ScoreCam, Rise, Sise])
def test_folded_masked_forwards_give_the_maps_of_the_model_as_it_is(method, monkeypatch):
    from torchlap.explainers import perturbation

    model = bn_lap_cnn()
    images = torch.randn(2, 3, 12, 12)
    options = {"n_masks": 20} if method is Rise else {}
    folded = method(model, mask_batch_size=8, **options).raw(images, 2)
    monkeypatch.setattr(perturbation, "folded_batch_norms", lambda *args: nullcontext(0))
    plain = method(model, mask_batch_size=8, **options).raw(images, 2)
    torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-6)


def test_masked_forwards_restore_the_model_when_they_fail():
    model = bn_lap_cnn()
    calls = []

    def fail_on_the_fifth(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("out of memory, say")

    handle = model[9].register_forward_pre_hook(fail_on_the_fifth)
    with pytest.raises(RuntimeError, match="out of memory"):
        ScoreCam(model, mask_batch_size=2).raw(torch.randn(1, 3, 12, 12), 0)
    handle.remove()
    assert isinstance(model[1], nn.BatchNorm2d) and isinstance(model[5], nn.BatchNorm2d)
    assert model[2].inplace and model[6].inplace and not model.training


def test_rise_options_are_not_coerced():
    model = lap_cnn()
    with pytest.raises(TypeError, match=r"p must be a number in \(0, 1\)"):
        Rise(model, p=True)
    with pytest.raises(TypeError, match=r"p must be a number in \(0, 1\)"):
        Rise(model, p="0.5")
    with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\)"):
        Rise(model, p=float("nan"))
    # RiseMasks truncated a float seed (1.7 -> 1) and took p=True as 1.0
    with pytest.raises(TypeError, match="seed must be an int"):
        RiseMasks(3, (8, 8), seed=1.7)
    with pytest.raises(TypeError, match="p must be a number"):
        RiseMasks(3, (8, 8), p=True)
    with pytest.raises(TypeError, match=r"size must be \(height, width\)"):
        RiseMasks(3, "ab")
    with pytest.raises(ValueError, match=r"size\[0\] \(height\) must be an int >= 1"):
        RiseMasks(3, (0, 8))


def test_rise_masks_that_would_not_fit_in_memory_are_refused():
    # the grids are drawn up front: n_masks=10**11 failed in torch's allocator (a C++ stack,
    # exit 1) when RISE's turn came, after the other methods had run
    model = lap_cnn()
    message = r"n_masks 100000000000 of 8x8 grids draw 6400000000000 grid cells up front"
    with pytest.raises(ValueError, match=message):
        Rise(model, n_masks=10**11)
    with pytest.raises(ValueError, match=message):
        RiseMasks(10**11, (8, 8))
    with pytest.raises(ValueError, match=r"pass n_masks <= 4194304 at this grid_size"):
        Rise(model, n_masks=4194305)
    Rise(model, n_masks=4194304)
