"""Functional core of Local Attention Pooling (LAP), paper 000 Eq. 1-4.

The pooled output of a window with top-left corner ``(i, j)`` is (Eq. 1)

    O = sum(F(X_win) * X_win) / sum(F(X_win)),

with ``F = N o S``: a pixel-wise score ``V = S(x)`` (Eq. 2-3, computed by the concept scorer in
:mod:`torchlap.layers.lap`) and the window-wise normalisation (Eq. 4)

    N(V) = exp(-alpha^2 (max V - V)^2) * V + eps.

Why this is written by hand: no library ships a pooling whose weights are computed per window.
The weights depend on the window and the pixel but never on the channel, so the heavy part is a
sum over the ``kH * kW`` kernel offsets of ``weight[offset] * strided view of X``. We never build
the ``C x k^2 x L`` unfolded feature tensor: the forward accumulates in place into the output,
and the backward (a custom autograd function) accumulates into one gradient buffer, so the
extra memory is one output-sized tensor, whatever the kernel.

The LAP modules run a whole layer (scorer, Eq. 4 and Eq. 1) as one compiled call each way on the
CPU where they can (:mod:`torchlap.layers.fused`); these functions are the per-op path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from torchlap._checks import check_bool, check_number, is_int
from torchlap._ext import LapGeometry, check_status, lap_kernels
from torchlap.layers import _plain

__all__ = [
    "adaptive_bounds",
    "adaptive_local_attention_pool2d",
    "lap_normalize",
    "local_attention_pool2d",
    "pool_output_size",
    "window_weights",
]


def _is_pair(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``value`` as a pair of ints (an int is used for both); never a bool, also inside a pair."""
    if is_int(value):
        return (value, value)  # type: ignore[return-value]
    if _is_pair(value) and is_int(value[0]) and is_int(value[1]):  # type: ignore[index]
        return (value[0], value[1])  # type: ignore[index]
    raise TypeError(f"{name} must be an int or a pair of ints (never a bool), got {value!r}")


