"""The pixel-wise concept scorer of LAP, ``S(x) = A(sigmoid(S_C(x)))`` (paper 000, Eq. 3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module_globals

from torchlap._checks import check_feature_input, check_int, check_positive_int

__all__ = ["AGGREGATIONS", "HEAD_HIDDEN", "ConceptScorer"]

AGGREGATIONS = ("max", "sum", "mean", "conv")
HEAD_HIDDEN = ("shared", "per_head")


class ConceptScorer(nn.Module):
    """Pixel-wise concept scoring ``S(x) = A(sigmoid(S_C(x)))`` of Eq. 3.

    ``S_C`` is two 1x1 convolutions with ``hidden_channels`` hidden units and a ReLU between them
    (the paper's RSNA model). ``hidden_channels=0`` uses a single 1x1 convolution (the paper's
    ImageNet model). The last convolution starts at zero, so every concept probability starts at
    exactly 0.5 everywhere: uniform scores, which make LAP compute the plain average at first.

    ``head_hidden`` (the paper does not say how several heads use the hidden channels):
    ``"shared"`` (default) gives every head the same ``hidden_channels`` units, a head being one
    output channel of the last convolution (as the paper's "1x1 convolution layer with 1000
    heads"); ``"per_head"`` gives each head its own ``hidden_channels`` units (the first
    convolution has ``n_concepts * hidden_channels`` outputs, the last one ``n_concepts``
    groups). Either way with one concept or ``hidden_channels=0``.

    Aggregation ``A`` (only when ``n_concepts > 1``):
      - ``"max"`` and ``"mean"`` keep the score in (0, 1);
      - ``"sum"`` (the paper's CelebA model) gives a score in (0, n_concepts): Eq. 4's Gaussian
        then acts on a scale ``n_concepts`` times larger, which the trainable ``alpha`` absorbs;
      - ``"conv"`` (the paper's ImageNet model) is a trainable 1x1 convolution over the
        probabilities followed by a sigmoid, so the score stays in (0, 1) and positive, as Eq. 4
        needs (a weight must never be negative);
      - an ``nn.Module`` mapping (B, n_concepts, H, W) to (B, 1, H, W) non-negative scores.
    """

    def __init__(
        self,
        in_channels: int,
        n_concepts: int = 1,
        hidden_channels: int = 8,
        aggregation: str | nn.Module = "max",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        head_hidden: str = "shared",
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(n_concepts, "n_concepts")
        check_int(hidden_channels, "hidden_channels", minimum=0)
        _check_dtype(dtype)
        _check_head_hidden(head_hidden)
        if not isinstance(aggregation, nn.Module) and aggregation not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS} "
                "or an nn.Module mapping (B, n_concepts, H, W) to (B, 1, H, W)"
            )
        factory = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.n_concepts = n_concepts
        self.hidden_channels = hidden_channels
        self.head_hidden = head_hidden
        if hidden_channels > 0:
            groups = n_concepts if head_hidden == "per_head" else 1
            self.heads = nn.Sequential(
                nn.Conv2d(in_channels, hidden_channels * groups, 1, **factory),
                nn.ReLU(),
                nn.Conv2d(hidden_channels * groups, n_concepts, 1, groups=groups, **factory),
            )
        else:
            self.heads = nn.Sequential(nn.Conv2d(in_channels, n_concepts, 1, **factory))
        nn.init.zeros_(self.heads[-1].weight)
        nn.init.zeros_(self.heads[-1].bias)
        self.aggregation_name = aggregation if isinstance(aggregation, str) else "module"
        self.aggregate: nn.Module | None = None
        if isinstance(aggregation, nn.Module):
            self.aggregate = aggregation
        elif aggregation == "conv" and n_concepts > 1:
            conv = nn.Conv2d(n_concepts, 1, 1, **factory)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
            self.aggregate = nn.Sequential(conv, nn.Sigmoid())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(concept probabilities (B, h, H, W), aggregated score (B, 1, H, W))``.

        ``x``: (B, ``in_channels``, H, W), floating point of the parameters' dtype and on
        their device (``TypeError``/``ValueError`` saying which, before any work)."""
        heads = self._modules["heads"]
        first = heads._modules["0"]
        weight = first._parameters.get("weight")  # (read directly: this runs on every forward)
        # a weight reparametrised (pruning, torch.nn.utils.parametrize) is no parameter
        check_feature_input(self, x, self.in_channels, first.weight if weight is None else weight)
        if _hooked(heads.__dict__) or _global_hooks():
            hidden = heads(x)  # its hooks, and every module's, run
        else:
            hidden = x
            for module in heads:
                direct = _is_plain_pointwise(module)  # else its own call, hooks and all
                hidden = _pointwise(module, hidden) if direct else module(hidden)
        concepts = torch.sigmoid(hidden)
        if self.n_concepts == 1:
            return concepts, concepts
        if self.aggregate is not None:
            score = self.aggregate(concepts)
            expected = (x.shape[0], 1, *x.shape[-2:])
            if tuple(score.shape) != expected:
                raise ValueError(
                    f"the aggregation module returned shape {tuple(score.shape)}, "
                    f"expected {expected}"
                )
            return concepts, score
        if self.aggregation_name == "max":
            return concepts, concepts.amax(dim=1, keepdim=True)
        if self.aggregation_name == "sum":
            return concepts, concepts.sum(dim=1, keepdim=True)
        return concepts, concepts.mean(dim=1, keepdim=True)


def _check_head_hidden(head_hidden: object) -> None:
    """``head_hidden`` one of :data:`HEAD_HIDDEN`."""
    if not isinstance(head_hidden, str) or head_hidden not in HEAD_HIDDEN:
        raise ValueError(
            f"head_hidden must be one of {HEAD_HIDDEN} (the heads share the hidden channels, or "
            f"each head has its own), got {head_hidden!r}"
        )


def _check_dtype(dtype: object) -> None:
    """``dtype`` None or a floating-point ``torch.dtype`` (the parameters learn: integer and
    complex parameters cannot)."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(
            "dtype must be a floating-point torch.dtype (e.g. torch.float32) or None, "
            f"got {dtype!r}"
        )


def _hooked(state: dict) -> bool:
    """A forward or backward hook in a module's ``__dict__`` (a call that bypasses the module,
    the fused layer or :func:`_pointwise`, would bypass the hook)."""
    return bool(
        state["_forward_hooks"]
        or state["_forward_pre_hooks"]
        or state["_backward_hooks"]
        or state["_backward_pre_hooks"]
    )


def _global_hooks() -> bool:
    """A module hook registered globally (``nn.modules.module.register_module_*_hook``)."""
    return bool(
        _module_globals._global_forward_hooks
        or _module_globals._global_forward_pre_hooks
        or _module_globals._global_backward_hooks
        or _module_globals._global_backward_pre_hooks
    )


def _is_plain_pointwise(module: nn.Module) -> bool:
    """Whether ``module`` is an unhooked plain 1x1 ``nn.Conv2d`` (stride 1, no padding,
    dilation or groups) whose weight is a parameter: a call that computes it directly
    (:func:`_pointwise`, the fused layer) gives what its own call gives. A subclass, a hook, or
    a reparametrised weight (pruning adds a pre-hook; ``parametrize`` changes the class) keeps
    the module's own call."""
    if type(module) is not nn.Conv2d:
        return False
    state = module.__dict__
    return not (
        _hooked(state)
        or state["kernel_size"] != (1, 1)
        or state["stride"] != (1, 1)
        or state["padding"] != (0, 0)
        or state["dilation"] != (1, 1)
        or state["groups"] != 1
        or state["_parameters"].get("weight") is None
    )


def _pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 convolution as one batched matmul.

    Same result as ``conv(x)``. The scorer sees the largest feature maps of the network, and on
    the CPU backend both the convolution's backward and ``torch.matmul``'s (which folds the
    broadcast batch) allocate an extra copy of ``x``; ``bmm`` with an expanded weight does not
    (measured with ``torchlap bench layer``).
    """
    batch, channels, height, width = x.shape
    weight = conv.weight.reshape(conv.out_channels, channels).expand(batch, -1, -1)
    out = torch.bmm(weight, x.reshape(batch, channels, height * width))
    if conv.bias is not None:
        out = out + conv.bias[:, None]
    return out.reshape(batch, conv.out_channels, height, width)
