"""Batch normalisation folded into the convolution before it, for forwards without gradients.

An eval-mode ``BatchNorm2d`` after a ``Conv2d`` is an affine map per output channel, so the pair
equals one convolution with weight ``W * s`` and bias ``(b - mean) * s + beta``
(``s = gamma / sqrt(var + eps)``). Perturbation explainers push hundreds of masked images per
image through the model; on the CPU the batch norms are a fifth of a ResNet forward's time
(measured: LAP-ResNet18, 64 images at 112 px, channels-last float32: 4.6 against 6.2 ms per
image with in-place ReLUs and folded batch norms, against the explanation context's default).

Folding needs to know that nothing else reads the convolution's output, which only a graph of
the model says, and ``torch.fx`` cannot trace every model (the lapified blocks keep their maps
on the module). :func:`folded_batch_norms` therefore finds candidate pairs in one probe
forward (a batch norm whose input is the very tensor a convolution returned), folds them for
the duration of a ``with`` block, and keeps the fold only if the folded model's logits on the
probe equal the original's (float rounding aside); otherwise it undoes it and the model runs as
it is. The probe forwards leave the model as they found it: nothing is probed while any module
is in train mode (a training batch norm would update its running statistics, and folds
nothing), and the last maps of the LAP layers (and of the other modules that keep theirs) are
put back after the probes. The arithmetic of one fold is torch's
(``torch.nn.utils.fusion.fuse_conv_bn_weights``); torch leaves finding the pairs that are safe
to fold to the caller, which is the part written here.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from torchlap._hooks import Hooks
from torchlap.layers._state import kept_last_maps

__all__ = ["conv_bn_pairs", "folded_batch_norms", "logits_agree"]

logger = logging.getLogger(__name__)

# logits of the folded model may differ from the original's by float rounding only: this
# fraction of the largest logit (a wrong fold changes them by orders of magnitude more)
FOLD_TOLERANCE = 1e-4


def conv_bn_pairs(model: nn.Module, probe: Tensor) -> tuple[list[tuple], Tensor]:
    """The (conv, parent, name, bn) pairs a probe forward shows, and its logits: an eval
    ``nn.BatchNorm2d`` with running statistics whose input is exactly the output of an
    ``nn.Conv2d`` (neither a subclass nor hooked, nor parametrized), each run once. Call it
    under ``torch.no_grad`` with the LAP maps kept (:func:`folded_batch_norms` does)."""
    names = {id(module): name for name, module in model.named_modules()}
    # each convolution output by id and weak reference: a freed output's id may come back for
    # another tensor, and a dead reference tells them apart without keeping the outputs alive
    produced: dict[int, tuple[nn.Conv2d, weakref.ref]] = {}
    calls: dict[int, int] = {}
    candidates: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def after_conv(module: nn.Module, args: tuple, output: object) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        if isinstance(output, Tensor):
            produced[id(output)] = (module, weakref.ref(output))  # type: ignore[assignment]

    def before_bn(module: nn.Module, args: tuple) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        entry = produced.get(id(args[0])) if args else None
        if entry is not None and entry[1]() is args[0]:
            candidates.append((entry[0], module))  # type: ignore[arg-type]

    hooks = Hooks()
    try:
        for module in model.modules():
            if type(module) is nn.Conv2d:
                hooks.forward(module, after_conv)
            elif type(module) is nn.BatchNorm2d:
                hooks.forward_pre(module, before_bn)
        logits = model(probe.clone())  # a module may write its input in place
    finally:
        hooks.remove()
    pairs = []
    for conv, bn in candidates:
        foldable = (
            calls[id(conv)] == 1  # a shared module is folded for every use or none
            and calls[id(bn)] == 1
            and not bn.training
            and bn.running_mean is not None
            and bn.running_var is not None
            and type(conv.weight) is nn.Parameter  # not parametrized
            and not (conv._forward_hooks or conv._forward_pre_hooks)
            and not (bn._forward_hooks or bn._forward_pre_hooks)
        )
        if foldable:
            parent_name, _, child = names[id(bn)].rpartition(".")
            parent = model.get_submodule(parent_name)
            if parent._modules.get(child) is bn:
                pairs.append((conv, parent, child, bn))
    return pairs, logits


def logits_agree(reference: object, other: object) -> tuple[bool, float, float]:
    """Whether ``other`` gives the logits ``reference`` to :data:`FOLD_TOLERANCE` of the
    largest logit (at least 1), with the largest difference and the largest logit; logits that
    are not two non-empty tensors of one shape (nan, nan) do not agree."""
    error = scale = float("nan")
    comparable = (
        isinstance(reference, Tensor)
        and isinstance(other, Tensor)
        and reference.shape == other.shape
        and reference.numel() > 0
    )
    if comparable:
        scale = float(reference.abs().amax())  # type: ignore[union-attr]
        error = float((other - reference).abs().amax())  # type: ignore[operator]
    return error <= FOLD_TOLERANCE * max(scale, 1.0), error, scale


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[nn.Parameter, nn.Parameter]:
    """The weight and bias of the convolution with the batch norm after it (torch's arithmetic;
    detached, so the folded parameters do not require grad)."""

    def detached(tensor: Tensor | None) -> Tensor | None:
        return None if tensor is None else tensor.detach()

    return fuse_conv_bn_weights(
        conv.weight.detach(),
        detached(conv.bias),
        bn.running_mean,  # type: ignore[arg-type]
        bn.running_var,  # type: ignore[arg-type]
        bn.eps,
        detached(bn.weight),
        detached(bn.bias),
    )


@contextlib.contextmanager
def folded_batch_norms(model: nn.Module, probe: Tensor) -> Iterator[int]:
    """Within the block, every safely foldable eval ``BatchNorm2d`` folded into its ``Conv2d``.

    ``model`` a classifier in eval mode, ``probe`` a small batch of its inputs (one image is
    enough). Runs one probe forward to find the pairs and one to check the folded model's
    logits against the original's (both without gradients, in float32); yields the number of
    folded pairs (0: the model runs unchanged). A model with any module in train mode is not
    probed at all (a training batch norm is not an affine map, and a probe forward would
    update its running statistics): it yields 0 and the model runs unchanged. The probes
    leave the LAP layers' last maps as they were, and ``probe`` as it was (each forward gets a
    copy: a first module in place, ``nn.ReLU(inplace=True)`` on the input, would write it, and
    the second forward would see other pixels than the first). The model's parameters and
    modules are restored when the block ends, also on error. Meant for forwards under
    ``torch.inference_mode`` or ``torch.no_grad``: the folded weights do not require grad.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(probe, Tensor):
        raise TypeError(f"probe must be a tensor of model inputs, got {type(probe).__name__}")
    modules = list(model.modules())
    if not any(type(m) is nn.BatchNorm2d for m in modules) or any(m.training for m in modules):
        yield 0  # nothing to fold, or train mode: no probe forward, the model is untouched
        return
    undo: list[Callable[[], None]] = []
    try:
        with (
            torch.no_grad(),
            torch.autocast(probe.device.type, enabled=False),
            kept_last_maps(model),
        ):
            pairs, reference = conv_bn_pairs(model, probe)
            for conv, parent, child, bn in pairs:
                weight, bias = _folded(conv, bn)
                undo.append(partial(conv._parameters.update, conv._parameters.copy()))
                undo.append(partial(parent._modules.__setitem__, child, bn))
                conv._parameters["weight"], conv._parameters["bias"] = weight, bias
                parent._modules[child] = nn.Identity()
            if pairs:
                folded_logits = model(probe.clone())  # see the docstring
                agree, error, scale = logits_agree(reference, folded_logits)
                if not agree:
                    logger.info(
                        "batch norms not folded: the folded model's logits differ by %.3g "
                        "(largest logit %.3g); something else reads a convolution's output",
                        error,
                        scale,
                    )
                    _undo(undo)
                    pairs = []
        yield len(pairs)
    finally:
        _undo(undo)


def _undo(undo: list[Callable[[], None]]) -> None:
    """Put back the parameters and modules a fold replaced (last change first)."""
    while undo:
        undo.pop()()
