"""keep-k%, Drop%/Increase% (SISE), Drop/Inc/Win (ante-hoc) and stability, against slow
per-sample references that re-run the model one image at a time."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from torchlap.metrics import (
    baseline_images,
    drop_inc_win,
    drop_increase,
    keep_top_k,
    salt_and_pepper,
    stability,
)

C, H, W = 2, 5, 6


def tiny_model(num_classes=7, seed=0):
    """Linear classifier with a BatchNorm, left in train mode on purpose: the metrics must
    run it in eval mode (batch statistics would otherwise make results depend on chunks)."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(C * H * W, num_classes), nn.BatchNorm1d(num_classes)
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(num_classes, C * H * W, generator=generator))
        model[1].bias.copy_(torch.randn(num_classes, generator=generator))
        model[2].running_mean.copy_(torch.randn(num_classes, generator=generator))
        model[2].running_var.copy_(torch.rand(num_classes, generator=generator) + 0.5)
    return model.double().train()


def data(seed=0, batch=9, num_classes=7):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, C, H, W, generator=generator, dtype=torch.float64)
    maps = torch.rand(batch, H, W, generator=generator, dtype=torch.float64)
    maps[0] = 0.0  # all-zero map: ties everywhere
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    return images, maps, labels


def predict_one(model, image):
    """Reference: one image at a time, model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(image[None])[0]
    finally:
        model.train(was_training)


def ref_top_pixels(score, count):
    width = score.shape[1]
    order = sorted(
        ((r, c) for r in range(score.shape[0]) for c in range(width)),
        key=lambda rc: (-float(score[rc]), rc[0] * width + rc[1]),
    )
    return set(order[:count])


def ref_count(fraction, n_pixels):
    # round half up on the decimal written (the float 0.7 is below 7/10)
    return max(1, math.floor(Fraction(str(fraction)) * n_pixels + Fraction(1, 2)))


def ref_keep(image, score, count, fill):
    kept = ref_top_pixels(score, count)
    out = fill.clone()
    for r, c in kept:
        for ch in range(image.shape[0]):
            out[ch, r, c] = image[ch, r, c]
    return out


def ref_fill(image, baseline):
    if baseline == "zero":
        return torch.zeros_like(image)
    if baseline == "mean":
        out = torch.empty_like(image)
        for ch in range(image.shape[0]):
            total = sum(float(image[ch, r, c]) for r in range(H) for c in range(W))
            out[ch] = total / (H * W)
        return out
    raise AssertionError(baseline)


def in_top(logits, target, t):
    return int(target) in logits.topk(t).indices.tolist()


# -------------------------------------------------------------------------- keep-k%


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_keep_top_k_matches_reference(baseline):
    model = tiny_model()
    images, maps, labels = data()
    ks = (10, 30, 50, 70, 90)
    result = keep_top_k(
        model, images, maps, labels, ks=ks, baseline=baseline, batch_size=4, ties="index"
    )
    assert model.training and model[2].training  # flags restored
    for k in ks:
        hits = {
            "top1_vs_prediction": [],
            "top5_vs_prediction": [],
            "top1_vs_label": [],
            "top5_vs_label": [],
        }
        for i in range(images.shape[0]):
            original = predict_one(model, images[i]).argmax()
            count = ref_count(k / 100, H * W)
            modified = ref_keep(images[i], maps[i], count, ref_fill(images[i], baseline))
            logits = predict_one(model, modified)
            hits["top1_vs_prediction"].append(in_top(logits, original, 1))
            hits["top5_vs_prediction"].append(in_top(logits, original, 5))
            hits["top1_vs_label"].append(in_top(logits, labels[i], 1))
            hits["top5_vs_label"].append(in_top(logits, labels[i], 5))
        for key, values in hits.items():
            got = result[f"keep_{k}/{key}"]
            torch.testing.assert_close(got.value, sum(values) / len(values))
            assert got.higher_is_better and got.n == images.shape[0] and got.n_excluded == 0
    assert len(result) == 4 * len(ks)


def test_keep_top_k_all_pixels_keeps_the_prediction_and_chunking_is_invisible():
    model = tiny_model()
    images, maps, labels = data()
    full = keep_top_k(model, images, maps, labels, ks=(100,), batch_size=2)
    assert full["keep_100/top1_vs_prediction"].value == 1.0
    a = keep_top_k(model, images, maps, labels, ks=(30,), batch_size=1)
    b = keep_top_k(model, images, maps, labels, ks=(30,), batch_size=64)
    assert {k: v.value for k, v in a.items()} == {k: v.value for k, v in b.items()}


def test_keep_top_k_with_few_classes_reports_top_t(caplog):
    model = tiny_model(num_classes=3)
    images, maps, labels = data(num_classes=3)
    with caplog.at_level("INFO", logger="torchlap.metrics"):
        result = keep_top_k(model, images, maps, labels, ks=(50,))
    assert set(result) == {
        "keep_50/top1_vs_prediction",
        "keep_50/top3_vs_prediction",
        "keep_50/top1_vs_label",
        "keep_50/top3_vs_label",
    }
    assert result["keep_50/top3_vs_label"].value == 1.0  # every class is in the top 3
    assert "top-3" in caplog.text


def test_blur_baseline_is_torchvision_gaussian_blur_per_image():
    images, _, _ = data()
    blurred = baseline_images(images, "blur", blur_sigma=1.0)
    # kernel 2 * ceil(3 * 1) + 1 = 7, clipped to 2 * 5 - 1 = 9 (H) and 2 * 6 - 1 = 11 (W): 7 x 7
    for i in range(images.shape[0]):
        torch.testing.assert_close(blurred[i], gaussian_blur(images[i], [7, 7], [1.0, 1.0]))
    constant = torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64)
    torch.testing.assert_close(baseline_images(constant, "blur"), constant)
    with pytest.raises(ValueError, match="baseline"):
        baseline_images(images, "noise")


def test_metrics_restore_flags_on_error():
    model = tiny_model()
    images, maps, labels = data()
    calls = {"n": 0}
    original_forward = model.forward

    def failing_forward(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return original_forward(x)

    model.forward = failing_forward
    with pytest.raises(RuntimeError, match="boom"):
        keep_top_k(model, images, maps, labels, batch_size=5)
    assert model.training and all(m.training for m in model.modules())
    model[1].eval()  # a mixed state is restored exactly, too
    del model.forward
    keep_top_k(model, images, maps, labels, ks=(10,))
    assert model.training and not model[1].training and model[2].training


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ks": (0,)}, ValueError, "percentage"),
        ({"ks": (120,)}, ValueError, "percentage"),
        ({"baseline": "noise"}, ValueError, "baseline"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        # one key per level: the second 50 overwrote the first
        ({"ks": (50, 50)}, ValueError, "repeats the level"),
        ({"ks": (10, 10.0)}, ValueError, "repeats the level"),
        ({"ks": "50"}, TypeError, "sequence of percentages"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": True}, TypeError, "seed must be an int"),
        ({"blur_sigma": True}, TypeError, "blur_sigma"),
        ({"tie_draws": 0}, ValueError, "tie_draws"),
    ],
)
def test_keep_top_k_bad_arguments(kwargs, error, match):
    model = tiny_model()
    images, maps, labels = data()
    with pytest.raises(error, match=match):
        keep_top_k(model, images, maps, labels, **kwargs)


def counting(model):
    """``model`` as a callable that counts its passes."""
    calls = []

    def run(x):
        calls.append(x.shape[0])
        return model(x)

    return run, calls


def nan_images(images):
    images = images.clone()
    images[2, 0, 1, 1] = float("nan")
    return images


@pytest.mark.parametrize(
    ("metric", "kwargs", "error", "match"),
    [
        ("keep_top_k", {"seed": 1.5}, TypeError, "seed must be an int"),
        ("keep_top_k", {"images": "nan"}, ValueError, r"images \[2\] .*NaN or infinite"),
        ("drop_increase", {"seed": 1.5}, TypeError, "seed must be an int"),
        ("drop_increase", {"fraction": True}, TypeError, "fraction must be a number"),
        ("drop_increase", {"images": "nan"}, ValueError, "NaN or infinite pixels"),
        ("drop_inc_win", {"normalize": "no"}, TypeError, "normalize must be True or False"),
        ("drop_inc_win", {"binarize_threshold": "0.8"}, TypeError, "binarize_threshold"),
        ("drop_inc_win", {"binarize_threshold": True}, TypeError, "binarize_threshold"),
        ("drop_inc_win", {"binarize_normalization": "mm"}, ValueError, "binarize_normalization"),
        ("drop_inc_win", {"images": "nan"}, ValueError, "NaN or infinite pixels"),
        ("stability", {"seed": 1.5}, TypeError, "seed must be an int"),
        ("stability", {"normalize": "no"}, TypeError, "normalize must be True or False"),
        ("stability", {"fractions": (0.1, 0.1)}, ValueError, "repeats the level"),
        ("stability", {"fractions": (True,)}, TypeError, "fractions"),
        ("stability", {"binarize_threshold": 1.5}, ValueError, "binarize_threshold"),
        ("stability", {"images": "nan"}, ValueError, "NaN or infinite pixels"),
    ],
)
def test_bad_options_are_refused_before_the_first_model_pass(metric, kwargs, error, match):
    images, maps, labels = data()
    if kwargs.pop("images", None) == "nan":
        images = nan_images(images)
    model, calls = counting(tiny_model())
    explained = []
    if metric == "stability":
        explain_fn = lambda x, t: explained.append(1) or x.mean(dim=1)  # noqa: E731
        call = lambda: stability(model, explain_fn, images, labels, **kwargs)  # noqa: E731
    else:
        function = {"keep_top_k": keep_top_k, "drop_increase": drop_increase}
        function["drop_inc_win"] = drop_inc_win
        call = lambda: function[metric](model, images, maps, labels, **kwargs)  # noqa: E731
    with pytest.raises(error, match=match):
        call()
    assert calls == [] and explained == []  # seeds used to fail after one or two passes


def test_shape_mismatches_raise():
    model = tiny_model()
    images, maps, labels = data()
    with pytest.raises(ValueError, match="resize maps"):
        keep_top_k(model, images, maps[:, :3], labels)
    with pytest.raises(ValueError, match="labels"):
        keep_top_k(model, images, maps, labels[:3])
    with pytest.raises(ValueError, match=r"n(um)?_classes"):
        keep_top_k(model, images, maps, labels + 100)
    with pytest.raises(ValueError, match="logits"):
        keep_top_k(lambda x: x.sum(dim=(1, 2, 3)), images, maps, labels)


# ---------------------------------------------------------------------- SISE Drop/Inc


def softmax_prob(logits, target):
    exps = [math.exp(float(v)) for v in logits]
    return exps[int(target)] / sum(exps)


@pytest.mark.parametrize("target", ["prediction", "label"])
def test_drop_increase_matches_reference(target):
    model = tiny_model()
    images, maps, labels = data(seed=3)
    result = drop_increase(model, images, maps, labels, target=target, batch_size=4, ties="index")
    drops, increases = [], []
    for i in range(images.shape[0]):
        original = predict_one(model, images[i])
        cls = int(original.argmax()) if target == "prediction" else int(labels[i])
        masked = ref_keep(images[i], maps[i], ref_count(0.15, H * W), torch.zeros_like(images[i]))
        p, p_masked = softmax_prob(original, cls), softmax_prob(predict_one(model, masked), cls)
        drops.append(max(0.0, p - p_masked) / p * 100)
        increases.append(100.0 if p_masked > p else 0.0)
    torch.testing.assert_close(result["drop_pct"].value, sum(drops) / len(drops))
    torch.testing.assert_close(result["increase_pct"].value, sum(increases) / len(increases))
    assert not result["drop_pct"].higher_is_better and result["increase_pct"].higher_is_better
    with pytest.raises(ValueError, match="labels"):
        drop_increase(model, images, maps, target="label")


# -------------------------------------------------------------- ante-hoc Drop/Inc/Win


def ref_unit_map(score):
    peak = max(max(float(v), 0.0) for v in score.flatten())
    out = torch.zeros_like(score)
    for r in range(score.shape[0]):
        for c in range(score.shape[1]):
            out[r, c] = max(float(score[r, c]), 0.0) / peak if peak > 0 else 0.0
    return out


def ref_min_max_region(score, threshold):
    """Paper 004's binarized map: clipped at 0, min-max normalised, kept where >= threshold."""
    values = [max(float(v), 0.0) for v in score.flatten()]
    low, high = min(values), max(values)
    out = torch.zeros_like(score)
    for r in range(score.shape[0]):
        for c in range(score.shape[1]):
            value = max(float(score[r, c]), 0.0)
            normalized = (value - low) / (high - low) if high > low else 0.0
            out[r, c] = 1.0 if normalized >= threshold else 0.0
    return out


