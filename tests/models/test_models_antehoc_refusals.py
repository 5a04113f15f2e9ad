"""Refusals of the ante-hoc model (paper 004) at their boundaries: the value just outside is
refused with a message naming the argument, the value just inside is accepted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.models.antehoc import WeightNetwork


@pytest.mark.parametrize("eta", [0, -1, True, 1.0, "2"])
def test_weight_network_refuses_an_eta_that_is_no_int_ge_1(eta) -> None:
    with pytest.raises(ValueError, match=r"eta must be an int >= 1"):
        WeightNetwork(eta)


def test_weight_network_takes_eta_1_and_one_channel_of_width_1() -> None:
    network = WeightNetwork(1, channels=[1])
    assert network.eta == 1 and network.channels == (1,)
    maps = network(torch.rand(2, 1, 4, 4))
    torch.testing.assert_close(maps, torch.ones(2, 1, 4, 4))  # softmax over one map


@pytest.mark.parametrize("channels", ["ab", b"ab", 16, None])
def test_weight_network_refuses_channels_that_are_no_list(channels) -> None:
    with pytest.raises(TypeError, match=r"autoencoder_channels must be a non-empty list"):
        WeightNetwork(2, channels=channels)


@pytest.mark.parametrize("channels", [(), [0], [4, 0], [True], [2.0], [4, -1]])
def test_weight_network_refuses_channels_that_are_no_ints_ge_1(channels) -> None:
    with pytest.raises(ValueError, match=r"autoencoder_channels must be a non-empty list"):
        WeightNetwork(2, channels=channels)


def test_weight_network_refuses_sams_of_another_count_before_any_work() -> None:
    network = WeightNetwork(3, channels=(2,))
    with pytest.raises(ValueError, match="3"):
        network(torch.rand(1, 2, 4, 4))
    assert isinstance(network.encoder[0], nn.Conv2d)
