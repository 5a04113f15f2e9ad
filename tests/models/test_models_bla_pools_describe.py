"""How the BLA / L2X-F pools describe themselves: L2X-F's documented default size k = 8, the
module reprs (the threshold settings BLA-T uses, none for plain BLA), and the feature map's
height x width in L2X-F's refusal of a k larger than the map."""

from __future__ import annotations

import pytest
import torch

from torchlap.models.bla_pools import BoundedLogitAttention, L2XFeatureSelection


def test_l2x_selects_eight_positions_by_default():
    # paper 002 gives no k for L2X-F (3.3, 4.2); its L2X of section 4.1 selects "k = 8
    # (8 selected 32x32 patches of the 224x224 input image)", the default the README documents
    # (the table's "L2X-F size k" row): 8 of the 49 positions of a 7x7 map
    module = L2XFeatureSelection(3).eval()
    assert module.k == 8
    x = torch.randn(2, 3, 7, 7)
    module(x)
    assert module.maps.hard.sum(dim=(1, 2, 3)).tolist() == [8, 8]


def test_plain_bla_repr_has_no_threshold_settings():
    module = BoundedLogitAttention(4)
    assert module.extra_repr() == "4, theta=0.1, threshold=False, eval_path='hard'"


@pytest.mark.parametrize(
    ("kwargs", "settings"),
    [
        (dict(), "gamma=1.0/n, pool='sum'"),
        (dict(gamma_factor=0.98, pool="normalized"), "gamma=0.98/n, pool='normalized'"),
        (dict(gamma=0.02), "gamma=0.02, pool='sum'"),
    ],
)
def test_bla_t_repr_names_its_threshold_and_pooling(kwargs, settings):
    module = BoundedLogitAttention(4, threshold=True, eval_path="soft", **kwargs)
    assert module.extra_repr() == f"4, theta=0.1, threshold=True, {settings}, eval_path='soft'"


def test_l2x_repr_names_its_size_temperature_and_pooling():
    module = L2XFeatureSelection(5, k=3, tau=0.5, pool="normalized", eval_path="mean")
    assert module.extra_repr() == "5, k=3, tau=0.5, pool='normalized', eval_path='mean'"


def test_l2x_refusal_gives_the_maps_height_by_width():
    # channels, height and width all differ: the message must name the map's H x W
    module = L2XFeatureSelection(3, k=11)
    with pytest.raises(ValueError, match=r"k=11 positions but the feature map has only 10 \(2x5\)"):
        module(torch.randn(1, 3, 2, 5))