def ref_drop_inc_win(model, images, maps, labels, variant, threshold=0.8):
    drops, incs, wins = [], [], []
    for i in range(images.shape[0]):
        unit = ref_unit_map(maps[i])
        if variant == "binarized":
            unit = ref_min_max_region(maps[i], threshold)
        energy = images[i] * unit  # image ⊙ map, broadcast over channels
        p_image = softmax_prob(predict_one(model, images[i]), labels[i])
        p_map = softmax_prob(predict_one(model, energy), labels[i])
        if p_map < p_image:
            drops.append((p_image - p_map) / p_image * 100)
        if p_map > p_image:
            incs.append((p_map - p_image) / p_map * 100)
        wins.append(100.0 if p_map > p_image else 0.0)
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    return mean(drops), len(drops), mean(incs), len(incs), mean(wins)


@pytest.mark.parametrize("variant", ["energy", "binarized"])
@pytest.mark.parametrize("kind", ["signed", "floor"])
def test_drop_inc_win_matches_reference(variant, kind):
    model = tiny_model()
    images, maps, labels = data(seed=4, batch=12)
    # signed, beyond [0, 1]: clipped at 0; or a floor at 0.5: min-max and max normalisation differ
    maps = maps * 3 - 0.5 if kind == "signed" else maps * 0.5 + 0.5
    result = drop_inc_win(model, images, maps, labels, variants=(variant,), batch_size=5)
    drop, n_drop, inc, n_inc, win = ref_drop_inc_win(model, images, maps, labels, variant)
    assert n_drop > 0 and n_inc > 0  # the case exercises both branches
    torch.testing.assert_close(result[f"{variant}/drop_pct"].value, drop)
    torch.testing.assert_close(result[f"{variant}/inc_pct"].value, inc)
    torch.testing.assert_close(result[f"{variant}/win_pct"].value, win)
    assert result[f"{variant}/drop_pct"].n == n_drop
    assert result[f"{variant}/inc_pct"].n == n_inc
    assert result[f"{variant}/drop_pct"].n_excluded == images.shape[0] - n_drop
    assert [
        result[f"{variant}/{k}"].higher_is_better for k in ("drop_pct", "inc_pct", "win_pct")
    ] == [
        False,
        True,
        True,
    ]


