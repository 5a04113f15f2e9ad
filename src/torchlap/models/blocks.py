"""The modules ``lapify`` puts into a network (paper 000, section III.C).

- :class:`LapConv2d`: a strided convolution made LAP, "a convolution with the stride of one,
  proceeding with a LAP with the same kernel size and stride as the convolution's stride".
- :class:`LapResidualBlock`: a torchvision ResNet down-sampling block with ONE LAP. The LAP
  scores the block input; its pooled output feeds the shortcut, and its score map pools the
  main path's convolution (run at stride 1) with the same windows.
- :class:`LapInceptionReduction`: a torchvision Inception v3 reduction block (``Mixed_6a``,
  ``Mixed_7a``) with ONE LAP: the LAP replaces the block's ``F.max_pool2d`` branch and its score
  map pools the strided convolutions of the other branches (run at stride 1).

Why one shared score map per block: the paper counts one LAP per block ("three LAP modules in
blocks 2, 3 and 4 of ResNet 18 and maxpool2, Mixed6a and Mixed7a of Inception V3") and reports one
map per LAP. A block down-samples on several parallel paths; if each path had its own LAP the
block would have several, possibly contradicting, maps. With one score map every path of the
block keeps the same pixels, so the block's map says where the whole block looked.

Why not one LAP in front of the block (``LAP(k=2, s=2)`` then the block at stride 1): a 3x3
convolution on the pooled grid sees 6x6 input pixels instead of 3x3, far from what pretrained
filters were trained for. Here every convolution keeps its input grid and its weights; only the
subsampling "keep the top-left pixel of each 2x2 window" (what a stride-2 convolution does to
its stride-1 output) becomes "pool each 2x2 window by the LAP weights".
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_bool, check_choice, check_keyword_dict, check_positive_int
from torchlap.layers import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.layers.functional import _local_attention_pool2d, _pair

__all__ = [
    "LapConv2d",
    "LapInceptionReduction",
    "LapResidualBlock",
    "SharedScoreBlock",
    "make_adaptive_lap",
    "make_lap",
]


def make_lap(
    in_channels: int,
    options: dict[str, Any],
    device: torch.device | None,
    dtype: torch.dtype | None,
    **geometry: Any,
) -> LocalAttentionPool2d:
    """A fresh :class:`LocalAttentionPool2d` with the LAP ``options`` and the given geometry."""
    return LocalAttentionPool2d(
        in_channels, **geometry, **_fresh_options(options), device=device, dtype=dtype
    )


def make_adaptive_lap(
    in_channels: int,
    output_size: Any,
    options: dict[str, Any],
    device: torch.device | None,
    dtype: torch.dtype | None,
) -> AdaptiveLocalAttentionPool2d:
    """A fresh :class:`AdaptiveLocalAttentionPool2d` with the LAP ``options``."""
    return AdaptiveLocalAttentionPool2d(
        in_channels, output_size, **_fresh_options(options), device=device, dtype=dtype
    )


def _lap_options(options: object) -> dict[str, Any]:
    """A block's ``lap_options`` checked (:func:`check_keyword_dict`) before anything is built."""
    return check_keyword_dict(
        options, "lap_options", "of LocalAttentionPool2d, e.g. {'hidden_channels': 8}"
    )


def _fresh_options(options: dict[str, Any]) -> dict[str, Any]:
    # an aggregation given as a module must not be shared between LAP layers
    fresh = dict(options)
    if isinstance(fresh.get("aggregation"), nn.Module):
        fresh["aggregation"] = copy.deepcopy(fresh["aggregation"])
    return fresh


