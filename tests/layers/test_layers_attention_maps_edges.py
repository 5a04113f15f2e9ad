"""``attention_maps`` on a model whose LAP layers kept nothing: an empty dict, not an error.

Its docstring: "a layer that never ran, or ran only before the clearing, is left out"; the
error is for a model without any LAP layer ("put some in with torchlap.lapify(model)").
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.layers.lap import LocalAttentionPool2d, attention_maps, clear_attention_maps


def test_a_model_whose_lap_layers_never_ran_has_no_maps():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), LocalAttentionPool2d(4, 2))
    assert attention_maps(model) == {}


def test_a_cleared_model_has_no_maps_until_it_runs_again():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), LocalAttentionPool2d(4, 2))
    model(torch.randn(1, 3, 4, 4))
    assert list(attention_maps(model)) == ["1"]
    clear_attention_maps(model)
    assert attention_maps(model) == {}
    with pytest.raises(ValueError, match="no LAP layer"):
        attention_maps(nn.Sequential(nn.Conv2d(3, 4, 1)))
