"""Guided Backpropagation's ReLU rule for ReLUs applied as functions.

captum's ``GuidedBackprop`` puts its rule (the gradient of a ReLU passes only where it is
positive) on ``nn.ReLU`` modules, through module hooks. A ReLU applied as a function,
``F.relu(x)``, ``torch.relu(x)`` or ``x.relu()`` (torchvision's Inception v3 and GoogLeNet apply
every ReLU so, in ``BasicConv2d``), has no module to hook: its gradient went through unguided,
so the map of such a model was a plain gradient map there, with nothing said.
:func:`guided_functional_relus` applies the rule to those calls as well, while a guided backward
pass is built; ``nn.ReLU`` modules are unchanged (the rule is idempotent, so a module's ReLU seen
by both gives the same gradient).

DeepLIFT has the same gap: captum's Rescale rule hooks ``nn.ReLU`` modules, so a ReLU applied as
a function was linear to it. :func:`rescale_functional_relus` gives those calls the Rescale rule
(the gradient times ``delta_out / delta_in`` between the input and baseline halves of captum's
doubled batch, the plain gradient where ``|delta_in| < eps``), as captum's ``nonlinear`` does for
modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["guided_functional_relus", "rescale_functional_relus"]


class _GuidedRelu(torch.autograd.Function):
    """``max(x, 0)``, whose backward passes the positive part of the gradient where x > 0."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return grad.clamp(min=0) * (out > 0)


class _RescaleRelu(torch.autograd.Function):
    """``max(x, 0)`` whose backward is DeepLIFT's Rescale rule over captum's doubled batch
    (inputs, then baselines): ``grad * delta_out / delta_in``, or the plain ReLU gradient where
    ``|delta_in| < eps`` (and for a batch that is not two halves)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(x, out)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, out = ctx.saved_tensors
        plain = grad * (x > 0)
        if x.shape[0] % 2:
            return plain, None
        (x_in, x_ref), (out_in, out_ref) = x.chunk(2), out.chunk(2)
        delta_in = torch.cat(2 * [x_in - x_ref])
        delta_out = torch.cat(2 * [out_in - out_ref])
        return torch.where(delta_in.abs() < ctx.eps, plain, grad * delta_out / delta_in), None


_OUT_OF_PLACE: set[Callable] = {F.relu, torch.relu, Tensor.relu}
_IN_PLACE: set[Callable] = {F.relu_, torch.relu_, Tensor.relu_}


class _FunctionalReluMode(TorchFunctionMode):
    """ReLUs applied as functions, in graphs built with gradients, go through ``rule``."""

    def __init__(self, rule: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.rule = rule

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        grad = torch.is_grad_enabled()
        if grad and func in _OUT_OF_PLACE and isinstance(args[0], Tensor):
            # F.relu hands its inplace flag to the mode as a keyword, even when given by position
            if not kwargs.get("inplace", False):
                return self.rule(args[0])
            func = F.relu_  # F.relu(x, inplace=True): as x.relu_(), below
        if grad and func in _IN_PLACE and isinstance(args[0], Tensor):
            x = args[0]
            return x.copy_(self.rule(x.clone()))  # written in place, as asked
        return func(*args, **kwargs)


@contextmanager
def guided_functional_relus() -> Iterator[None]:
    """Within the block, ReLUs applied as functions follow Guided Backpropagation's rule in the
    graphs built with gradients enabled (see the module docstring)."""
    with _FunctionalReluMode(_GuidedRelu.apply):
        yield


@contextmanager
def rescale_functional_relus(eps: float) -> Iterator[None]:
    """Within the block, ReLUs applied as functions follow DeepLIFT's Rescale rule with ``eps``
    (captum's ``DeepLift(model, eps=...)``) in graphs built with gradients enabled."""
    with _FunctionalReluMode(lambda x: _RescaleRelu.apply(x, eps)):
        yield
