"""SISE (paper 003): block-wise layers, Otsu, fusion, and the whole method against a slow
single-image reference of Eq. 6-12 and the cascaded fusion."""

import pytest
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu
from torch import nn

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.explainers import Sise, otsu_threshold, sise_fusion
from torchlap.layers import LapBase


def cnn(lap: bool) -> nn.Sequential:
    pool = (lambda c: LocalAttentionPool2d(c, 2)) if lap else (lambda c: nn.MaxPool2d(2))
    final = AdaptiveLocalAttentionPool2d(8, 1) if lap else nn.AdaptiveAvgPool2d(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        pool(6),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        pool(8),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        final,
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    for module in model.modules():
        if isinstance(module, LapBase):
            nn.init.normal_(module.scorer.heads[-1].weight, std=0.5)
    return model.eval()


def test_otsu_matches_skimage():
    maps = torch.rand(5, 9, 11, dtype=torch.float64)
    maps[1] = maps[1] ** 4  # skewed histogram
    maps[2] = (maps[2] > 0.7).double() * 3 + 1  # two values
    maps[3, :5] = -2.0  # a dominant mode
    maps[4] = torch.randn(9, 11).exp()
    ours = otsu_threshold(maps)
    for i in range(5):
        assert ours[i].item() == pytest.approx(threshold_otsu(maps[i].numpy()), rel=1e-9)
    constant = torch.full((1, 4, 4), 0.25)
    assert otsu_threshold(constant).item() == 0.25
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        otsu_threshold(torch.rand(4, 4))


def reference_fusion(maps):
    fused = maps[0].clone()
    for later in maps[1:]:
        mask = torch.from_numpy(later.numpy() > threshold_otsu(later.numpy()))
        fused = (fused + later) * mask
    return fused


def test_fusion_matches_reference():
    maps = torch.rand(4, 2, 10, 10, dtype=torch.float64)
    fused = sise_fusion(maps)
    for b in range(2):
        torch.testing.assert_close(fused[b], reference_fusion([m[b] for m in maps]))
    torch.testing.assert_close(sise_fusion(maps[:1]), maps[0])
    with pytest.raises(ValueError, match=r"\(L, B, H, W\)"):
        sise_fusion(maps[0])


def reference_sise(model, layer_names, image, target, mu=0.0):
    """SISE for one image: Eq. 6-12 channel by channel, then the cascaded fusion."""
    modules = dict(model.named_modules())
    captured = {}
    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: captured.update({name: o}))
        for name in layer_names
    ]
    x = image[None].clone().requires_grad_(True)
    probability = model(x).softmax(dim=1)[0, target]
    for handle in handles:
        handle.remove()
    visualization = []
    for name in layer_names:
        activations = captured[name]
        (gradient,) = torch.autograd.grad(probability, activations, retain_graph=True)
        activations, gradient = activations[0].detach(), gradient[0]
        alpha = [gradient[k].sum().item() for k in range(activations.shape[0])]  # Eq. 6
        beta = max(alpha)  # Eq. 8
        v = torch.zeros(image.shape[-2:])
        kept = 0
        for k, a_k in enumerate(alpha):
            if not (a_k > mu * beta and a_k > 0):  # Eq. 7
                continue
            up = F.interpolate(activations[k][None, None], size=image.shape[-2:], mode="bilinear")
            up = up[0, 0]
            if up.max() == up.min():
                continue
            mask = (up - up.min()) / (up.max() - up.min())  # Omega
            with torch.no_grad():
                score = model((image * mask)[None]).softmax(dim=1)[0, target]
            v += score * mask / mask.sum()  # Eq. 10-11
            kept += 1
        visualization.append(v / max(kept, 1))  # Eq. 12: the mean over kept masks
    return reference_fusion(visualization), visualization


