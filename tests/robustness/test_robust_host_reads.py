"""Host reads on the explainers' and the training's hot paths, counted per call.

On a GPU every read of a tensor's value by the host (``item``, ``bool``, ``int``, ``tolist``,
``.cpu()``) waits for the device to finish, and so do the operations whose output size depends
on the values (``nonzero``, ``unique``, boolean-mask indexing, ``bincount``, which reads the
maximum to size its output). The budgets below are the reads each call needs: the checks that
decide whether to raise (one read each, batched where they can be), and the output sizes that
depend on the data. A new read must be argued for here.

Before: a metric's result read the count of its valid samples apart from their scores (whose
boolean indexing gives it as a length); Score-CAM and SISE read the count of distinct masks
from ``inverse.max()`` after ``torch.unique`` had already given it as a length, and SISE sized
its mask multiplicities with ``bincount`` although their length is known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from torchlap import explainers, layers, losses, metrics
from torchlap.explainers.perturbation import unique_masks

_READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
}
_SIZED_BY_VALUES = {
    torch.nonzero,
    torch.Tensor.nonzero,
    torch.argwhere,
    torch.unique,
    torch.Tensor.unique,
    torch.unique_consecutive,
    torch.bincount,
    torch.Tensor.bincount,
    torch.masked_select,
    torch.Tensor.masked_select,
}


def _boolean_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class HostReads(TorchFunctionMode):
    """Counts the calls that wait for the device (by the name of the operation)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        waits = func in _READS or func in _SIZED_BY_VALUES
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            waits = _boolean_index(args)
        if func is torch.repeat_interleave or func is torch.Tensor.repeat_interleave:
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            waits = isinstance(repeats, torch.Tensor)
        if waits:
            self.counts[getattr(func, "__name__", str(func))] += 1
        return func(*args, **kwargs)


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _lap() -> layers.LocalAttentionPool2d:
    torch.manual_seed(0)
    return layers.LocalAttentionPool2d(3, 2, n_concepts=2)


def _per_op(module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHLAP_FUSED_LAYER", "0")  # the layer's documented switch
        return module(images)


_TARGET = torch.tensor([0, 2])
_MAPS = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
_PROBS = torch.rand(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)).clamp(0.01, 0.99)
_PRESENT = torch.tensor([[True, False, True, False], [False, True, True, True]])

#: the checks every explainer call makes before its own work: the images are finite (one
#: read), the target's classes are >= 0 (one), and the target against a first forward's
#: logits (one) — then the method's own reads
_ENTRY = 3
BUDGETS: dict[str, tuple[Callable[[], object], int]] = {
    # + the predicted class's check (resolve_target) + nonzero (the non-constant maps) +
    # unique (the distinct masks) + the scores' finiteness
    "scorecam": (lambda: explainers.explain(_cnn(), _images(), "scorecam", _TARGET), _ENTRY + 4),
    # + resolve_target, per block layer (two here) nonzero and unique, + the scores'
    # finiteness and the fusion's finiteness check
    "sise": (lambda: explainers.explain(_cnn(), _images(), "sise", _TARGET), _ENTRY + 1 + 4 + 2),
    # unique alone: its length is the count of distinct masks
    "unique_masks": (
        lambda: unique_masks(torch.rand(6, 4, 4).repeat(2, 1, 1), torch.arange(12) % 3),
        1,
    ),
    # a LAP layer's forward and its maps: one read, the fused CPU kernel's alpha as a C float
    # (a CPU tensor: nothing to wait for); the per-op path, which a GPU runs, reads nothing
    "lap layer": (lambda: _lap()(_images()), 1),
    "lap layer, per-op path": (lambda: _per_op(_lap(), _images()), 0),
    "lap_all": (lambda: explainers.lap_all([torch.rand(2, 8, 8), torch.rand(2, 4, 4)]), 1),
    # a localization metric: the maps are finite (one read), the widest range of tied pixels a
    # selection may take inside the region (one read: it sizes the expected IoU's table), the
    # valid samples' scores (boolean indexing: their count is the result's length) and their
    # mean (one read)
    "iou_topk": (lambda: metrics.iou_topk(_MAPS, _MAPS > 0.7), 4),
    # the value checks of every map in one read
    "concept_discrimination_loss": (
        lambda: losses.concept_discrimination_loss(_PROBS, _PRESENT),
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(BUDGETS))
def test_host_reads_per_call(case: str) -> None:
    call, budget = BUDGETS[case]
    with HostReads() as reads:
        call()
    assert sum(reads.counts.values()) == budget, dict(reads.counts)


def test_the_counter_sees_each_kind_of_read() -> None:
    x = torch.tensor([1.0, 0.0, 2.0])
    with HostReads() as reads:
        bool(x.any())
        x.nonzero()
        x[x > 0]
        torch.bincount(torch.tensor([0, 2]))
        torch.repeat_interleave(x, torch.tensor([1, 2, 0]))
        x[1:]  # a slice: no read
        x + 1  # no read
    assert reads.counts == Counter(
        {"__bool__": 1, "nonzero": 1, "__getitem__": 1, "bincount": 1, "repeat_interleave": 1}
    )
