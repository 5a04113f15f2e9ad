"""A whole LAP layer in one compiled CPU call each way (paper 000, Eq. 1-4 with the scorer).

On the CPU, :func:`fused_lap_layer` runs the concept scorer (Eq. 3: 1x1 convolutions, ReLU,
sigmoid, aggregation), Eq. 4 and Eq. 1 as one call into ``torchlap._ext`` forward and one
backward: a layer is otherwise about 15 small PyTorch ops each way, whose dispatch and autograd
overhead dominate on small maps. Measured with ``torchlap bench layer`` (1 thread,
forward+backward, against the per-op path with the same pooling kernels; 2026-12-02) it is
faster at every pooling shape of the paper's models: 0.6-0.8x the time on the large maps (e.g.
0.60x at (2, 64, 112, 112) k3 s2 p1), 0.4-0.5x on the 12-28 px maps and about a third at the
global pools, so :class:`~torchlap.layers.lap.LapBase` uses it wherever it applies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from torchlap._ext import LapGeometry, LapLayerSpec, check_status, lap_kernels
from torchlap.layers.functional import _threads, _typed, pool_output_size

__all__ = ["BACKWARD_OUTPUT_ARGS", "fused_lap_layer", "fused_layer_calls"]

# How often each fused whole-layer path ran (tests check that it is taken; bench reports it).
fused_layer_calls = {"global": 0, "window": 0}
_AGGREGATION_CODES = {"max": 0, "sum": 1, "mean": 2, "conv": 3}
# the largest scorer the fused layer takes: outputs of its first 1x1 convolution, and concepts.
# Its convolution kernel keeps 8 outputs per pass in registers, which beats PyTorch's per-op
# path (a batched GEMM) on small scorers and loses to it on large ones: forward+backward at
# (8, 1024, 14, 14), (8, 256, 28, 28) and (1, 1024, 14, 14), hidden 0, "conv" aggregation,
# fused / per-op 0.42-0.65 with 8-16 concepts, 0.78-0.95 with 64, 0.86-1.25 with 128 and
# 0.97-1.93 with 256 (python benchmarks/scorer_sizes.py, 2026-12-03, 2 threads)
MAX_FUSED_HEADS = 64
# how the windowed sums are laid out (TORCHLAP_LAP_WINDOWS): "" lets the kernel choose by map
# size (channel tiles on maps of up to 1024 pixels, and up to 4096 when every thread has whole
# samples; phase planes above: lap_cpu.c, lap_use_tiles); the two names force one
_WINDOW_LAYOUTS = {"": -1, "phases": 0, "tiles": 1}
# where _FusedLapLayer.backward passes the two buffers lap_layer_backward writes, grad_x and the
# parameter gradients, among its arguments (a replay of a recorded call swaps in its own)
BACKWARD_OUTPUT_ARGS = (10, 11)
# (shape, window, scorer sizes, aggregation) -> ctypes geometry and scorer spec: building them
# costs more than a small layer's whole kernel call, and a network has a few shapes only
_layer_setups: dict[tuple, tuple[LapGeometry, LapLayerSpec]] = {}


class _FusedLapLayer(torch.autograd.Function):
    """A whole LAP layer (scorer, Eq. 4, Eq. 1) in one compiled call forward and one backward.

    Inputs ``x`` (B, C, H, W), the scorer's 1x1 convolution weights ``w1`` (h1, C, 1, 1) and
    ``w2`` (n, h, 1, 1) with biases ``b1``, ``b2`` (``w2``, ``b2`` None without a hidden layer),
    the "conv" aggregation's ``wa`` (1, n, 1, 1) and ``ba`` (1,) (None for the others), and
    ``alpha``; outputs ``(pooled, concepts, score)``. The backward takes the gradients of all
    three outputs (the injection losses act on ``concepts``) and is not itself differentiable
    (a double backward raises).
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, wa, ba, alpha, eps, setup, library):  # type: ignore[override]
        geometry, spec = setup
        # the aggregation's n weights and its bias side by side, as the kernel reads them
        agg = None if wa is None else torch.cat([wa.reshape(-1), ba.reshape(-1)])
        batch, channels, height, width = x.shape
        hid = x.new_empty((batch, spec.hidden, height, width)) if spec.hidden > 0 else None
        concepts = x.new_empty((batch, spec.concepts, height, width))
        score = x.new_empty((batch, 1, height, width))
        weights = x.new_empty((batch, geometry.kh * geometry.kw, geometry.Ho, geometry.Wo))
        pooled = x.new_empty((batch, channels, geometry.Ho, geometry.Wo))
        alpha_value = float(alpha)
        forward = _typed(library, "lap_layer_forward", x.dtype)
        status = forward(
            x.data_ptr(),
            w1.data_ptr(),
            b1.data_ptr(),
            None if w2 is None else w2.data_ptr(),
            None if b2 is None else b2.data_ptr(),
            None if hid is None else hid.data_ptr(),
            concepts.data_ptr(),
            score.data_ptr(),
            weights.data_ptr(),
            pooled.data_ptr(),
            geometry,
            spec,
            alpha_value,
            eps,
            _threads(),
            None if agg is None else agg.data_ptr(),
        )
        check_status(status, "a LAP layer's forward", x.shape)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, w1, w2, hid, concepts, score, weights, agg)
        ctx.layer = (setup, library, alpha_value, eps)
        return pooled, concepts, score

    @staticmethod
    def backward(ctx, grad_pooled, grad_concepts, grad_score):  # type: ignore[override]
        if torch.is_grad_enabled():
            raise RuntimeError(
                "the fused CPU LAP layer has no double backward (create_graph=True); set "
                "TORCHLAP_FUSED_LAYER=0 (read at every call) or start with TORCHLAP_NO_EXT=1 to "
                "use the per-op path, which has one"
            )
        x, w1, w2, hid, concepts, score, weights, agg = ctx.saved_tensors
        (geometry, spec), library, alpha, eps = ctx.layer
        needs = ctx.needs_input_grad
        grad_x = torch.empty_like(x) if needs[0] else None
        # the parameter gradients, one after the other: w1, b1, (w2, b2,) (wa and ba,) alpha
        sizes = [w1.numel(), w1.shape[0]]
        if w2 is not None:
            sizes += [w2.numel(), w2.shape[0]]
        if agg is not None:
            sizes.append(agg.numel())
        flat = x.new_empty(sum(sizes) + 1)
        # contiguous copies (e.g. of an expanded gradient) held here while the kernel reads them
        held = [
            None if g is None else g.contiguous() for g in (grad_pooled, grad_concepts, grad_score)
        ]
        upstream = [None if g is None else g.data_ptr() for g in held]
        backward = _typed(library, "lap_layer_backward", x.dtype)
        status = backward(
            x.data_ptr(),
            w1.data_ptr(),
            None if w2 is None else w2.data_ptr(),
            None if hid is None else hid.data_ptr(),
            concepts.data_ptr(),
            score.data_ptr(),
            weights.data_ptr(),
            *upstream,
            None if grad_x is None else grad_x.data_ptr(),
            flat.data_ptr(),
            geometry,
            spec,
            alpha,
            eps,
            int(needs[1]),
            _threads(),
            None if agg is None else agg.data_ptr(),
        )
        check_status(status, "a LAP layer's backward", x.shape)
        parts = flat.split_with_sizes([*sizes, 1])  # (Tensor.split adds a Python wrapper)
        grad_w1 = parts[0].view(w1.shape) if needs[1] else None
        grad_b1 = parts[1] if needs[2] else None
        grad_w2 = grad_b2 = grad_wa = grad_ba = None
        if w2 is not None:
            grad_w2 = parts[2].view(w2.shape) if needs[3] else None
            grad_b2 = parts[3] if needs[4] else None
        # alpha acts on the pooled output only, the aggregation on the score and what it pools:
        # with no gradient into those, they get None, as on the per-op path (a zero tensor would
        # still be decayed and given momentum by an optimizer, which skips None)
        if agg is not None and not (grad_pooled is None and grad_score is None):
            n = agg.numel() - 1
            grad_wa = parts[-2][:n].view(1, n, 1, 1) if needs[5] else None
            grad_ba = parts[-2][n:] if needs[6] else None
        grad_alpha = parts[-1].view(()) if needs[7] and grad_pooled is not None else None
        return (
            grad_x, grad_w1, grad_b1, grad_w2, grad_b2, grad_wa, grad_ba, grad_alpha,
            None, None, None,
        )  # fmt: skip


