"""LAP modules: the local attention pools (Eq. 1-4) around the concept scorer (Eq. 3).

Paper 000, section III.A. A LAP layer scores every pixel for ``n_concepts`` concepts with small
1x1-convolution heads (:mod:`torchlap.layers.scorer`), turns the scores into concept
probabilities with a sigmoid, aggregates them into one score map, and pools each window by the
window-normalised scores.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from torchlap._checks import check_bool, check_feature_input, check_number
from torchlap.layers._state import KeepsLastMaps
from torchlap.layers.functional import (
    _adaptive_local_attention_pool2d,
    _adaptive_output_args,
    _check_eps,
    _local_attention_pool2d,
    _window_args,
    pool_output_size,
)
from torchlap.layers.fused import fused_lap_layer
from torchlap.layers.scorer import (
    AGGREGATIONS,
    HEAD_HIDDEN,
    ConceptScorer,
    _global_hooks,
    _hooked,
    _is_plain_pointwise,
)

__all__ = [
    "AGGREGATIONS",
    "HEAD_HIDDEN",
    "AdaptiveLocalAttentionPool2d",
    "ConceptScorer",
    "LapBase",
    "LapMaps",
    "LocalAttentionPool2d",
    "attention_maps",
    "clear_attention_maps",
    "lap_modules",
]

# Forward-order stamps for attention_maps(): registration order is not always execution order
# (models may register modules in any order), so each pass stamps the maps it leaves.
_pass_clock = [0]


@dataclass
class LapMaps:
    """The maps one LAP layer left behind in the last forward pass (at its input resolution).

    ``concepts``: concept probabilities ``I_concept`` (B, n_concepts, H, W), in (0, 1).
    ``score``: the aggregated score ``S`` (B, 1, H, W) that the pooling used.
    ``discriminative``: probabilities of the discriminative scoring module (computed on the
    detached input), when that module is enabled; used by the concept-discrimination loss.
    """

    concepts: Tensor
    score: Tensor
    discriminative: Tensor | None = None
    input_size: tuple[int, int] = field(default=(0, 0))

    def detach(self) -> LapMaps:
        """A copy whose tensors are cut from the autograd graph."""
        disc = None if self.discriminative is None else self.discriminative.detach()
        return LapMaps(self.concepts.detach(), self.score.detach(), disc, self.input_size)


class LapBase(KeepsLastMaps, nn.Module):
    """Shared parts of the LAP layers: the scorer, ``alpha``, ``eps`` and the stored maps.

    After every forward pass ``self.maps`` holds the :class:`LapMaps` of that pass. When grad is
    enabled they stay in the graph (the training losses need that); :func:`attention_maps`
    detaches them unless asked not to. Each pass replaces the previous maps, so nothing
    accumulates across passes. A copy (``copy.deepcopy``, pickling) starts without maps.
    """

    maps: LapMaps | None

    def __init__(
        self,
        in_channels: int,
        n_concepts: int = 1,
        hidden_channels: int = 8,
        aggregation: str | nn.Module = "max",
        alpha: float = 1.0,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        head_hidden: str = "shared",
    ) -> None:
        super().__init__()
        check_number(alpha, "alpha", accepted="a finite float (Eq. 4's sharpness)")
        _check_eps(eps)
        self.scorer = ConceptScorer(
            in_channels, n_concepts, hidden_channels, aggregation, device=device, dtype=dtype,
            head_hidden=head_hidden,
        )  # fmt: skip
        self.alpha = nn.Parameter(torch.tensor(float(alpha), device=device, dtype=dtype))
        self.eps = float(eps)
        self.discriminative_scorer: ConceptScorer | None = None
        self.maps = None
        self._forward_index = 0

    @property
    def in_channels(self) -> int:
        """Number of feature channels the layer expects."""
        return self.scorer.in_channels

    @property
    def n_concepts(self) -> int:
        """Number of concept heads."""
        return self.scorer.n_concepts

    def enable_discriminative_scorer(self) -> ConceptScorer:
        """Add the discriminative scoring module of section III.B.1 (idempotent).

        It has the scorer's architecture, sees the detached layer input, and only chooses the
        top/bottom pixel sets of the concept-discrimination loss.
        """
        if self.discriminative_scorer is None:
            scorer = copy.deepcopy(self.scorer)
            # a fresh random start, so that it does not merely copy the main heads
            for module in scorer.heads:
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()
            self.discriminative_scorer = scorer
        return self.discriminative_scorer

    def disable_discriminative_scorer(self) -> None:
        """Remove the discriminative scoring module."""
        self.discriminative_scorer = None

    def clear_maps(self) -> None:
        """Forget the maps of the last pass (frees their memory)."""
        self.maps = None

    def _check_input(self, x: Tensor) -> None:
        # on every forward pass: metadata checks only, the channels and the parameter read
        # from the module dicts directly (a module attribute through nn.Module.__getattr__
        # costs more than all of them)
        in_channels = self._modules["scorer"].in_channels
        check_feature_input(self, x, in_channels, self._parameters["alpha"], min_size=1)

    def _keep_maps(self, x: Tensor, concepts: Tensor, score: Tensor, discriminative) -> None:
        # plain attributes (neither parameters nor modules): set directly, without the cost of
        # nn.Module.__setattr__ on every pass
        state = self.__dict__
        state["maps"] = LapMaps(concepts, score, discriminative, (x.shape[-2], x.shape[-1]))
        _pass_clock[0] += 1
        state["_forward_index"] = _pass_clock[0]

    def _score(self, x: Tensor) -> Tensor:
        self._check_input(x)
        concepts, score = self.scorer(x)
        discriminative = None
        if self.discriminative_scorer is not None:
            discriminative = self.discriminative_scorer(x.detach())[0]
        self._keep_maps(x, concepts, score, discriminative)
        return score

    def _fused_forward(self, x: Tensor, window) -> Tensor | None:
        """The whole layer in one compiled call each way (``fused_lap_layer``), or None.

        Taken on the CPU for the built-in scorer (1x1 heads, aggregation max/sum/mean/conv or one
        concept) without hooks on the scorer's modules (the fused call would bypass them);
        ``fused_lap_layer`` adds the tensor conditions. Anything else returns None and the layer
        runs its PyTorch path, with the same values. A discriminative scorer (weak supervision)
        runs as its own module on the detached input either way: its maps feed the loss only.
        """
        fusable = _fusable_heads(self)
        if fusable is None:
            return None
        heads, aggregate = fusable
        scorer = self._modules["scorer"]
        single = scorer.n_concepts == 1
        aggregation = "max" if single else scorer.aggregation_name
        alpha = self._parameters["alpha"]
        fused = fused_lap_layer(x, heads, aggregation, alpha, self.eps, window, aggregate)
        if fused is None:
            return None
        pooled, concepts, score = fused
        discriminative = None
        if self.discriminative_scorer is not None:
            discriminative = self.discriminative_scorer(x.detach())[0]
        # one concept: the score is the concept map itself, as in the unfused path
        self._keep_maps(x, concepts, concepts if single else score, discriminative)
        return pooled


class LocalAttentionPool2d(LapBase):
    """Local Attention Pooling (paper 000, Eq. 1-4): a drop-in for ``MaxPool2d``/``AvgPool2d``.

    Args:
        in_channels: channels of the input feature map.
        kernel_size, stride, padding, ceil_mode: as in ``nn.MaxPool2d`` (``stride`` defaults to
            ``kernel_size``). Padded pixels never carry weight.
        n_concepts: number of concept heads ``h``.
        hidden_channels: hidden units of the two-convolution heads (0: one 1x1 convolution).
        aggregation: ``"max"``, ``"sum"``, ``"mean"``, ``"conv"`` or an ``nn.Module``.
        alpha: initial value of the trainable sharpness of Eq. 4 (``nn.Parameter`` ``alpha``).
        eps: the ``epsilon`` of Eq. 4 (attribute ``eps``).
        head_hidden: ``"shared"`` or ``"per_head"`` hidden channels (:class:`ConceptScorer`).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        n_concepts: int = 1,
        hidden_channels: int = 8,
        aggregation: str | nn.Module = "max",
        alpha: float = 1.0,
        eps: float = 1e-6,
        ceil_mode: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        head_hidden: str = "shared",
    ) -> None:
        kernel, stride_, pad = _window_args(kernel_size, stride, padding)
        super().__init__(
            in_channels, n_concepts, hidden_channels, aggregation, alpha, eps, device, dtype,
            head_hidden,
        )  # fmt: skip
        self.kernel_size = kernel
        self.stride = stride_
        self.padding = pad
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height x width``."""
        return (
            pool_output_size(
                height, self.kernel_size[0], self.stride[0], self.padding[0], self.ceil_mode
            ),
            pool_output_size(
                width, self.kernel_size[1], self.stride[1], self.padding[1], self.ceil_mode
            ),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x`` (B, C, H, W); leaves this pass's maps in ``self.maps``."""
        self._check_input(x)
        self.output_size(x.shape[-2], x.shape[-1])  # clear error before any work
        window = (self.kernel_size, self.stride, self.padding, self.ceil_mode)
        fused = self._fused_forward(x, window)
        if fused is not None:
            return fused
        score = self._score(x)
        # checked by the constructor and _check_input: the unchecked functional core
        return _local_attention_pool2d(
            x,
            score,
            self.kernel_size,
            self.stride,
            self.padding,
            self._parameters["alpha"],
            self.eps,
            self.ceil_mode,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, n_concepts={self.n_concepts}, "
            f"aggregation={self.scorer.aggregation_name!r}, eps={self.eps}"
        )


