"""A constant, non-zero activation map has no mask (min-max normalisation divides by zero):
Score-CAM gives it weight 0 and SISE keeps no mask for it, against channel-by-channel loops
(Score-CAM: Wang et al. 2020; SISE: paper 003, Eq. 6-12)."""

import pytest
import torch
import torch.nn.functional as F
from explainer_references import reference_scorecam
from torch import Tensor, nn

from torchlap.explainers import ScoreCam, Sise


def constant_channel_cnn() -> nn.Sequential:
    """Layer "1" has three channels; channel 2 is 0.5 everywhere (zero weights, bias 0.5).
    Every channel raises class 0 and lowers class 1, so each has a positive gradient for
    class 0 (Eq. 6's alpha_k > 0: SISE's rule keeps it unless it is constant)."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2, bias=False),
    )
    with torch.no_grad():
        model[0].weight[2] = 0.0
        model[0].bias[2] = 0.5
        model[4].weight.copy_(torch.tensor([[1.0, 0.5, 2.0], [-1.0, -0.5, -2.0]]))
    return model.eval()


def loop_sise_layer(model: nn.Module, image: Tensor, target: int) -> Tensor:
    """One layer's visualisation map (Eq. 6-12, mu = 0), channel by channel; a constant map
    makes no mask."""
    captured = {}
    handle = model[1].register_forward_hook(lambda m, i, o: captured.update(a=o))
    probability = model(image[None]).softmax(dim=1)[0, target]
    handle.remove()
    (gradient,) = torch.autograd.grad(probability, captured["a"])
    activations, gradient = captured["a"][0].detach(), gradient[0]
    total, kept = torch.zeros(image.shape[-2:]), 0
    for k in range(activations.shape[0]):
        if not gradient[k].sum() > 0:  # Eq. 7 at mu = 0
            continue
        up = F.interpolate(activations[k][None, None], size=image.shape[-2:], mode="bilinear")
        up = up[0, 0]
        if up.max() == up.min():
            continue
        mask = (up - up.min()) / (up.max() - up.min())
        with torch.no_grad():
            score = model((image * mask)[None]).softmax(dim=1)[0, target]
        total += score * mask / mask.sum()
        kept += 1
    return total / max(kept, 1)


def test_scorecam_gives_a_constant_map_no_weight():
    model = constant_channel_cnn()
    images = torch.randn(2, 3, 6, 6)
    target = torch.tensor([0, 1])
    maps = ScoreCam(model, layer="1").raw(images, target)
    for i in range(2):
        expected = reference_scorecam(model, model[1], images[i], int(target[i]))
        torch.testing.assert_close(maps[i], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("deduplicate", [True, False])
def test_scorecam_with_every_map_constant_gives_an_all_zero_map(deduplicate):
    """A black image through a bias-free CNN: every activation map is constant (all zero), so no
    channel is scored (it raised on the empty score vector) and the map is zero, alone or in a
    batch with an image whose maps are not constant."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    black, other = torch.zeros(1, 3, 6, 6), torch.rand(1, 3, 6, 6)
    explainer = ScoreCam(model, layer="1", deduplicate=deduplicate)
    alone = explainer.raw(black, torch.tensor([0]))
    assert alone.shape == (1, 6, 6) and not alone.any()
    both = explainer.raw(torch.cat([black, other]), torch.tensor([0, 0]))
    assert not both[0].any()
    expected = reference_scorecam(model, model[1], other[0], 0)
    torch.testing.assert_close(both[1], expected, rtol=1e-4, atol=1e-6)


def test_sise_keeps_no_mask_for_a_constant_map():
    model = constant_channel_cnn()
    images = torch.randn(2, 3, 6, 6)
    target = torch.tensor([0, 0])
    explainer = Sise(model, layers=["1"])
    maps = explainer(images, target)
    with torch.enable_grad():
        for i in range(2):
            expected = loop_sise_layer(model, images[i], 0)
            torch.testing.assert_close(maps[i], expected, rtol=1e-4, atol=1e-7)


def test_sise_on_a_frozen_model_matches_the_loop():
    """Parameters that do not require grad (a frozen backbone): Eq. 6's gradients still flow
    from the input to the layer."""
    model = constant_channel_cnn().requires_grad_(False)
    images = torch.randn(2, 3, 6, 6)
    maps = Sise(model, layers=["1"])(images, torch.tensor([0, 0]))
    with torch.enable_grad():
        for i in range(2):
            image = images[i].clone().requires_grad_(True)
            expected = loop_sise_layer(model, image, 0)
            torch.testing.assert_close(maps[i], expected, rtol=1e-4, atol=1e-7)