def fused_lap_layer(
    x: Tensor,
    heads: Sequence[tuple[Tensor, Tensor]],
    aggregation: str,
    alpha: Tensor,
    eps: float,
    window: tuple[tuple[int, int], tuple[int, int], tuple[int, int], bool] | None,
    aggregate: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """A whole LAP layer in one compiled call each way, or None where that path does not apply.

    ``heads``: the scorer's 1x1 convolutions as ``(weight (out, in, 1, 1), bias)`` pairs, one (no
    hidden layer) or two (ReLU between them); ``aggregation`` ``"max"``, ``"sum"``, ``"mean"``
    or ``"conv"`` (ignored for one concept; ``"conv"`` takes ``aggregate``, the 1x1
    convolution over the concepts as ``(weight (1, n, 1, 1), bias (1,))``, before its sigmoid);
    ``window`` ``(kernel, stride, padding, ceil_mode)``, or None for
    the global pool (Eq. 4 over the whole map). Returns ``(pooled, concepts, score)`` with the
    shapes of the unfused path. It applies to float32/float64 CPU tensors of one dtype (``x``
    contiguous or channels-last, then copied to contiguous) with the compiled kernel available,
    outside tracing/export, autocast and torch.func transforms, for scorers of at most
    ``MAX_FUSED_HEADS`` (64) first-convolution outputs and concepts; everything else (and every
    CUDA tensor) returns None: the caller's PyTorch path.
    ``TORCHLAP_FUSED_LAYER=0`` turns it off (then the per-op path runs, with the same kernels
    for the pooling itself).
    """
    if os.environ.get("TORCHLAP_FUSED_LAYER", "") == "0":
        return None  # the per-op path with the same kernels (for comparisons)
    library = _fused_library(x, heads if aggregate is None else [*heads, aggregate], alpha)
    if library is None or aggregation not in _AGGREGATION_CODES:
        return None
    if heads[0][0].shape[0] > MAX_FUSED_HEADS or heads[-1][0].shape[0] > MAX_FUSED_HEADS:
        return None  # a large scorer: PyTorch's GEMMs are faster
    conv = aggregation == "conv" and heads[-1][0].shape[0] > 1
    if conv and aggregate is None:
        raise ValueError('the "conv" aggregation of several concepts needs its weights (aggregate)')
    # channels-last activations (the masked forwards of the perturbation explainers, a user's
    # channels-last model): one NCHW copy for the kernel, which reads rows of one channel;
    # measured on a LAP-ResNet18 forward at 112-224 px, this beats the per-op path on the
    # channels-last tensor by 5-9%
    x = x.contiguous()
    (w1, b1), (w2, b2) = heads[0], (heads[1] if len(heads) == 2 else (None, None))
    wa, ba = aggregate if conv else (None, None)
    layout = os.environ.get("TORCHLAP_LAP_WINDOWS", "")
    key = (x.shape, window, w1.shape, None if w2 is None else w2.shape, aggregation, layout)
    setup = _layer_setups.get(key)
    if setup is None:
        setup = _layer_setup(x.shape, window, w1, w2, aggregation, layout)
        if len(_layer_setups) > 256:
            _layer_setups.clear()
        _layer_setups[key] = setup
    fused_layer_calls["global" if window is None else "window"] += 1
    return _FusedLapLayer.apply(
        x,
        w1,
        b1,
        w2,
        b2,
        wa,
        ba,
        alpha,
        float(eps),
        setup,
        library,
    )


def _layer_setup(shape, window, w1, w2, aggregation, layout) -> tuple[LapGeometry, LapLayerSpec]:
    if layout not in _WINDOW_LAYOUTS:
        raise ValueError(
            f"TORCHLAP_LAP_WINDOWS={layout!r} is not a layout of the LAP kernels' window sums; "
            "expected 'phases', 'tiles', or unset (chosen by map size)"
        )
    batch, channels, height, width = shape
    if window is None:
        geometry = LapGeometry(batch, channels, height, width, 1, 1, height, width, 1, 1, 0, 0)
    else:
        (kh, kw), (sh, sw), (ph, pw), ceil_mode = window
        out_h = pool_output_size(height, kh, sh, ph, ceil_mode)
        out_w = pool_output_size(width, kw, sw, pw, ceil_mode)
        geometry = LapGeometry(batch, channels, height, width, out_h, out_w, kh, kw, sh, sw, ph, pw)
    spec = LapLayerSpec(
        hidden=w1.shape[0] if w2 is not None else 0,
        concepts=(w2 if w2 is not None else w1).shape[0],
        aggregation=_AGGREGATION_CODES[aggregation],
        global_pool=int(window is None),
        tiles=_WINDOW_LAYOUTS[layout],
    )
    return geometry, spec


def _fused_library(x: Tensor, heads: Sequence[tuple[Tensor, Tensor]], alpha: Tensor):
    """The kernel library when the fused layer applies to these tensors, else None."""
    dtype = x.dtype
    # is_cpu rather than device.type: this runs on every forward, and building the device
    # object takes about 5x as long (python -m timeit: 273 against 59 ns per tensor)
    if not x.is_cpu or (dtype != torch.float32 and dtype != torch.float64):
        return None
    if type(x) is not torch.Tensor and type(x) is not torch.nn.Parameter:
        return None  # tensor subclasses (fake/meta tensors, wrappers) keep PyTorch's ops
    if x.dim() != 4 or x.numel() == 0:
        return None
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        return None
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return None
    if torch.is_autocast_enabled("cpu"):
        return None
    for pair in heads:
        for tensor in pair:
            if (
                tensor.dtype != dtype
                or not tensor.is_cpu
                or not tensor.is_contiguous()
                or _functorch_wrapped(tensor)
            ):
                return None  # torch.func transforms need PyTorch's own ops (or a vmap rule)
    if alpha.dtype != dtype or not alpha.is_cpu or alpha.numel() != 1:
        return None
    if _functorch_wrapped(x) or _functorch_wrapped(alpha):
        return None
    return lap_kernels()


try:
    _functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
except AttributeError:  # pragma: no cover - older PyTorch without torch.func

    def _functorch_wrapped(tensor: Tensor) -> bool:
        return False