def _window_args(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``(kernel, stride, padding)`` pairs of a windowed LAP, checked (the rules of
    :class:`~torchlap.layers.lap.LocalAttentionPool2d` and :func:`local_attention_pool2d`).

    ``kernel_size`` >= 1, ``stride`` >= 1 (None: the kernel size), ``padding`` >= 0 and at
    most half the kernel; each an int or a pair of ints, never a bool.
    """
    kernel = _pair(kernel_size, "kernel_size")
    stride_ = kernel if stride is None else _pair(stride, "stride")
    pad = _pair(padding, "padding")
    if min(kernel) < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size!r}")
    if min(stride_) < 1:
        raise ValueError(f"stride must be >= 1, got {stride!r}")
    if min(pad) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    if pad[0] * 2 > kernel[0] or pad[1] * 2 > kernel[1]:
        raise ValueError(
            f"padding {pad} must be at most half of the kernel size {kernel} "
            "(otherwise a window could hold padding only)"
        )
    return kernel, stride_, pad


def _adaptive_output_args(output_size: object) -> tuple[int | None, int | None]:
    """``output_size`` of an adaptive LAP as a pair, checked (the rule of
    ``nn.AdaptiveAvgPool2d``): an int >= 1, or a pair of ints >= 1 or None (None keeps that
    input size); never a bool or a float."""
    if is_int(output_size):
        output = (output_size, output_size)
    elif _is_pair(output_size):
        output = tuple(output_size)  # type: ignore[arg-type]
    else:
        raise TypeError(
            f"output_size must be an int >= 1 or a pair of ints >= 1 or None, got {output_size!r}"
        )
    for value in output:
        if value is not None and not is_int(value):
            raise TypeError(
                f"output_size entries must be ints >= 1 or None (never a bool or a float), "
                f"got {output!r}"
            )
        if value is not None and value < 1:
            raise ValueError(f"output_size entries must be ints >= 1 or None, got {output!r}")
    return output  # type: ignore[return-value]


def _check_eps(eps: object) -> float:
    """``eps`` of Eq. 4 as a float that keeps every weight positive and every sum finite."""
    accepted = (
        "a finite float > 0, from 1.2e-38 (float32's smallest normal number: below it eps is 0 "
        "in the float32 kernels) to 1e29 (a window's weight sum must stay finite in float32)"
    )
    return check_number(eps, "eps", minimum=1.2e-38, maximum=1e29, accepted=accepted)


def _check_call(x: object, score: object, alpha: object, eps: object, backend: object) -> None:
    """The tensors and options of the public pooling functions (pure-Python checks only: no
    value of a tensor is read, so a tensor ``alpha`` is not checked for NaN)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if isinstance(alpha, Tensor):
        if alpha.numel() != 1 or not alpha.is_floating_point():
            raise ValueError(
                "alpha must be a finite float or a one-element floating-point tensor, got a "
                f"{alpha.dtype} tensor of shape {tuple(alpha.shape)}"
            )
    else:
        check_number(
            alpha, "alpha", accepted="a finite float or a one-element floating-point tensor"
        )
    _check_eps(eps)
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {got}")
    expected = (x.shape[0], 1, x.shape[2], x.shape[3])
    if not isinstance(score, Tensor) or tuple(score.shape) != expected:
        got = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise ValueError(f"score must have shape (B, 1, H, W) = {expected} for x, got {got}")
    for name, tensor in (("x", x), ("score", score)):
        if not tensor.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor, got {tensor.dtype} (convert it with "
                f"{name}.float())"
            )
    if score.device != x.device:
        raise ValueError(f"score is on {score.device} but x on {x.device}: put both on one device")


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Output length of a pooling along one axis, with the same rule as ``nn.MaxPool2d``."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    # as in PyTorch: in ceil mode the last window must start inside the input or left padding
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(
            f"kernel size {kernel} is larger than the padded input ({size} + 2 * {padding})"
        )
    return out


def lap_normalize(scores: Tensor, valid: Tensor, alpha: Tensor | float, eps: float) -> Tensor:
    """Eq. 4 on windows: ``exp(-alpha^2 (max V - V)^2) * V + eps``, zero where ``valid`` is False.

    ``scores`` has the window's pixels along dimension 1: ``(B, K, ...)``. Invalid (padded)
    positions take no part in the maximum and get weight exactly 0.
    """
    masked = scores.masked_fill(~valid, float("-inf"))
    window_max = masked.amax(dim=1, keepdim=True)
    gauss = torch.exp(-((alpha * (window_max - scores)) ** 2))  # no alpha**2: it overflows
    weights = gauss * scores + eps
    return weights.masked_fill(~valid, 0.0)


def window_weights(
    score: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    ceil_mode: bool,
    alpha: Tensor | float,
    eps: float,
) -> tuple[Tensor, tuple[int, int]]:
    """Weights ``N(V)`` of every pixel of every window, shape ``(B, kH * kW, H_out, W_out)``.

    The score map has one channel, so unfolding it is cheap (``kH * kW`` times a one-channel map).
    """
    height, width = score.shape[-2:]
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    out_h = pool_output_size(height, kh, sh, ph, ceil_mode)
    out_w = pool_output_size(width, kw, sw, pw, ceil_mode)
    # right/bottom padding large enough for every window (ceil mode may need more than ``padding``)
    extra_h = max(0, (out_h - 1) * sh + kh - height - 2 * ph)
    extra_w = max(0, (out_w - 1) * sw + kw - width - 2 * pw)
    pads = (pw, pw + extra_w, ph, ph + extra_h)
    unfold = dict(kernel_size=(kh, kw), stride=(sh, sw))
    if not any(pads):
        # every window lies inside the map: Eq. 4 without the padding mask (fewer small ops)
        scores = F.unfold(score, **unfold)[:, :, : out_h * out_w]
        gauss = torch.exp(-((alpha * (scores.amax(dim=1, keepdim=True) - scores)) ** 2))
        weights = gauss * scores + eps
        return weights.reshape(score.shape[0], kh * kw, out_h, out_w), (out_h, out_w)
    padded = F.pad(score, pads)
    ones = torch.ones((1, 1, height, width), device=score.device, dtype=score.dtype)
    valid = F.pad(ones, pads)
    scores = F.unfold(padded, **unfold)[:, :, : out_h * out_w]
    valid_windows = F.unfold(valid, **unfold)[:, :, : out_h * out_w] > 0.5
    weights = lap_normalize(scores, valid_windows, alpha, eps)
    return weights.reshape(score.shape[0], kh * kw, out_h, out_w), (out_h, out_w)


def _offset_slices(
    offset: int, stride: int, padding: int, size: int, out: int
) -> tuple[slice, slice] | None:
    """Input rows and output rows that kernel offset ``offset`` connects (None if none)."""
    # output index o reads input row o * stride - padding + offset; keep those inside [0, size)
    first = max(0, math.ceil((padding - offset) / stride))
    last = min(out - 1, (size - 1 + padding - offset) // stride)
    if last < first:
        return None
    count = last - first + 1
    start = first * stride - padding + offset
    return slice(start, start + stride * (count - 1) + 1, stride), slice(first, first + count)


class _WeightedWindowSum(torch.autograd.Function):
    """``out[b, c, o] = sum_k weights[b, k, o] * x[b, c, window(o, k)]`` without unfolding x."""

    @staticmethod
    def forward(ctx, x, weights, kernel_size, stride, padding, backend):  # type: ignore[override]
        out_h, out_w = weights.shape[-2:]
        ctx.save_for_backward(x, weights)
        library = _kernel_library(x, weights, backend)
        ctx.geometry = (kernel_size, stride, padding)
        ctx.library = library
        if library is not None:
            out = x.new_empty((x.shape[0], x.shape[1], out_h, out_w))
            geometry = _geometry(x, weights, kernel_size, stride, padding)
            forward = _typed(library, "lap_forward", x.dtype)
            status = forward(x.data_ptr(), weights.data_ptr(), out.data_ptr(), geometry, _threads())
            check_status(status, "LAP's window sum", x.shape)
            return out
        out = x.new_zeros((x.shape[0], x.shape[1], out_h, out_w))
        plan = _plan(x.shape[-2:], (out_h, out_w), kernel_size, stride, padding)
        for k, rows, cols, orow, ocol in plan:
            out[:, :, orow, ocol].addcmul_(x[:, :, rows, cols], weights[:, k : k + 1, orow, ocol])
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weights = ctx.saved_tensors
        grad_x = grad_weights = None
        if ctx.library is not None and not torch.is_grad_enabled():
            grad_x, grad_weights = _kernel_backward(
                ctx.library, x, weights, grad_out.contiguous(), ctx.geometry, ctx.needs_input_grad
            )
            return grad_x, grad_weights, None, None, None, None
        plan = _plan(x.shape[-2:], weights.shape[-2:], *ctx.geometry)
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            for k, rows, cols, orow, ocol in plan:
                grad_x[:, :, rows, cols].addcmul_(
                    grad_out[:, :, orow, ocol], weights[:, k : k + 1, orow, ocol]
                )
        if ctx.needs_input_grad[1]:
            grad_weights = torch.zeros_like(weights)
            for k, rows, cols, orow, ocol in plan:
                grad_weights[:, k, orow, ocol] = (
                    grad_out[:, :, orow, ocol] * x[:, :, rows, cols]
                ).sum(1)
        return grad_x, grad_weights, None, None, None, None


BACKENDS = ("auto", "torch", "kernel")


def _kernel_library(x: Tensor, weights: Tensor, backend: str):
    """The compiled CPU kernel library when it applies to these tensors, else None.

    It applies to contiguous float32/float64 CPU tensors (any kernel size); anything else,
    and every CUDA tensor, takes the pure-PyTorch path. ``backend="kernel"`` insists on it.
    """
    if backend == "torch":
        return None
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return None  # tracing/export (torchlap export): the graph needs PyTorch's own ops
    applies = (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and weights.dtype == x.dtype
        and x.is_contiguous()
        and weights.is_contiguous()
    )
    library = lap_kernels() if applies else None
    if backend == "kernel" and library is None:
        raise RuntimeError(
            "backend='kernel' needs the compiled CPU kernel and contiguous float32/float64 CPU "
            f"tensors; got {x.dtype} on {x.device} (contiguous: {x.is_contiguous()}), kernel "
            f"{'available' if lap_kernels() is not None else 'not available'}"
        )
    return library


def _typed(library: Any, name: str, dtype: torch.dtype) -> Any:
    """The kernel library's function ``name`` for ``dtype`` (``name_f32`` or ``name_f64``)."""
    return getattr(library, f"{name}_f32" if dtype == torch.float32 else f"{name}_f64")


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _geometry(x: Tensor, weights: Tensor, kernel_size, stride, padding):
    batch, channels, height, width = x.shape
    out_h, out_w = weights.shape[-2:]
    return LapGeometry(
        batch, channels, height, width, out_h, out_w, *kernel_size, *stride, *padding
    )


def _kernel_backward(library, x, weights, grad_out, geometry_args, needs_input_grad):
    """grad_x and grad_weights of the windowed sum with the compiled kernel (one fused pass)."""
    kernel_size, stride, padding = geometry_args
    geometry = _geometry(x, weights, kernel_size, stride, padding)
    batch, channels = x.shape[:2]
    grad_x = torch.empty_like(x) if needs_input_grad[0] else None
    partial, chunks = _weight_grad_partials(weights, batch, channels, needs_input_grad[1])
    backward = _typed(library, "lap_backward", x.dtype)
    status = backward(
        x.data_ptr(),
        weights.data_ptr(),
        grad_out.data_ptr(),
        grad_x.data_ptr() if grad_x is not None else None,
        partial.data_ptr() if partial is not None else None,
        geometry,
        chunks,
        _threads(),
    )
    check_status(status, "LAP's window sum backward", x.shape)
    return grad_x, _sum_partials(partial)


def _weight_grad_partials(
    weights: Tensor, batch: int, channels: int, needed: bool
) -> tuple[Tensor | None, int]:
    """Buffer for the kernels' weight gradient: the channel sum is split over ``chunks`` tasks,
    each writing its own partial sum ``(B, chunks, *weights.shape[1:])`` (summed afterwards)."""
    if not needed:
        return None, 1
    chunks = max(1, min(channels, -(-2 * _threads() // max(batch, 1))))  # >= 1 when empty
    return weights.new_zeros((batch, chunks, *weights.shape[1:])), chunks


def _sum_partials(partial: Tensor | None) -> Tensor | None:
    """The weight gradient from the per-task partial sums of :func:`_weight_grad_partials`."""
    if partial is None:
        return None
    return partial[:, 0] if partial.shape[1] == 1 else partial.sum(dim=1)


def _plan(in_size, out_size, kernel_size, stride, padding):
    """For every kernel offset, the strided input view and the output block it feeds."""
    plan = []
    for a in range(kernel_size[0]):
        rows = _offset_slices(a, stride[0], padding[0], in_size[0], out_size[0])
        if rows is None:
            continue
        for b in range(kernel_size[1]):
            cols = _offset_slices(b, stride[1], padding[1], in_size[1], out_size[1])
            if cols is None:
                continue
            plan.append((a * kernel_size[1] + b, rows[0], cols[0], rows[1], cols[1]))
    return plan


def local_attention_pool2d(
    x: Tensor,
    score: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    alpha: Tensor | float = 1.0,
    eps: float = 1e-6,
    ceil_mode: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Local attention pooling of ``x`` (B, C, H, W) by a score map ``score`` (B, 1, H, W).

    Implements Eq. 1 with the window normalisation of Eq. 4 (paper 000, section III.A).
    Padded pixels have weight exactly 0 (like ``avg_pool2d(count_include_pad=False)``):
    with a constant score inside a window the result is the plain average of its real pixels.

    Accepted (the rules of :class:`~torchlap.layers.lap.LocalAttentionPool2d`, checked before
    any work): ``x`` and ``score`` floating-point tensors on one device; ``kernel_size`` and
    ``stride`` ints >= 1 or pairs of them, ``padding`` >= 0 and at most half the kernel (never a
    bool); ``alpha`` a finite float or a one-element floating-point tensor (its value is not
    read: a tensor is not checked for NaN); ``eps`` from 1.2e-38 to 1e29; ``ceil_mode`` True or
    False. ``score`` should be >= 0, as Eq. 4 needs (not checked: that would read the map).

    ``backend``: ``"auto"`` (the compiled CPU kernel of :mod:`torchlap._ext` for contiguous
    float32/float64 CPU tensors when it builds, else pure PyTorch; CUDA always takes pure
    PyTorch), ``"torch"`` (pure PyTorch) or ``"kernel"`` (the compiled kernel, or an error).
    """
    kernel, stride_, pad = _window_args(kernel_size, stride, padding)
    check_bool(ceil_mode, "ceil_mode")
    _check_call(x, score, alpha, eps, backend)
    return _local_attention_pool2d(
        x, score, kernel, stride_, pad, alpha, eps, bool(ceil_mode), backend
    )


def _local_attention_pool2d(
    x: Tensor,
    score: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    alpha: Tensor | float,
    eps: float,
    ceil_mode: bool,
    backend: str = "auto",
) -> Tensor:
    """:func:`local_attention_pool2d` without its argument checks: the LAP module's path (its
    constructor and ``_check_input`` did them), with the window as checked pairs."""
    score = _plain.eq4_precision(score)
    weights, _ = window_weights(score, kernel, stride, padding, ceil_mode, alpha, eps)
    # Eq. 1's division on the one-channel weights first: the same average, off the features
    weights = (weights / weights.sum(dim=1, keepdim=True)).to(x.dtype)
    if _plain.functorch_wrapped(x, weights):  # torch.func transforms: PyTorch's own ops
        return _plain.window_sum(x, weights, kernel, stride, padding)
    return _WeightedWindowSum.apply(x, weights, kernel, stride, padding, backend)


class _WindowMatrixSum(torch.autograd.Function):
    """``out[b, c, p] = sum_n x[b, c, n] * weights[b, p, n]`` for (B, C, H, W) ``x``.

    One batched matmul each way. Written as a function so that the input gradient is a fresh
    tensor rather than a view of one: autograd then adds the scorer's gradient into it in place
    instead of allocating a third copy of the input.
    """

    @staticmethod
    def forward(ctx, x, weights):  # type: ignore[override]
        # the pixel count spelled out: ``-1`` cannot be inferred for an empty batch
        batch, channels, height, width = x.shape
        flat = x.reshape(batch, channels, height * width)
        ctx.save_for_backward(x, weights)
        return torch.bmm(flat, weights.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weights = ctx.saved_tensors
        batch, channels, height, width = x.shape
        grad_x = grad_weights = None
        if ctx.needs_input_grad[0]:  # out= is not differentiable: none in a double backward
            out = (
                None if torch.is_grad_enabled() else x.new_empty((batch, channels, height * width))
            )
            grad_x = torch.bmm(grad_out, weights, out=out).view(x.shape)
        if ctx.needs_input_grad[1]:
            flat = x.reshape(batch, channels, height * width)
            grad_weights = torch.bmm(grad_out.transpose(1, 2), flat)
        return grad_x, grad_weights


class _GlobalWeightedSum(torch.autograd.Function):
    """``out[b, c] = sum_p weights[b, p] * x[b, c, p]`` with the compiled CPU kernel."""

    @staticmethod
    def forward(ctx, x, weights, library):  # type: ignore[override]
        batch, channels = x.shape[:2]
        pixels = weights.shape[1]
        out = x.new_empty((batch, channels))
        forward = _typed(library, "lap_global_forward", x.dtype)
        forward(
            x.data_ptr(), weights.data_ptr(), out.data_ptr(), batch, channels, pixels, _threads()
        )
        ctx.save_for_backward(x, weights)
        ctx.library = library
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weights = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward: differentiable operations
            return (*_plain.global_sum_backward(x, weights, grad_out, ctx.needs_input_grad), None)
        batch, channels = x.shape[:2]
        pixels = weights.shape[1]
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        partial, chunks = _weight_grad_partials(weights, batch, channels, ctx.needs_input_grad[1])
        library = ctx.library
        backward = _typed(library, "lap_global_backward", x.dtype)
        backward(
            x.data_ptr(),
            weights.data_ptr(),
            grad_out.data_ptr(),
            grad_x.data_ptr() if grad_x is not None else None,
            partial.data_ptr() if partial is not None else None,
            batch,
            channels,
            pixels,
            chunks,
            _threads(),
        )
        return grad_x, _sum_partials(partial), None


def adaptive_bounds(size: int, out: int) -> tuple[list[int], list[int]]:
    """Start and end of each adaptive window, the rule of ``nn.AdaptiveAvgPool2d``."""
    starts = [(i * size) // out for i in range(out)]
    ends = [-((-(i + 1) * size) // out) for i in range(out)]
    return starts, ends


def _adaptive_membership(size: int, out: int, device: torch.device) -> Tensor:
    """(out, size) bool matrix: pixel ``p`` belongs to adaptive window ``o``."""
    # adaptive_bounds on the device: floor(o S / n) <= p < ceil((o + 1) S / n) for integer p
    window, pixel = torch.arange(out, device=device)[:, None], torch.arange(size, device=device)
    return ((pixel + 1) * out > window * size) & (pixel * out < (window + 1) * size)


def adaptive_local_attention_pool2d(
    x: Tensor,
    score: Tensor,
    output_size: int | Sequence[int | None],
    alpha: Tensor | float = 1.0,
    eps: float = 1e-6,
    backend: str = "auto",
) -> Tensor:
    """Adaptive LAP: the windows of ``nn.AdaptiveAvgPool2d(output_size)``, pooled by Eq. 1 and 4.

    Windows of adaptive pooling differ in size and may overlap, so the weights are kept as a dense
    ``(B, P, H * W)`` matrix over the ``P`` output cells and applied with one batched matmul. That
    is small whenever adaptive pooling is used (``P`` is 1 for the global pool of every
    torchvision classifier; 49 for VGG's 7x7).

    Accepted (the rules of :class:`~torchlap.layers.lap.AdaptiveLocalAttentionPool2d`, checked
    before any work): ``output_size`` an int >= 1 or a pair of ints >= 1 or None (never a bool
    or a float); a map of at least 1x1 pixels; ``x``, ``score``, ``alpha``, ``eps`` and
    ``backend`` as in :func:`local_attention_pool2d`.
    """
    output = _adaptive_output_args(output_size)
    _check_call(x, score, alpha, eps, backend)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(
            f"adaptive LAP needs a feature map of at least 1x1 pixels, got shape {tuple(x.shape)}"
        )
    return _adaptive_local_attention_pool2d(x, score, output, alpha, eps, backend)


def _adaptive_local_attention_pool2d(
    x: Tensor,
    score: Tensor,
    output: tuple[int | None, int | None],
    alpha: Tensor | float,
    eps: float,
    backend: str = "auto",
) -> Tensor:
    """:func:`adaptive_local_attention_pool2d` without its argument checks (the module's path),
    with ``output`` the checked pair."""
    height, width = x.shape[-2:]
    out_h = height if output[0] is None else output[0]
    out_w = width if output[1] is None else output[1]
    batch = x.shape[0]
    flat_score = _plain.eq4_precision(score).reshape(batch, 1, height * width)
    if out_h == 1 and out_w == 1:
        # the global pool: Eq. 4 over the whole map, Eq. 1's division on the one-channel weights
        gauss = torch.exp(-((alpha * (flat_score.amax(dim=2, keepdim=True) - flat_score)) ** 2))
        weights = gauss * flat_score + eps
        weights = (weights / weights.sum(dim=2, keepdim=True)).to(x.dtype)  # (B, 1, HW)
        library = _kernel_library(x, weights, backend)
        if _plain.functorch_wrapped(x, weights):  # torch.func transforms: PyTorch's own ops
            pooled = _plain.matrix_sum(x, weights)
        elif library is not None:
            pooled = _GlobalWeightedSum.apply(x, weights.reshape(batch, height * width), library)
        else:
            pooled = _WindowMatrixSum.apply(x, weights)
        return pooled.reshape(batch, x.shape[1], 1, 1)
    else:
        rows = _adaptive_membership(height, out_h, x.device)
        cols = _adaptive_membership(width, out_w, x.device)
        member = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(out_h * out_w, -1)
        expanded = flat_score.expand(batch, out_h * out_w, height * width)
        # window pixels along dim 1 for lap_normalize: (B, HW, P)
        weights = lap_normalize(
            expanded.transpose(1, 2), member.t().expand(batch, -1, -1), alpha, eps
        ).transpose(1, 2)
    # here the output (B, C, P) is small, so Eq. 1's division goes there (measured faster)
    weights = weights.to(x.dtype)
    summed = _plain.matrix_sum if _plain.functorch_wrapped(x, weights) else _WindowMatrixSum.apply
    pooled = summed(x, weights) / weights.sum(dim=2).unsqueeze(1)
    return pooled.reshape(batch, x.shape[1], out_h, out_w)