def test_drop_inc_win_without_drops_is_nan_not_zero():
    # a model that ignores its input never changes its probability: no drop, no increase
    images, maps, labels = data()
    constant = lambda x: torch.zeros(x.shape[0], 4, dtype=x.dtype)  # noqa: E731
    result = drop_inc_win(constant, images, maps, labels % 4, variants="energy")
    assert result["energy/drop_pct"].n == 0 and result["energy/drop_pct"].to_dict()["value"] is None
    assert result["energy/win_pct"].value == 0.0
    with pytest.raises(ValueError, match="normalize=False"):
        drop_inc_win(constant, images, maps * 2, labels % 4, normalize=False)
    with pytest.raises(ValueError, match="variants"):
        drop_inc_win(constant, images, maps, labels % 4, variants=("soft",))


def test_binarized_drop_inc_win_keeps_the_top_of_a_map_with_a_high_floor():
    # the ante-hoc interpretation map has a high floor: divided by its maximum every pixel
    # passed 0.8 (binarized Drop/Inc were nan, Win 0); min-max keeps the top fifth of its range
    generator = torch.Generator().manual_seed(3)
    images = torch.ones(4, C, H, W, dtype=torch.float64)
    maps = 0.9 + 0.1 * torch.rand(4, H, W, generator=generator, dtype=torch.float64)
    labels = torch.zeros(4, dtype=torch.long)
    seen = []

    def model(x):
        seen.append(x.clone())
        return tiny_model()(x)

    drop_inc_win(model, images, maps, labels, variants="binarized")
    kept = seen[-1][:, 0] != 0
    expected = torch.stack([ref_min_max_region(m, 0.8) for m in maps]).bool()
    assert torch.equal(kept, expected)
    assert 0.05 < float(kept.double().mean()) < 0.4
    drop_inc_win(model, images, maps, labels, variants="binarized", binarize_normalization="max")
    assert bool((seen[-1] != 0).all())  # the earlier rule, as an option


