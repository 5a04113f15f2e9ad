"""L2X-F's eval path "mean" (the module only explains: the plain global average pool, with a
loop reference) and the BLA accessors: what is not a model refused, a module picked by name
among several (the choices named), maps detached unless asked, a model without an explanation
module refused by freeze_all_but_bla before any parameter is frozen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.models.bla_pools import (
    BoundedLogitAttention,
    L2XFeatureSelection,
    bla_maps,
    bla_modules,
    bla_parameters,
    freeze_all_but_bla,
)


def reference_mean_pool(x: torch.Tensor) -> torch.Tensor:
    """v_c = 1/n sum_i f_{c,i} over the n = H * W positions, one sample and channel at a time."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, channels, 1, 1, dtype=x.dtype)
    for b in range(batch):
        for c in range(channels):
            total = 0.0
            for i in range(height):
                for j in range(width):
                    total += float(x[b, c, i, j])
            out[b, c, 0, 0] = total / (height * width)
    return out


def test_l2x_mean_path_pools_the_plain_average_and_still_explains():
    torch.manual_seed(0)
    module = L2XFeatureSelection(3, k=2, eval_path="mean", dtype=torch.float64).eval()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(module(x), reference_mean_pool(x))
    maps = module.maps
    torch.testing.assert_close(maps.weights, torch.full((2, 1, 3, 4), 1 / 12, dtype=torch.float64))
    # the explanation is still the top-k set of the logits
    assert maps.hard.sum(dim=(1, 2, 3)).tolist() == [2, 2]


@pytest.mark.parametrize("accessor", [bla_modules, bla_maps, bla_parameters, freeze_all_but_bla])
def test_accessors_refuse_what_is_not_a_model(accessor):
    with pytest.raises(TypeError, match=r"model must be an nn\.Module, got str"):
        accessor("model")


class TwoPools(nn.Module):
    """Two explanation pools over one feature map (e.g. BLA next to L2X-F)."""

    def __init__(self) -> None:
        super().__init__()
        self.bla = BoundedLogitAttention(3)
        self.l2x = L2XFeatureSelection(3, k=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bla(x) + self.l2x(x)


def test_bla_maps_picks_a_module_by_name_and_names_the_choices():
    torch.manual_seed(0)
    model = TwoPools().eval()
    model(torch.randn(2, 3, 4, 4))
    assert list(bla_modules(model)) == ["bla", "l2x"]
    with pytest.raises(ValueError, match=r"several BLA/L2X-F modules \['bla', 'l2x'\]: pass name="):
        bla_maps(model)
    for name in ("bla", "l2x"):
        hard = bla_maps(model, name=name)["hard"]
        assert torch.equal(hard, model.get_submodule(name).maps.hard)
    assert bla_maps(model, name="l2x")["hard"].sum(dim=(1, 2, 3)).tolist() == [2, 2]
    with pytest.raises(
        ValueError, match=r"no BLA/L2X-F module named 'pool'; the model has \['bla', 'l2x'\]"
    ):
        bla_maps(model, name="pool")


def test_bla_maps_detaches_by_default_and_checks_the_flag():
    torch.manual_seed(0)
    model = TwoPools().train()
    model(torch.randn(2, 3, 4, 4))  # a training pass: the maps hold the autograd graph
    assert model.bla.maps.soft.requires_grad
    assert not any(t.requires_grad for t in bla_maps(model, name="bla").values())
    kept = bla_maps(model, name="bla", detach=False)
    assert kept["soft"] is model.bla.maps.soft and kept["soft"].requires_grad
    with pytest.raises(TypeError, match="detach"):
        bla_maps(model, name="bla", detach="no")


def test_freeze_refuses_a_model_without_an_explanation_module():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match=r"no BLA/L2X-F module; put one in with torchlap\.blaify"):
        freeze_all_but_bla(model)
    assert all(p.requires_grad for p in model.parameters())  # nothing was frozen


def test_freeze_returns_the_names_it_left_trainable():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), TwoPools())
    trainable = freeze_all_but_bla(model)
    pools = ["1.bla.scorer.weight", "1.bla.scorer.bias", "1.l2x.scorer.weight", "1.l2x.scorer.bias"]
    assert trainable == pools
    assert [n for n, p in model.named_parameters() if p.requires_grad] == pools


@pytest.mark.parametrize("pool", [BoundedLogitAttention(4), L2XFeatureSelection(4, k=2)])
def test_each_pool_refuses_input_it_was_not_built_for_before_scoring(pool: nn.Module) -> None:
    """Every pool runs the LAP layers' input check first: the message names the module and
    what it accepts, not a convolution's shape error from inside the scorer."""
    name = type(pool).__name__
    with pytest.raises(ValueError, match=rf"{name} was built for 4 input channels, got an input"):
        pool(torch.rand(2, 3, 5, 5))
    with pytest.raises(ValueError, match=rf"{name} expects \(B, C, H, W\) input, got shape"):
        pool(torch.rand(4, 5, 5))
    with pytest.raises(TypeError, match=rf"{name} expects a \(B, C, H, W\) torch.Tensor"):
        pool([[0.0]])
