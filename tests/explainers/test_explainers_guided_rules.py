"""The ReLU rules of ``torchlap.explainers.guided`` for ReLUs applied as functions, element by
element against the definitions: Guided Backpropagation's (Springenberg et al. 2014) and
DeepLIFT's Rescale rule (Shrikumar et al. 2017) over captum's doubled batch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from torchlap.explainers.guided import guided_functional_relus, rescale_functional_relus

CALLS: dict[str, Callable[[Tensor], Tensor]] = {
    "F.relu": F.relu,
    "torch.relu": torch.relu,
    "Tensor.relu": Tensor.relu,
    "F.relu inplace keyword": lambda x: F.relu(x, inplace=True),
    "F.relu inplace positional": lambda x: F.relu(x, True),
    "F.relu_": F.relu_,
    "torch.relu_": torch.relu_,
    "Tensor.relu_": Tensor.relu_,
}

IN_PLACE = {CALLS[name] for name in CALLS if "inplace" in name or name.endswith("_")}


def _values() -> tuple[Tensor, Tensor]:
    """Inputs (both signs, an exact zero) and incoming gradients (both signs), 2 x 5."""
    x = torch.tensor([[1.5, -2.0, 0.0, 0.5, -0.25], [-1.0, 3.0, 2.0, -0.5, 0.25]])
    grad = torch.tensor([[2.0, 1.0, 3.0, -1.0, 0.5], [-2.0, -1.5, 4.0, 1.0, -3.0]])
    return x, grad


def _backward(call: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """``call``'s output and the gradient of ``x`` for ``grad`` (through a clone for the in-place
    calls, as a network's intermediate tensor)."""
    leaf = x.clone().requires_grad_(True)
    hidden = leaf * 1.0
    out = call(hidden)
    out.backward(grad)
    if call in IN_PLACE:  # the in-place calls write their input, as asked
        assert out is hidden
    else:  # the others leave it alone
        assert out is not hidden
        torch.testing.assert_close(hidden.detach(), x, rtol=0, atol=0)
    return out.detach(), leaf.grad


@pytest.mark.parametrize("name", list(CALLS))
def test_guided_rule_passes_positive_gradients_where_the_input_is_positive(name: str) -> None:
    x, grad = _values()
    expected = torch.zeros_like(x)
    for index in range(x.numel()):
        xi, gi = x.view(-1)[index], grad.view(-1)[index]
        expected.view(-1)[index] = gi if (xi > 0 and gi > 0) else 0.0
    with guided_functional_relus():
        out, got = _backward(CALLS[name], x, grad)
    torch.testing.assert_close(out, x.clamp(min=0), rtol=0, atol=0)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # outside the block: the plain ReLU gradient again
    _, plain = _backward(CALLS[name], x, grad)
    torch.testing.assert_close(plain, grad * (x > 0), rtol=0, atol=0)


def _rescale_reference(x: Tensor, grad: Tensor, eps: float) -> Tensor:
    """Rows ``i`` and ``i + n`` of the ``2n`` rows are an input and its baseline: the gradient
    times ``(relu(x) - relu(x_0)) / (x - x_0)`` for both, ReLU's gradient where
    ``|x - x_0| < eps``."""
    n = x.shape[0] // 2
    out = torch.zeros_like(grad)
    for row in range(2 * n):
        pair = row % n
        for col in range(x.shape[1]):
            a, b = float(x[pair, col]), float(x[pair + n, col])
            if abs(a - b) < eps:
                m = 1.0 if x[row, col] > 0 else 0.0
            else:
                m = (max(a, 0.0) - max(b, 0.0)) / (a - b)
            out[row, col] = grad[row, col] * m
    return out


@pytest.mark.parametrize("name", ["F.relu", "Tensor.relu", "F.relu inplace keyword", "F.relu_"])
def test_rescale_rule_over_the_input_and_baseline_halves(name: str) -> None:
    # columns: both positive, crossing zero, both negative, |delta| = eps exactly (the ratio),
    # delta = 0 (the ReLU's gradient, 0 at x = 0)
    inputs = torch.tensor([[2.0, 1.5, -1.0, 0.25, 0.5], [1.0, -2.0, -3.0, -0.25, 0.0]])
    baselines = torch.tensor([[0.5, -0.5, -2.0, -0.25, 0.5], [3.0, 1.0, -1.0, 0.25, 0.0]])
    x = torch.cat([inputs, baselines])
    grad = torch.tensor([[1.0, 2.0, -1.0, 3.0, -2.0], [0.5, -1.0, 2.0, 1.5, 4.0]]).repeat(2, 1)
    eps = 0.5
    with rescale_functional_relus(eps):
        out, got = _backward(CALLS[name], x, grad)
    torch.testing.assert_close(out, x.clamp(min=0), rtol=0, atol=0)
    torch.testing.assert_close(got, _rescale_reference(x, grad, eps))
    # an odd batch is no pair of halves: the ReLU's own gradient
    with rescale_functional_relus(eps):
        _, odd = _backward(CALLS[name], x[:3], grad[:3])
    torch.testing.assert_close(odd, grad[:3] * (x[:3] > 0), rtol=0, atol=0)


def test_the_rules_leave_gradient_free_graphs_alone() -> None:
    x, _ = _values()
    with guided_functional_relus(), torch.no_grad():
        values = F.relu(x.clone())
        y = x.clone()
        y.relu_()  # an in-place ReLU without gradients still writes its input
    torch.testing.assert_close(values, x.clamp(min=0), rtol=0, atol=0)
    torch.testing.assert_close(y, x.clamp(min=0), rtol=0, atol=0)