# ----------------------------------------------------------------------- stability


def test_salt_and_pepper_counts_values_and_seed():
    images = torch.rand(4, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    noisy = salt_and_pepper(images, 0.3, generator=torch.Generator().manual_seed(1))
    low, high = 0.0, 1.0  # [0, 1] images: black pepper, white salt (not each image's min/max)
    changed = (noisy != images).any(dim=1)
    is_low = (noisy == low).all(dim=1)
    is_high = (noisy == high).all(dim=1)
    for i in range(images.shape[0]):
        noised = is_low[i] | is_high[i]
        assert int(noised.sum()) == 30  # exactly floor(0.3 * 100 + 0.5) pixels
        assert bool((changed[i] <= noised).all())  # nothing else changed
        assert 5 < int(is_high[i].sum()) < 25  # roughly half salt
    again = salt_and_pepper(images, 0.3, generator=torch.Generator().manual_seed(1))
    other = salt_and_pepper(images, 0.3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy, again) and not torch.equal(noisy, other)
    torch.testing.assert_close(salt_and_pepper(images, 0.0), images)
    fixed = salt_and_pepper(images, 1.0, low=0.0, high=1.0)
    assert bool(((fixed == 0) | (fixed == 1)).all())


def test_salt_and_pepper_defaults_to_black_and_white_for_unit_images_only():
    generator = torch.Generator().manual_seed(0)
    dim = 0.2 + 0.4 * torch.rand(2, 3, 8, 8, generator=generator)  # values in [0.2, 0.6]
    noisy = salt_and_pepper(dim, 0.5, generator=torch.Generator().manual_seed(1))
    values = noisy[(noisy != dim).any(dim=1, keepdim=True).expand_as(noisy)]
    assert set(values.unique().tolist()) == {0.0, 1.0}
    # images outside [0, 1] (normalised inputs): each image's per-channel minimum / maximum
    normalised = (dim - 0.5) / 0.25
    noisy = salt_and_pepper(normalised, 0.5, generator=torch.Generator().manual_seed(1))
    low = normalised.amin(dim=(2, 3), keepdim=True)
    high = normalised.amax(dim=(2, 3), keepdim=True)
    changed = (noisy != normalised).any(dim=1)
    assert bool((((noisy == low) | (noisy == high)).all(dim=1) | ~changed).all())
    assert bool(changed.any())


def test_salt_and_pepper_refuses_non_finite_or_swapped_values():
    images = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="low must be a finite number"):
        salt_and_pepper(images, 0.5, low=float("nan"))  # wrote NaN pixels
    with pytest.raises(ValueError, match="finite with low <= high"):
        salt_and_pepper(images, 0.5, high=torch.tensor(float("inf")))
    with pytest.raises(ValueError, match="low <= high"):
        salt_and_pepper(images, 0.5, low=1.0, high=0.0)
    with pytest.raises(TypeError, match=r"fraction must be a number in \[0, 1\]"):
        salt_and_pepper(images, True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        salt_and_pepper(nan_images(torch.rand(3, 3, 6, 6)), 0.5)


def test_stability_matches_reference():
    model = tiny_model()
    images, _, labels = data(seed=6, batch=10)
    weights = torch.rand(H, W, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    calls = []

    def explain_fn(x, targets):  # an input-dependent explainer
        calls.append(x.shape[0])
        return x.abs().mean(dim=1) * weights

    fractions = (0.1, 0.3, 0.5)
    result = stability(model, explain_fn, images, labels, fractions=fractions, seed=5, batch_size=4)
    assert max(calls) <= 4  # the explainer is called in chunks
    clean = ref_drop_inc_win(model, images, explain_fn(images, labels), labels, "energy")
    for index, fraction in enumerate(fractions):
        noisy = salt_and_pepper(images, fraction, seed=5, level=index)  # seeded per image
        drop, _, inc, _, _ = ref_drop_inc_win(
            model, noisy, explain_fn(noisy, labels), labels, "energy"
        )
        got_drop = result[f"noise_{fraction:g}/change_drop_pct"]
        got_inc = result[f"noise_{fraction:g}/change_inc_pct"]
        torch.testing.assert_close(got_drop.value, abs(drop - clean[0]))
        torch.testing.assert_close(got_inc.value, abs(inc - clean[2]))
        assert not got_drop.higher_is_better and got_drop.n == images.shape[0]
    assert model.training
    with pytest.raises(ValueError, match="fractions"):
        stability(model, explain_fn, images, labels, fractions=(0.0,))
    with pytest.raises(ValueError, match="explain_fn output"):
        stability(model, lambda x, t: x.mean(dim=1)[:, :2], images, labels)


def _nan_where(rows):
    """A model whose logits are NaN for the images (by their first pixel's identity) in
    ``rows`` of the original batch, and finite elsewhere."""

    def model(x):
        out = torch.zeros(x.shape[0], 3, dtype=x.dtype)
        out[torch.isin(x[:, 0, 0, 0], rows)] = float("nan")
        return out

    return model


@pytest.mark.parametrize("metric", ["keep_top_k", "drop_increase", "drop_inc_win"])
def test_nan_logits_on_the_images_are_refused_naming_them(metric):
    """Before: a model returning NaN logits scored keep-k% 1.0 (NaN ranks any class first)."""
    images = torch.rand(4, C, H, W)
    images[:, 0, 0, 0] = torch.arange(4.0) + 10  # each image's first pixel: its identity
    maps, labels = torch.rand(4, H, W), torch.tensor([0, 1, 2, 0])
    model = _nan_where(torch.tensor([11.0, 13.0]))
    call = {
        "keep_top_k": lambda: keep_top_k(model, images, maps, labels, ks=(10,)),
        "drop_increase": lambda: drop_increase(model, images, maps),
        "drop_inc_win": lambda: drop_inc_win(model, images, maps, labels),
    }[metric]
    with pytest.raises(ValueError, match=r"NaN or infinite logits for images \[1, 3\] \(batch"):
        call()


def test_nan_logits_on_perturbed_copies_name_the_images_and_the_copies():
    """Finite on the images, NaN on some of their kept-top-k copies: the message names which
    images and what the copies were, with ties drawn again too (ties="random")."""
    images = torch.rand(3, C, H, W) + 1
    maps = torch.zeros(3, H, W)  # every pixel tied: the random draws re-run every image

    def model(x):
        out = torch.zeros(x.shape[0], 3)
        out[x.flatten(1).min(dim=1).values == 0] = float("inf")  # a filled (zero) pixel
        return out

    with pytest.raises(ValueError, match=r"images \[0, 1, 2\] .* on copies keeping only their top"):
        keep_top_k(model, images, maps, torch.tensor([0, 1, 2]), ks=(10,), ties="random")


def test_images_that_do_not_fit_the_model_are_refused_before_it_runs():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    maps, labels = torch.rand(2, 8, 8), torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"images are torch.float64 but the model's parameters"):
        keep_top_k(model, torch.rand(2, 3, 8, 8, dtype=torch.float64), maps, labels, ks=(10,))
    with pytest.raises(
        ValueError, match=r"images have 1 channels .* first convolution '0' takes 3"
    ):
        drop_increase(model, torch.rand(2, 1, 8, 8), maps)


def test_drop_increase_of_a_single_output_model_reads_its_sigmoid():
    """A single-output model's confidence is the sigmoid of its logit (the explainers' Psi): a
    softmax over one logit is 1 on every image, which made Drop% and Increase% 0 whatever the
    maps."""
    generator = torch.Generator().manual_seed(7)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 1)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(1, C * H * W, generator=generator))
    images, maps, _ = data(seed=8, batch=12)
    result = drop_increase(model, images, maps, ties="index")
    drops, increases = [], []
    for i in range(images.shape[0]):
        masked = ref_keep(images[i], maps[i], ref_count(0.15, H * W), torch.zeros_like(images[i]))
        p = 1 / (1 + math.exp(-float(predict_one(model, images[i])[0])))
        p_masked = 1 / (1 + math.exp(-float(predict_one(model, masked)[0])))
        drops.append(max(0.0, p - p_masked) / p * 100)
        increases.append(100.0 if p_masked > p else 0.0)
    torch.testing.assert_close(result["drop_pct"].value, sum(drops) / len(drops))
    torch.testing.assert_close(result["increase_pct"].value, sum(increases) / len(increases))
    assert result["drop_pct"].value > 0 and 0 < result["increase_pct"].value < 100
