"""Bad input to the public building blocks that run inside a model's forward pass (LAP's
``ConceptScorer``, the ante-hoc ``WeightNetwork``, BLA's and L2X-F's pools): a typed error
naming the block and what it takes, where torch's internal RuntimeError (or an AttributeError)
came before; the checks read only the input's metadata (they pass on meta tensors, which hold
no values)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from torchlap.layers import ConceptScorer
from torchlap.models.antehoc import WeightNetwork
from torchlap.models.bla_pools import BoundedLogitAttention, L2XFeatureSelection

#: each block with its input channels and those of its (first) output
BLOCKS: dict[str, Callable[[], tuple[nn.Module, int, int]]] = {
    "scorer": lambda: (ConceptScorer(4, n_concepts=3), 4, 3),
    "scorer-one-conv": lambda: (ConceptScorer(4, hidden_channels=0), 4, 1),
    "weight-network": lambda: (WeightNetwork(2), 2, 2),
}
CASES = ("list", "3-D", "channels", "int", "float64", "device")


def _bad_inputs(channels: int) -> dict[str, tuple[object, type, str]]:
    """A bad input for each of :data:`CASES`, its error and message."""
    good = torch.rand(2, channels, 8, 8)
    cases = [
        ("list", good.tolist(), TypeError, r"expects a \(B, C, H, W\) torch\.Tensor, got list"),
        ("3-D", good[0], ValueError, r"expects \(B, C, H, W\) input, got shape \(" + str(channels)),
        (
            "channels",
            torch.rand(2, channels + 1, 8, 8),
            ValueError,
            rf"was built for {channels} input channels, got an input with {channels + 1} ",
        ),
        ("int", good.long(), TypeError, r"float32 parameters but got a non-floating-point"),
        (
            "float64",
            good.double(),
            TypeError,
            r"float32 parameters but got a floating-point "
            r"torch\.float64 input; convert the input \(x\.to\(torch\.float32\)\)",
        ),
        ("device", good.to("meta"), ValueError, r"parameters on cpu but got an input on meta"),
    ]
    return {name: tuple(rest) for name, *rest in cases}


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_named_before_the_forward_pass(block: str, case: str) -> None:
    # before: torch's RuntimeError (channels, dtype, device), AttributeError (a list), or,
    # for the weight network, a ValueError without the dtype or device
    module, channels, _ = BLOCKS[block]()
    value, error, message = _bad_inputs(channels)[case]
    with pytest.raises(error, match=rf"^{type(module).__name__} .*{message}"):
        module(value)


@pytest.mark.parametrize("block", BLOCKS)
def test_the_checks_read_no_values_and_let_autocast_cast(block: str) -> None:
    module, channels, produced = BLOCKS[block]()
    # meta tensors have shapes but no values: a check reading one would fail here
    meta = module.to("meta")
    out = meta(torch.empty(2, channels, 8, 8, device="meta"))
    first = out[0] if isinstance(out, tuple) else out
    assert first.device.type == "meta" and first.shape[0] == 2
    module, channels, produced = BLOCKS[block]()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 input to float32 parameters
        out = module(torch.rand(2, channels, 8, 8, dtype=torch.bfloat16))
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape == (2, produced, 8, 8) and first.isfinite().all()


#: BLA's and L2X-F's pools (paper 002): input channels; their output is (B, C, 1, 1)
POOLS: dict[str, Callable[[], nn.Module]] = {
    "bla": lambda: BoundedLogitAttention(4),
    "l2x-f": lambda: L2XFeatureSelection(4, k=2),
}


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_to_the_bla_pools_is_named_before_the_forward_pass(
    pool: str, case: str
) -> None:
    # before: a list or a 3-D input was a ValueError without the dtype; an int, float64 or meta
    # input reached torch's convolution (RuntimeError)
    module = POOLS[pool]()
    value, error, message = _bad_inputs(4)[case]
    with pytest.raises(error, match=rf"^{type(module).__name__} .*{message}"):
        module(value)


@pytest.mark.parametrize("pool", POOLS)
def test_the_bla_pools_check_no_values_and_let_autocast_cast(pool: str) -> None:
    module = POOLS[pool]().to("meta").eval()
    assert module(torch.empty(2, 4, 8, 8, device="meta")).shape == (2, 4, 1, 1)
    module = POOLS[pool]().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(torch.rand(2, 4, 8, 8, dtype=torch.bfloat16))
    assert out.shape == (2, 4, 1, 1) and out.float().isfinite().all()