class AdaptiveLocalAttentionPool2d(LapBase):
    """Adaptive LAP: the drop-in replacement for ``nn.AdaptiveAvgPool2d`` (paper 000, III.C).

    ``output_size`` follows ``nn.AdaptiveAvgPool2d`` (an int, or a pair whose entries may be
    ``None`` to keep that input size). The other arguments are those of
    :class:`LocalAttentionPool2d`.
    """

    def __init__(
        self,
        in_channels: int,
        output_size: int | Sequence[int | None] = 1,
        n_concepts: int = 1,
        hidden_channels: int = 8,
        aggregation: str | nn.Module = "max",
        alpha: float = 1.0,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        head_hidden: str = "shared",
    ) -> None:
        output = _adaptive_output_args(output_size)
        super().__init__(
            in_channels, n_concepts, hidden_channels, aggregation, alpha, eps, device, dtype,
            head_hidden,
        )  # fmt: skip
        self.output_size = output

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x`` (B, C, H, W) to ``output_size``; leaves the maps in ``self.maps``."""
        self._check_input(x)
        rows, cols = self.output_size
        if (rows or x.shape[-2]) == 1 and (cols or x.shape[-1]) == 1:
            fused = self._fused_forward(x, None)  # the global pool: Eq. 4 over the whole map
            if fused is not None:
                return fused
        score = self._score(x)
        return _adaptive_local_attention_pool2d(
            x, score, self.output_size, self._parameters["alpha"], self.eps
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, output_size={self.output_size}, n_concepts={self.n_concepts}, "
            f"aggregation={self.scorer.aggregation_name!r}, eps={self.eps}"
        )


def _fusable_heads(
    layer: LapBase,
) -> tuple[list[tuple[Tensor, Tensor]], tuple[Tensor, Tensor] | None] | None:
    """The scorer's 1x1 convolutions as ``(weight (out, in, 1, 1), bias)`` pairs, and the "conv"
    aggregation's pair (None for the other aggregations), when the fused layer can stand in for
    ``layer.scorer`` (the built-in module, unchanged, without hooks), else None. (A
    discriminative scorer does not matter: it runs as its own module.)

    Runs on every forward pass of a small layer, so it reads the module dicts directly.
    """
    scorer = layer._modules["scorer"]
    if type(scorer) is not ConceptScorer:
        return None
    state = scorer.__dict__
    if state.get("aggregate") is not None:
        return None  # set as a plain attribute: not the module the scorer built
    if "forward" in state or _hooked(state):
        return None
    name = state["aggregation_name"]
    if state["n_concepts"] > 1 and name not in ("max", "sum", "mean", "conv"):
        return None  # a user's module: PyTorch's path runs it
    aggregate = None
    if state["n_concepts"] > 1 and name == "conv":
        aggregate = _fusable_aggregate(scorer)
        if aggregate is None:
            return None  # the "conv" aggregation, changed or hooked
    heads = scorer._modules["heads"]
    if _hooked(heads.__dict__) or _global_hooks():
        return None
    modules = list(heads._modules.values())
    if len(modules) == 3:
        if type(modules[1]) is not nn.ReLU or _hooked(modules[1].__dict__):
            return None
        modules = [modules[0], modules[2]]
    elif len(modules) != 1:
        return None
    pairs = []
    for conv in modules:
        pair = _plain_pointwise(conv)
        if pair is None:
            return None
        pairs.append(pair)
    return pairs, aggregate


def _plain_pointwise(conv: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``(weight (out, in, 1, 1), bias)`` of an unhooked plain 1x1 ``nn.Conv2d`` with a bias
    (:func:`~torchlap.layers.scorer._is_plain_pointwise`), else None."""
    if not _is_plain_pointwise(conv):
        return None
    conv_state = conv.__dict__
    params = conv_state["_parameters"]
    weight, bias = params["weight"], params.get("bias")
    if weight is None or bias is None:
        return None
    return weight, bias