@pytest.mark.parametrize("lap", [False, True])
def test_sise_matches_slow_reference(lap):
    model = cnn(lap)
    images = torch.randn(2, 3, 16, 16)
    target = torch.tensor([1, 3])
    explainer = Sise(model, mask_batch_size=7)
    names = explainer.feature_probe(images).block_layers
    assert names == ["1", "4", "7"]  # the ReLU before each (LAP or max) pool
    ours = explainer(images, target)
    layers_maps = explainer.visualization_maps(images, target)
    assert layers_maps.shape == (3, 2, 16, 16)
    for i in range(2):
        expected, expected_layers = reference_sise(model, names, images[i], int(target[i]))
        for level in range(3):
            torch.testing.assert_close(layers_maps[level, i], expected_layers[level])
        torch.testing.assert_close(ours[i], expected)
        assert (expected > 0).any() and all((v > 0).any() for v in expected_layers)
    # mu = 0.5 keeps fewer maps: fewer forwards
    with_mu = Sise(model, mu=0.5)
    maps_mu = with_mu(images, target)
    assert with_mu.last_stats["forwards_per_image"] < explainer.last_stats["forwards_per_image"]
    expected_mu, _ = reference_sise(model, names, images[0], int(target[0]), mu=0.5)
    torch.testing.assert_close(maps_mu[0], expected_mu)


def test_sise_named_layers_and_checks():
    model = cnn(False)
    images = torch.randn(1, 3, 16, 16)
    maps = Sise(model, layers=["4", "7"])(images)
    assert maps.shape == (1, 16, 16)
    with pytest.raises(ValueError, match="unknown layer"):
        Sise(model, layers=["9x"])(images)
    with pytest.raises(TypeError, match="list of module names"):
        Sise(model, layers="4")
    with pytest.raises(ValueError, match="mu"):
        Sise(model, mu=-1)


@pytest.mark.parametrize("mu", [float("nan"), 1, 2.0, -0.1, "0.3", True])
def test_mu_outside_0_1_is_refused(mu):
    # Eq. 7 keeps alpha_k > mu * max_k alpha_k: mu >= 1 keeps no map (all-zero maps), NaN too
    error = TypeError if isinstance(mu, (str, bool)) else ValueError
    with pytest.raises(error, match=r"mu must be a number in \[0, 1\)"):
        Sise(cnn(False), mu=mu)
    assert Sise(cnn(False), mu=0.99).mu == 0.99


def reference_min_max(v):
    """A map rescaled to [0, 1] pixel by pixel (a constant map becomes all zeros)."""
    values = [float(x) for x in v.flatten()]
    low, high = min(values), max(values)
    out = torch.zeros_like(v)
    for r in range(v.shape[0]):
        for c in range(v.shape[1]):
            out[r, c] = (float(v[r, c]) - low) / (high - low) if high > low else 0.0
    return out


def test_min_max_fusion_matches_reference():
    """``normalization="min_max"``: each visualisation map to [0, 1], then the cascade."""
    maps = torch.rand(3, 2, 7, 9, dtype=torch.float64)
    maps[0] = maps[0] * 50 + 3  # scales far apart: the normalisation matters
    maps[2, 1] = 0.4  # a constant last map: its Otsu mask keeps nothing
    fused = sise_fusion(maps, "min_max")
    for b in range(2):
        expected = reference_fusion([reference_min_max(m[b]) for m in maps])
        torch.testing.assert_close(fused[b], expected)
    # Otsu's threshold follows the rescaling: the binary masks, hence the support, are the same
    assert torch.equal(fused != 0, sise_fusion(maps) != 0)
    assert not torch.allclose(fused, sise_fusion(maps))
    with pytest.raises(ValueError, match="normalization must be one of 'none', 'min_max'"):
        sise_fusion(maps, "max")


def test_sise_min_max_fusion_matches_slow_reference():
    model = cnn(False)
    images = torch.randn(2, 3, 16, 16)
    target = torch.tensor([2, 0])
    explainer = Sise(model, fusion_normalization="min_max")
    ours = explainer(images, target)
    for i in range(2):
        _, layers_maps = reference_sise(model, ["1", "4", "7"], images[i], int(target[i]))
        expected = reference_fusion([reference_min_max(v) for v in layers_maps])
        torch.testing.assert_close(ours[i], expected)
    with pytest.raises(ValueError, match="fusion_normalization must be one of"):
        Sise(model, fusion_normalization="otsu")