def conv_center_offset(conv: nn.Conv2d) -> tuple[int, int]:
    """Offset of a stride-1 convolution's output grid in its input grid (window centres).

    Output pixel ``u`` of a stride-1 convolution is centred on input pixel ``u + offset``, with
    ``offset = dilation * (kernel - 1) // 2 - padding``. Used to read a score map of the input
    at the convolution's output pixels.
    """
    if conv.padding == "same":
        return (0, 0)  # "same" keeps the grid (torch pads the extra pixel at the end)
    padding = (0, 0) if conv.padding == "valid" else _pair(tuple(conv.padding), "padding")
    offset = tuple(conv.dilation[i] * (conv.kernel_size[i] - 1) // 2 - padding[i] for i in range(2))
    if min(offset) < 0:
        raise ValueError(
            f"convolution {conv} pads more than half its kernel: its output grid leaves its "
            "input grid, so a score map of the input cannot be read at its pixels"
        )
    return offset  # type: ignore[return-value]


def pool_with_shared_score(
    features: Tensor,
    score: Tensor,
    stride: tuple[int, int],
    offset: tuple[int, int],
    lap: LocalAttentionPool2d,
) -> Tensor:
    """Pool ``features`` with windows ``kernel = stride`` weighted by ``lap``'s score map.

    Eq. 1 and 4 of paper 000 with the score ``S`` of the block's LAP, read at the features'
    pixels (``offset`` into the score map), and ``lap``'s ``alpha`` and ``eps``. Ceil mode, so
    the output has exactly the size of the strided convolution it replaces.
    """
    height, width = features.shape[-2:]
    crop = score[..., offset[0] : offset[0] + height, offset[1] : offset[1] + width]
    if crop.shape[-2:] != features.shape[-2:]:
        raise RuntimeError(
            f"the LAP score map {tuple(score.shape[-2:])} does not cover the convolution output "
            f"{(height, width)} at offset {offset}: the block's input and branch sizes changed"
        )
    # the unchecked path: the window pairs come from the block, alpha and eps from the checked
    # LAP module (this runs on every forward of a lapified block)
    return _local_attention_pool2d(
        features, crop, clipped_kernel(stride, (height, width)), stride, (0, 0), lap.alpha,
        lap.eps, True,
    )  # fmt: skip


def clipped_kernel(kernel: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """``kernel`` cut to the map ``size`` where the map is smaller than one window.

    A stride-s convolution still gives one output row from a stride-1 output of fewer than s
    rows; ceil-mode pooling (``nn.MaxPool2d``) then pools the rows that exist. LAP gives padded
    pixels no weight, so pooling a window cut to the map computes exactly that window.
    """
    return (min(kernel[0], size[0]), min(kernel[1], size[1]))


def _check_conv_args(
    in_channels: object,
    out_channels: object,
    kernel_size: object,
    padding: object,
    dilation: object,
    groups: object,
    bias: object,
    padding_mode: object,
) -> None:
    """The arguments :class:`LapConv2d` passes to ``nn.Conv2d``, checked with the LAP layers'
    rules (ints, never bools; pairs of them) where ``nn.Conv2d`` takes anything and fails deep
    inside (``torch.empty`` of a negative size, a ``%`` of None)."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        check_positive_int(value, name)
    check_positive_int(groups, "groups")
    for name, value in (("kernel_size", kernel_size), ("dilation", dilation)):
        if min(_pair(value, name)) < 1:  # type: ignore[arg-type]
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    if padding not in ("valid", "same") and min(_pair(padding, "padding")) < 0:  # type: ignore[arg-type]
        raise ValueError(f"padding must be >= 0, 'valid' or 'same', got {padding!r}")
    check_bool(bias, "bias")
    check_choice(padding_mode, "padding_mode", ("zeros", "reflect", "replicate", "circular"))


class LapConv2d(nn.Conv2d):
    """A strided convolution made LAP (paper 000, III.C): conv at stride 1, then LAP.

    The convolution keeps its weights (and parameter names, so a checkpoint of the original
    model loads into it); ``self.lap`` is ``LocalAttentionPool2d(out_channels, kernel_size=s,
    stride=s, ceil_mode=True)`` for the old stride ``s``. Ceil mode makes the output size equal
    to the strided convolution's for every input size: ``ceil((n + 1) / s) = floor(n / s) + 1``
    with ``n = H + 2 p - d (k - 1) - 1``.

    The window ``[s o, s o + s)`` of the stride-1 output starts at the pixel the strided
    convolution kept, so with uniform scores (LAP's initial state) the layer computes the
    window average around the old sample instead of the sample itself: a slight blur, not the
    same function.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        lap_options: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        lap_options = _lap_options(lap_options)
        _check_conv_args(
            in_channels, out_channels, kernel_size, padding, dilation, groups, bias, padding_mode
        )
        super().__init__(
            in_channels, out_channels, kernel_size, 1, padding, dilation, groups, bias,
            padding_mode, device=device, dtype=dtype,
        )  # fmt: skip
        pool_stride = _pair(stride, "stride")
        if min(pool_stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride!r}")
        self.lap = make_lap(
            out_channels, lap_options, device, dtype,
            kernel_size=pool_stride, stride=pool_stride, ceil_mode=True,
        )  # fmt: skip

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, lap_options: dict[str, Any] | None = None) -> LapConv2d:
        """The LAP version of ``conv`` (weights copied; ``conv`` itself is left untouched)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
        lap_options = _lap_options(lap_options)
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
            lap_options=lap_options, device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            new.weight.requires_grad_(conv.weight.requires_grad)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
                new.bias.requires_grad_(conv.bias.requires_grad)
        new.train(conv.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        """Stride-1 convolution of ``x``, pooled by ``self.lap``."""
        out = super().forward(x)
        size = (out.shape[-2], out.shape[-1])
        kernel = self.lap.kernel_size
        if size[0] >= kernel[0] and size[1] >= kernel[1]:
            return self.lap(out)
        # a map smaller than one window (tiny inputs): pool the part of the window that exists,
        # as the strided convolution and PyTorch's ceil-mode pooling do
        score = self.lap._score(out)
        return _local_attention_pool2d(
            out, score, clipped_kernel(kernel, size), self.lap.stride, (0, 0), self.lap.alpha,
            self.lap.eps, True,
        )  # fmt: skip


def _restride(conv: nn.Conv2d) -> tuple[int, int]:
    """Set ``conv`` (a private copy) to stride 1 and return its old stride."""
    old = _pair(tuple(conv.stride), "stride")
    conv.stride = (1, 1)
    return old


class SharedScoreBlock(nn.Module):
    """Base of the blocks whose LAP's score map also pools strided convolutions.

    Subclasses say which (:meth:`shared_pools`) and call :meth:`pool_shared` in their forward;
    an LRP canonizer (:mod:`torchlap.explainers.relevance_cam`) replaces :meth:`pool_shared`
    on an instance to give these poolings a relevance rule.
    """

    lap: LocalAttentionPool2d

    def shared_pools(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        """``{name: (stride, offset)}`` of the convolutions pooled by the LAP's score."""
        raise NotImplementedError

    def pool_shared(self, name: str, features: Tensor, score: Tensor) -> Tensor:
        """Pool the output of convolution ``name`` with the LAP's score map ``score``."""
        stride, offset = self.shared_pools()[name]
        return pool_with_shared_score(features, score, stride, offset, self.lap)


class LapResidualBlock(SharedScoreBlock):
    """A torchvision ResNet ``BasicBlock``/``Bottleneck`` that down-samples with one LAP.

    ``self.lap = LocalAttentionPool2d(in_channels, kernel_size=s, stride=s, ceil_mode=True)``
    scores the block input ``x`` (``s`` = the block stride). Then:

    - shortcut: ``downsample(lap(x))`` with the 1x1 convolution at stride 1. A 1x1 convolution
      and a pooling with channel-independent weights summing to one commute, so this is exactly
      "1x1 convolution at stride 1, then the same LAP" (the paper's rule), computed 4x cheaper;
    - main path: the strided 3x3 convolution (``conv1`` of BasicBlock, ``conv2`` of torchvision's
      Bottleneck v1.5) runs at stride 1 and is pooled with the same score map and windows,
      before its BatchNorm.

    The windows ``[2o, 2o + 1]`` start at the pixel the stride-2 convolutions kept. Children keep
    their names (``conv1``, ``bn1``, ..., ``downsample``): a checkpoint of the original block
    loads unchanged. The LAP is ``<block>.lap``.
    """

    def __init__(
        self,
        block: nn.Module,
        lap_options: dict[str, Any] | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        lap_options = _lap_options(lap_options)
        super().__init__()
        block = copy.deepcopy(block)
        convs = [name for name in ("conv1", "conv2", "conv3") if hasattr(block, name)]
        if not convs or not all(isinstance(getattr(block, n), nn.Conv2d) for n in convs):
            raise ValueError(f"{type(block).__name__} is not a torchvision ResNet block")
        strided = [n for n in convs if tuple(getattr(block, n).stride) != (1, 1)]
        if len(strided) != 1:
            raise ValueError(
                f"a ResNet block to make LAP must down-sample with exactly one strided "
                f"convolution, found {strided or 'none'}"
            )
        downsample = getattr(block, "downsample", None)
        stride = tuple(getattr(block, strided[0]).stride)
        if (
            not isinstance(downsample, nn.Sequential)
            or len(downsample) == 0
            or not isinstance(downsample[0], nn.Conv2d)
            or tuple(downsample[0].kernel_size) != (1, 1)
            or tuple(downsample[0].stride) != stride
            or downsample[0].padding not in ((0, 0), "valid")
        ):
            raise ValueError(
                "the block's shortcut must be Sequential(Conv2d(kernel_size=1, stride=s, "
                f"padding=0), ...) with the block stride s={stride}, got {downsample}"
            )
        for name, child in block.named_children():
            self.add_module(name, child)
        self.stride = stride
        self._convs = convs
        self._strided = strided[0]
        self._offset = conv_center_offset(getattr(self, self._strided))
        _restride(getattr(self, self._strided))
        _restride(self.downsample[0])
        in_channels = getattr(self, convs[0]).in_channels
        self.lap = make_lap(
            in_channels, lap_options, device, dtype,
            kernel_size=stride, stride=stride, ceil_mode=True,
        )  # fmt: skip

    def shared_pools(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        """``{conv name: (stride, offset)}`` of the convolution pooled by the LAP's score."""
        return {self._strided: (self.stride, self._offset)}

    def residual_sum(self, shortcut: Tensor, main: Tensor) -> Tensor:
        """``shortcut + main`` (an LRP canonizer replaces this with a relevance-aware sum)."""
        return shortcut + main

    def forward(self, x: Tensor) -> Tensor:
        """The block's forward with its down-sampling done by ``self.lap``'s score map."""
        pooled = self.lap(x)
        score = self.lap.maps.score
        out = x
        for index, name in enumerate(self._convs):
            out = getattr(self, name)(out)
            if name == self._strided:
                out = self.pool_shared(name, out, score)
            out = getattr(self, f"bn{index + 1}")(out)
            if index < len(self._convs) - 1:
                out = self.relu(out)
        return self.relu(self.residual_sum(self.downsample(pooled), out))


# Branch layouts of torchvision's reduction blocks (inception.py): the strided branches in
# concatenation order; the max-pool branch (F.max_pool2d(x, 3, 2)) comes last.
_INCEPTION_BRANCHES = {
    "InceptionB": (("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")),
    "InceptionD": (
        ("branch3x3_1", "branch3x3_2"),
        ("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
    ),
}


class LapInceptionReduction(SharedScoreBlock):
    """An Inception v3 reduction block (``Mixed_6a``, ``Mixed_7a``) with one LAP.

    For torchvision's ``InceptionB`` and ``InceptionD``.

    ``self.lap = LocalAttentionPool2d(in_channels, kernel_size=3, stride=2)`` replaces the
    block's ``F.max_pool2d(x, 3, 2)`` branch. Each strided convolution of the other branches
    runs at stride 1 and is pooled (before its BatchNorm) with windows ``kernel = stride = 2``
    weighted by the same score map, read at the centres of its windows (a 3x3 unpadded
    convolution's output pixel ``u`` is centred on input pixel ``u + 1``). Children keep their
    names; the LAP is ``<block>.lap``.
    """

    def __init__(
        self,
        block: nn.Module,
        lap_options: dict[str, Any] | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        lap_options = _lap_options(lap_options)
        super().__init__()
        layout = _INCEPTION_BRANCHES.get(type(block).__name__)
        if layout is None:
            raise ValueError(
                f"{type(block).__name__} is not a torchvision Inception reduction block "
                f"(accepted: {sorted(_INCEPTION_BRANCHES)})"
            )
        block = copy.deepcopy(block)
        for name, child in block.named_children():
            self.add_module(name, child)
        self._branches = layout
        self._strides: dict[str, tuple[int, int]] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        for branch in layout:
            for name in branch:
                unit = getattr(self, name, None)
                conv = getattr(unit, "conv", None)
                if not isinstance(conv, nn.Conv2d) or not hasattr(unit, "bn"):
                    raise ValueError(
                        f"branch unit {name!r} must be a BasicConv2d with .conv and .bn, got "
                        f"{type(unit).__name__}"
                    )
                if tuple(conv.stride) != (1, 1):
                    self._offsets[name] = conv_center_offset(conv)
                    self._strides[name] = _restride(conv)
        in_channels = getattr(self, layout[0][0]).conv.in_channels
        self.lap = make_lap(in_channels, lap_options, device, dtype, kernel_size=3, stride=2)

    def shared_pools(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        """``{unit name: (stride, offset)}`` of the convolutions pooled by the LAP's score."""
        return {name: (self._strides[name], self._offsets[name]) for name in self._strides}

    def forward(self, x: Tensor) -> Tensor:
        """The block's forward; ``self.lap`` pools the max-pool branch and steers the others."""
        pooled = self.lap(x)
        score = self.lap.maps.score
        outputs = []
        for branch in self._branches:
            out = x
            for name in branch:
                unit = getattr(self, name)
                if name not in self._strides:
                    out = unit(out)
                    continue
                out = unit.conv(out)
                out = self.pool_shared(name, out, score)
                out = F.relu(unit.bn(out), inplace=True)
            outputs.append(out)
        outputs.append(pooled)
        return torch.cat(outputs, 1)
