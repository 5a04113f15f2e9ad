"""SISE at its boundaries (paper 003): Otsu against scikit-image over many small maps, the
fusion mask of a flat (e.g. all-zero) visualisation map, and Eq. 7's strict ``alpha > mu beta``."""

import pytest
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu
from torch import Tensor, nn

from torchlap.explainers import Sise, otsu_threshold, sise_fusion


def test_otsu_matches_skimage_on_many_small_maps() -> None:
    """Batched Otsu equals ``skimage.filters.threshold_otsu`` map by map (bin centres, means)."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(200, 6, 7, generator=generator, dtype=torch.float64)
    powers = torch.arange(200, dtype=torch.float64).remainder(5)[:, None, None] + 1
    maps = maps**powers
    ours = otsu_threshold(maps)
    for i in range(maps.shape[0]):
        assert ours[i].item() == pytest.approx(threshold_otsu(maps[i].numpy()), rel=1e-9), i


def test_fusion_mask_of_a_flat_later_map_keeps_nothing() -> None:
    """A constant later map has no pixel above its Otsu threshold (its value): F becomes 0."""
    first = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    for value in (0.0, 0.3):
        later = torch.full((1, 2, 5, 5), value, dtype=torch.float64)
        fused = sise_fusion(torch.cat([first, later]))
        torch.testing.assert_close(fused, torch.zeros(2, 5, 5, dtype=torch.float64))


def _two_channel_model() -> nn.Sequential:
    """Channel 1's head weights are exactly twice channel 0's: alpha_1 = 2 alpha_0 exactly."""
    model = nn.Sequential(
        nn.Conv2d(2, 2, 1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 2, bias=False),
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2)[:, :, None, None])
        model[4].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, -2.0]]))
    return model.eval()


def _loop_visualization(model: nn.Module, image: Tensor, target: int, mu: float) -> Tensor:
    """Eq. 6-12 for layer "1", channel by channel, with Eq. 7's strict comparison."""
    captured = {}
    handle = model[1].register_forward_hook(lambda m, i, o: captured.update(a=o))
    x = image[None].clone().requires_grad_(True)
    probability = model(x).softmax(dim=1)[0, target]
    handle.remove()
    (gradient,) = torch.autograd.grad(probability, captured["a"])
    activations, gradient = captured["a"][0].detach(), gradient[0]
    alpha = [gradient[k].sum().item() for k in range(activations.shape[0])]
    beta = max(alpha)
    v, kept = torch.zeros(image.shape[-2:]), 0
    for k, a_k in enumerate(alpha):
        if not (a_k > mu * beta and a_k > 0):
            continue
        up = F.interpolate(activations[k][None, None], size=image.shape[-2:], mode="bilinear")
        mask = (up[0, 0] - up.min()) / (up.max() - up.min())
        with torch.no_grad():
            score = model((image * mask)[None]).softmax(dim=1)[0, target]
        v += score * mask / mask.sum()
        kept += 1
    return v / max(kept, 1)


def test_sise_eq7_is_strict_when_alpha_equals_mu_beta() -> None:
    """With alpha_0 = 0.5 beta exactly and mu = 0.5, channel 0 is not kept (Eq. 7: ``>``)."""
    model = _two_channel_model()
    images = torch.rand(2, 2, 6, 6)
    target = torch.tensor([0, 0])
    explainer = Sise(model, layers=["1"], mu=0.5)
    ours = explainer.visualization_maps(images, target)[0]
    for i in range(2):
        torch.testing.assert_close(ours[i], _loop_visualization(model, images[i], 0, mu=0.5))