def _fusable_aggregate(scorer: ConceptScorer) -> tuple[Tensor, Tensor] | None:
    """The "conv" aggregation's 1x1 convolution as ``(weight (1, n, 1, 1), bias (1,))`` when it
    is the module the scorer built (convolution, sigmoid, no hooks), else None."""
    aggregate = scorer._modules.get("aggregate")
    if type(aggregate) is not nn.Sequential or _hooked(aggregate.__dict__):
        return None
    modules = list(aggregate._modules.values())
    if len(modules) != 2 or type(modules[1]) is not nn.Sigmoid or _hooked(modules[1].__dict__):
        return None
    pair = _plain_pointwise(modules[0])
    if pair is None or tuple(pair[0].shape) != (1, scorer.n_concepts, 1, 1):
        return None
    return pair


def lap_modules(model: nn.Module) -> dict[str, LapBase]:
    """All LAP layers of ``model`` (an ``nn.Module``) by qualified name, in registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, LapBase)}


def attention_maps(model: nn.Module, detach: bool = True) -> dict[str, LapMaps]:
    """The maps each LAP layer of ``model`` kept from the last forward pass that ran it.

    Keyed by module name, in the order the layers ran. A layer keeps its maps until it runs
    again or they are cleared, and a layer does not know when a pass of ``model`` starts (that
    would take a hook on ``model``, which torchlap does not own): a layer that the last pass
    skipped (a branch not taken) is returned with the maps of the earlier pass that ran it,
    before the layers of the last pass. To get exactly one pass's maps from a model whose
    forward may skip LAP layers, call :func:`clear_attention_maps` before that pass, as
    torchlap's explainers, export and training do; a layer that never ran, or ran only before
    the clearing, is left out. ``detach=False`` keeps the autograd graph (for the
    knowledge-injection losses). ``model`` must be an ``nn.Module`` with LAP layers, ``detach``
    True or False.
    """
    check_bool(detach, "detach")
    found = [(name, m) for name, m in lap_modules(model).items() if m.maps is not None]
    if not found and not lap_modules(model):
        raise ValueError("the model has no LAP layer; put some in with torchlap.lapify(model)")
    ordered = sorted(found, key=lambda item: item[1]._forward_index)
    return {name: (m.maps.detach() if detach else m.maps) for name, m in ordered}


def clear_attention_maps(model: nn.Module) -> None:
    """Drop the stored maps of every LAP layer of ``model`` (frees them and their autograd
    graph). Called before a forward pass, it makes :func:`attention_maps` return that pass's
    layers only, leaving out those the pass skips."""
    for module in lap_modules(model).values():
        module.clear_maps()
