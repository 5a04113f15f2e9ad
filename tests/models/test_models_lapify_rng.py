"""lapify draws from torch's global random generator only for the layers it puts in.

Before: checking the LAP options built a throwaway ``LocalAttentionPool2d(1, 1)`` whose
initialisation drew from the global generator, so a seeded user's later draws (the inserted
layers' own weights, a data shuffle, ...) depended on that check.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap import lapify
from torchlap.layers import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.models import LapConv2d
from torchlap.models.build import _check_lap_args

OPTIONS = {"n_concepts": 3, "hidden_channels": 4, "aggregation": "conv", "alpha": 2.0}


def small_net() -> nn.Sequential:
    generator = torch.Generator().manual_seed(5)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(6, 2),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return net


def by_hand(net: nn.Sequential, sites: list[str]) -> list[nn.Module]:
    """The layers lapify puts in at ``sites``, built in model order with the same options."""
    makers = {
        "2": lambda: LocalAttentionPool2d(4, 2, 2, **OPTIONS),
        "3": lambda: LapConv2d.from_conv(net[3], OPTIONS),
        "5": lambda: AdaptiveLocalAttentionPool2d(6, 1, **OPTIONS),
    }
    return [makers[site]() for site in sites]


# "auto" runs a dry forward pass (on its own generator) and picks only the global pool here
@pytest.mark.parametrize(
    ("where", "sites"), [(["2", "3", "5"], ["2", "3", "5"]), ("global", ["5"]), ("auto", ["5"])]
)
def test_lapify_draws_exactly_what_its_layers_draw(where, sites):
    net, reference = small_net(), small_net()
    torch.manual_seed(123)
    _, names = lapify(net, where=where, input_size=16, **OPTIONS)
    after_lapify = torch.get_rng_state()
    assert names == sites

    torch.manual_seed(123)
    expected = by_hand(reference, sites)
    assert torch.equal(after_lapify, torch.get_rng_state())
    # so the inserted layers start from the weights of the same layers built by hand
    for site, hand in zip(sites, expected, strict=True):
        got, want = net.get_submodule(site).state_dict(), hand.state_dict()
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def test_a_refused_lapify_draws_nothing():
    net = small_net()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match="unknown aggregation"):
        lapify(net, where=["2"], aggregation="magic")
    with pytest.raises(ValueError, match="nosuch"):  # refused after the options were checked
        lapify(net, where=["nosuch"], **OPTIONS)
    assert torch.equal(state, torch.get_rng_state())


def test_build_models_option_check_draws_nothing():
    # build_model checks the LAP options before it builds (and initialises) the backbone
    torch.manual_seed(7)
    state = torch.get_rng_state()
    _check_lap_args("auto", 2, 8, "conv", 1.0, 1e-6, "per_head")
    assert torch.equal(state, torch.get_rng_state())


def test_the_option_check_keeps_a_given_aggregation_module_where_it_is():
    aggregation = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Sigmoid())
    net = small_net()
    lapify(net, where=["5"], n_concepts=3, aggregation=aggregation)
    assert aggregation[0].weight.device.type == "cpu"  # not moved to the meta device
    assert net[5].scorer.aggregate is not aggregation  # each layer gets its own copy
    assert net[5].scorer.aggregate[0].weight.device.type == "cpu"
