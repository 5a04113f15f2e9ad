"""Eq. 1's weighted sums written with PyTorch's own differentiable operations only.

The per-op path of :mod:`torchlap.layers.functional` computes the weighted window sums with
custom autograd functions (the compiled CPU kernel, or strided in-place updates) whose
backward is not itself differentiable when the kernel runs, and which torch.func transforms
(``vmap``, ``grad``, ``jacrev``, ...) cannot enter. These functions compute the same sums out
of place from ordinary operations, so that:

- a double backward (``create_graph=True``) differentiates the first backward correctly
  (the backward of the custom functions calls them when grad mode is on);
- torch.func transforms run the layer (the forward calls them for functorch-wrapped tensors).

They are slower and use more memory than the kernels: they are taken only in those cases.
:func:`eq4_precision` keeps Eq. 4 and Eq. 1's normalisation of half-precision maps finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "eq4_precision",
    "functorch_wrapped",
    "global_sum_backward",
    "matrix_sum",
    "window_sum",
]

try:
    _is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
except AttributeError:  # pragma: no cover - older PyTorch without torch.func
    _is_wrapped = None


def eq4_precision(score: Tensor) -> Tensor:
    """A float16/bfloat16 score map in float32: in float16, Eq. 4 (``alpha`` above 255) and the
    weight sums of Eq. 1 (more than 65504 unit weights) overflow to NaN or to a zero output;
    the weights are cast to the features' dtype after Eq. 1's normalisation."""
    return score.float() if score.dtype in (torch.float16, torch.bfloat16) else score


def functorch_wrapped(*tensors: Tensor | None) -> bool:
    """Whether any of ``tensors`` is a torch.func transform's wrapper (``vmap``, ``grad``)."""
    if _is_wrapped is None or torch.compiler.is_compiling():  # dynamo cannot trace the test
        return False
    return any(t is not None and _is_wrapped(t) for t in tensors)


def window_sum(
    x: Tensor,
    weights: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor:
    """``out[b, c, o] = sum_k weights[b, k, o] * x[b, c, window(o, k)]``, out of place.

    ``weights`` is ``(B, kH * kW, H_out, W_out)``; padded pixels read zeros (their weights are
    zero anyway). ``x`` is padded once to cover every window, and each kernel offset is one
    strided view of it.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    out_h, out_w = weights.shape[-2:]
    height, width = x.shape[-2:]
    extra_h = max(0, (out_h - 1) * sh + kh - height - 2 * ph)
    extra_w = max(0, (out_w - 1) * sw + kw - width - 2 * pw)
    padded = F.pad(x, (pw, pw + extra_w, ph, ph + extra_h))
    terms = (
        padded[:, :, a : a + (out_h - 1) * sh + 1 : sh, b : b + (out_w - 1) * sw + 1 : sw]
        * weights[:, a * kw + b : a * kw + b + 1]
        for a in range(kh)
        for b in range(kw)
    )
    return sum(terms)  # type: ignore[return-value]


def matrix_sum(x: Tensor, weights: Tensor) -> Tensor:
    """``out[b, c, p] = sum_n x[b, c, n] * weights[b, p, n]`` for (B, C, H, W) ``x``."""
    batch, channels, height, width = x.shape
    return torch.matmul(x.reshape(batch, channels, height * width), weights.transpose(1, 2))


def global_sum_backward(
    x: Tensor, weights: Tensor, grad_out: Tensor, needs: tuple[bool, ...]
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of ``out[b, c] = sum_p weights[b, p] * x[b, c, p]`` (x (B, C, H, W), weights
    (B, H * W)) with respect to ``x`` and ``weights`` (where ``needs`` says), differentiable."""
    batch, channels = x.shape[:2]
    grad_x = grad_weights = None
    if needs[0]:
        grad_x = (grad_out.unsqueeze(2) * weights.unsqueeze(1)).reshape(x.shape)
    if needs[1]:
        flat = x.reshape(batch, channels, -1)
        grad_weights = torch.matmul(grad_out.unsqueeze(1), flat).squeeze(1)
    return grad_x, grad_weights
