"""Model surgery: put LAP layers into an existing CNN (paper 000, section III.C).

"Pooling and adaptive pooling layers can be replaced directly with LAPs. Strided convolutions
can also be replaced by a convolution with the stride of one, proceeding with a LAP with the same
kernel size and stride as the convolution's stride. [...] LAP can be plugged into an already
trained model and tuned while other model layers are frozen."

What ``lapify`` replaces (a *site*), and what the new module computes right after insertion
(every LAP starts with uniform scores: the scorer's last convolution is zero, every concept
probability is 0.5, and Eq. 1 with equal weights is the plain window average, padding excluded):

- ``AdaptiveAvgPool2d`` -> ``AdaptiveLocalAttentionPool2d`` (same name): exactly the average.
- ``AvgPool2d`` -> ``LocalAttentionPool2d`` with the same kernel, stride, padding and ceil mode
  (same name): exact when ``padding == 0`` or ``count_include_pad=False``; otherwise the border
  windows differ (LAP never counts padding; ``divisor_override`` is dropped too).
- ``MaxPool2d`` / ``AdaptiveMaxPool2d`` -> the same LAP / adaptive LAP: the average instead of
  the maximum.
- ``Conv2d`` with stride ``s > 1`` -> :class:`LapConv2d` (LAP ``<name>.lap``): the convolution
  at stride 1, then ``LAP(kernel=s, stride=s, ceil_mode=True)``; the window average of the
  stride-1 output instead of its top-left sample (the pixel the strided convolution kept).
- torchvision ResNet down-sampling block -> :class:`LapResidualBlock` (``<name>.lap``), and
  Inception ``Mixed_6a``/``Mixed_7a`` -> :class:`LapInceptionReduction` (``<name>.lap``): one
  LAP per block whose score map steers every down-sampling path of the block (why: see
  :mod:`torchlap.models.blocks`); as for the convolutions (and the max pool) inside.
- functional global average pool of torchvision DenseNet, MobileNetV2, MNASNet, ShuffleNetV2
  -> an adaptive LAP appended as ``global_pool`` to the Sequential it pools (``features``,
  ``layers``, ``conv5``; after a ``relu_final`` for DenseNet): exactly the average.
- timm ``FastAdaptiveAvgPool`` -> adaptive LAP (``<name>``, or ``<name>.0`` when it flattens):
  exactly the average.

So a pretrained model keeps its outputs when only its global (or any non-padded) average pool
is replaced. At max-pool and strided-convolution sites the function changes at insertion (LAP
has no uniform-score state equal to a max or a subsample): fine-tune the LAPs first (the paper's
first phase, :func:`freeze_all_but_lap`). BatchNorm layers after such a site were calibrated on
the old statistics; the averaged features have the same mean and a smaller variance.

``where``:

- ``"auto"``: every down-sampling step whose output stride is 8 or more (for the standard
  classifiers: the steps to 1/8, 1/16 and 1/32 of the input, i.e. ResNet blocks 2-4, Inception
  maxpool2/Mixed_6a/Mixed_7a, the last three pools of VGG, DenseNet's transitions, the strided
  convolutions of MobileNet/EfficientNet/RegNet/ConvNeXt) plus the global pool (the last
  adaptive pool after which no BatchNorm, LAP or larger feature map runs). It reproduces the
  ``resnet18`` and ``inception_v3`` presets. A step is all down-sampling modules that read the
  same resolution; known blocks (torchvision ResNet blocks, Inception reductions) count as one
  module, elsewhere each module of the step gets its own LAP (e.g. RegNet's shortcut and main
  path, timm ResNet-D's shortcut pool and strided conv). Each run of a module is a step (a
  pool called twice in ``forward`` shrinks the map twice); a module that runs more than once
  and once at output stride 8 or more is refused (give each use a module of its own). Needs
  one dry forward pass.
- ``"global"``: the global pool only (the function-preserving insertion).
- a preset name (:data:`torchlap.models.presets.PRESETS`).
- a list of module names (sites listed above; a block name for the block replacements).
- a predicate ``(name, module) -> bool`` called on every module ``lapify`` can replace.

Input channels of each new LAP come from the module tree where unambiguous (a convolution's
``out_channels``, a block's input convolution, the BatchNorm or convolution before a pool in a
``Sequential``); otherwise from one dry forward pass on a probe input of ``input_size`` (default
224), with hooks removed and train/eval flags restored whatever happens.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from torchlap.layers import LapBase, LocalAttentionPool2d, lap_modules
from torchlap.models.blocks import (
    LapConv2d,
    LapInceptionReduction,
    LapResidualBlock,
    make_adaptive_lap,
    make_lap,
)
from torchlap.models.lapify_refusals import check_changeable, foreign_forward, lost_on_swap
from torchlap.models.lapify_sites import (
    Where,
    _discover,
    _has_module,
    _Probe,
    _probe_shape,
    _reference_tensor,
    _run_probe,
    _select,
    _set_child,
    _Site,
    check_single_use,
)
from torchlap.models.records import add_record_entry

__all__ = ["freeze_all_but_lap", "lap_parameters", "lapify"]

logger = logging.getLogger(__name__)

# modules whose output has the channels of their input (walked over to find a pool's channels)
_CHANNEL_KEEPING = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.MaxPool2d, nn.AvgPool2d,
)  # fmt: skip


def _static_channels(model: nn.Module, site: _Site) -> int | None:
    module = site.module
    if site.kind == "strided_conv":
        return module.out_channels
    if site.kind == "resnet_block":
        return module.conv1.in_channels
    if site.kind == "inception":
        first = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
        return first.in_channels
    if site.kind == "appended":
        norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        return norms[-1].num_features if norms else None
    # a pool inside a Sequential: the nearest earlier sibling that fixes the channel count
    parent_name, _, child_name = site.name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if not isinstance(parent, nn.Sequential):
        return None
    children = list(parent.named_children())
    position = next(i for i, (n, _) in enumerate(children) if n == child_name)
    for _, sibling in reversed(children[:position]):
        if isinstance(sibling, nn.Conv2d):
            return sibling.out_channels
        if isinstance(sibling, nn.BatchNorm2d):
            return sibling.num_features
        if not isinstance(sibling, _CHANNEL_KEEPING):
            return None
    return None


def _channels(
    model: nn.Module, chosen: list[_Site], probe: _Probe | None, input_size: Any
) -> tuple[dict[str, int], _Probe | None]:
    """Each chosen site's input channels (from the model's structure, else from the dry forward
    pass, run here if needed), and the dry pass if one ran."""
    channels: dict[str, int] = {}
    unknown = []
    for site in chosen:
        value = _static_channels(model, site)
        if value is None:
            unknown.append(site)
        else:
            channels[site.name] = value
    if unknown:
        probe = probe or _run_probe(model, input_size)
        for site in unknown:
            call = next((c for c in probe.calls if c.module is site.module), None)
            if call is None or call.in_shape is None or len(call.in_shape) != 4:
                raise ValueError(
                    f"cannot tell the input channels of {site.name!r}: it did not run on a "
                    "(B, C, H, W) tensor in the dry forward pass"
                )
            channels[site.name] = call.in_shape[1]
    return channels, probe


def _placement(model: nn.Module, site: _Site) -> tuple[torch.device | None, torch.dtype | None]:
    owner = site.module
    reference = _reference_tensor(owner)
    if reference is None:
        parent_name = site.name.rpartition(".")[0]
        while reference is None and parent_name:
            reference = _reference_tensor(model.get_submodule(parent_name))
            parent_name = parent_name.rpartition(".")[0]
    if reference is None:
        reference = _reference_tensor(model)
    if reference is None:
        return None, None
    return reference.device, reference.dtype


def _build(model: nn.Module, site: _Site, channels: int, options: dict[str, Any]) -> nn.Module:
    """The fresh replacement module of ``site`` (the model is not touched)."""
    device, dtype = _placement(model, site)
    module = site.module
    lost = None if site.kind == "appended" else lost_on_swap(module)
    if lost is not None:
        raise ValueError(f"lapify cannot replace {site.name!r}: {lost}")
    foreign = None if site.is_block or site.kind == "appended" else foreign_forward(module)
    if foreign is not None:
        raise ValueError(
            f"lapify cannot replace {site.name!r}: {foreign}; choose other sites "
            "(where='auto' leaves such modules as they are)"
        )
    if site.kind in ("pool", "adaptive") and getattr(module, "return_indices", False):
        raise ValueError(
            f"{site.name}: a max pool returning indices ({module}) cannot be replaced: LAP "
            "returns the pooled map only"
        )
    if site.kind == "pool":
        dilation = getattr(module, "dilation", 1)
        if dilation not in (1, (1, 1)):
            raise ValueError(f"{site.name}: a dilated max pool ({module}) has no LAP equivalent")
        if isinstance(module, nn.AvgPool2d) and module.divisor_override is not None:
            logger.info("%s: divisor_override is dropped, LAP averages its windows", site.name)
        if isinstance(module, nn.AvgPool2d) and module.count_include_pad and module.padding:
            logger.info(
                "%s: AvgPool2d counts padding, LAP does not; border windows change", site.name
            )
        return make_lap(
            channels, options, device, dtype,
            kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
            ceil_mode=module.ceil_mode,
        )  # fmt: skip
    if site.kind == "adaptive":
        return make_adaptive_lap(channels, module.output_size, options, device, dtype)
    if site.kind == "fast_adaptive":
        lap = make_adaptive_lap(channels, 1, options, device, dtype)
        return nn.Sequential(lap, nn.Flatten(1)) if module.flatten else lap
    if site.kind == "strided_conv":
        return LapConv2d.from_conv(module, options)
    if site.kind == "resnet_block":
        return LapResidualBlock(module, options, device, dtype).train(module.training)
    if site.kind == "inception":
        return LapInceptionReduction(module, options, device, dtype).train(module.training)
    if site.kind == "appended":
        return make_adaptive_lap(channels, 1, options, device, dtype)
    raise AssertionError(f"unhandled site kind {site.kind}")  # pragma: no cover


def _swap(model: nn.Module, site: _Site, replacement: nn.Module) -> None:
    if site.kind == "appended":
        # e.g. DenseNet.forward does relu -> adaptive_avg_pool2d -> flatten: appending relu +
        # LAP to `features` pools the relu'd map; the later relu and 1x1 average are identities.
        replacement.train(site.module.training)
        if site.relu_first:
            site.module.add_module("relu_final", nn.ReLU(inplace=False))
        site.module.add_module("global_pool", replacement)
        return
    replacement.train(site.module.training)
    _set_child(model, site.name, replacement)


def _options(
    n_concepts: int,
    hidden_channels: int,
    aggregation: str | nn.Module,
    alpha: float,
    eps: float,
    head_hidden: str = "shared",
) -> dict[str, Any]:
    options = {
        "n_concepts": n_concepts,
        "hidden_channels": hidden_channels,
        "aggregation": aggregation,
        "alpha": alpha,
        "eps": eps,
        "head_hidden": head_hidden,
    }
    # the layer's own checks, before any work. Built on the CPU, so its initialisation draws
    # from torch's global generator; kept so, because a draw-free check (the meta device)
    # would change every seeded run's initial weights (the backbone's and each LAP's first
    # scorer convolution) and with them the README's demo and dataset tables
    LocalAttentionPool2d(1, 1, **options)
    return options


# ----------------------------------------------------------------------------- public API


def lapify(
    model: nn.Module,
    where: Where = "auto",
    n_concepts: int = 1,
    hidden_channels: int = 8,
    aggregation: str | nn.Module = "max",
    alpha: float = 1.0,
    eps: float = 1e-6,
    input_size: int | Sequence[int] | None = None,
    inplace: bool = True,
    head_hidden: str = "shared",
) -> tuple[nn.Module, list[str]]:
    """Put LAP layers into ``model`` (paper 000, section III.C); returns ``(model, names)``.

    ``names`` are the replaced modules (model order); the LAP layers are ``<name>`` for pools,
    ``<name>.lap`` for strided convolutions and blocks (see the module docstring). Every LAP is a
    fresh module on the device and dtype of the module it replaces, starting with uniform scores.
    The LAP options (``n_concepts``, ``hidden_channels``, ``aggregation``, ``alpha``, ``eps``,
    ``head_hidden``) are those of :class:`torchlap.LocalAttentionPool2d`. ``input_size`` is the
    probe input (int, (H, W) or (C, H, W)) when a dry forward pass is needed. ``inplace=False``
    works on a deep copy.

    All replacements are built before any is put in: on any error the model is unchanged. The
    settings are recorded, JSON-serialisable, in ``model.torchlap_config["lapify"]`` (a list,
    one entry per call) so that :func:`torchlap.models.apply_lapify_config` can rebuild the
    same layout on a fresh model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_changeable(model, "lapify")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {inplace!r}")
    options = _options(n_concepts, hidden_channels, aggregation, alpha, eps, head_hidden)
    if input_size is not None:
        _probe_shape(model, input_size)
    if not inplace:
        model = _deepcopy_without_maps(model)
    sites = _discover(model)
    chosen, probe, label = _select(model, sites, where, input_size)
    channels, probe = _channels(model, chosen, probe, input_size)
    check_single_use(model, chosen, probe)
    replacements = [_build(model, site, channels[site.name], options) for site in chosen]
    for site, replacement in zip(chosen, replacements, strict=True):
        _swap(model, site, replacement)
    names = [site.name for site in chosen]
    _record(model, label, chosen, options, input_size)
    logger.info("lapify: replaced %s", names)
    return model, names


def _record(
    model: nn.Module,
    label: str,
    chosen: list[_Site],
    options: dict[str, Any],
    input_size: Any,
) -> None:
    aggregation = options["aggregation"]
    entry = {
        "where": label,
        "sites": [s.name for s in chosen],
        "lap_names": [s.lap_name for s in chosen],
        "n_concepts": options["n_concepts"],
        "hidden_channels": options["hidden_channels"],
        "aggregation": aggregation if isinstance(aggregation, str) else "module",
        "alpha": float(options["alpha"]),
        "eps": float(options["eps"]),
        "head_hidden": options["head_hidden"],
        "input_size": list(input_size) if isinstance(input_size, Sequence) else input_size,
    }
    add_record_entry(model, "lapify", entry, append=True)


def _deepcopy_without_maps(model: nn.Module) -> nn.Module:
    """Deep copy of ``model``; stored LAP maps (which may hold a graph) are not copied."""
    saved = {m: m.maps for m in model.modules() if isinstance(m, LapBase)}
    try:
        for module in saved:
            module.maps = None
        return copy.deepcopy(model)
    finally:
        for module, maps in saved.items():
            module.maps = maps


_NO_LAP = "the model has no LAP layer; put some in with torchlap.lapify(model)"


def lap_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of every LAP layer of ``model`` (scorers, ``alpha``, aggregation modules).

    ``model`` must be an ``nn.Module`` with at least one LAP layer (``ValueError`` otherwise:
    an optimizer given no parameters would fail later with an unrelated message).
    """
    layers = lap_modules(model)
    if not layers:
        raise ValueError(_NO_LAP)
    found: dict[int, nn.Parameter] = {}
    for module in layers.values():
        for parameter in module.parameters():
            found.setdefault(id(parameter), parameter)
    return list(found.values())


def freeze_all_but_lap(model: nn.Module, also_trainable: Sequence[str] = ()) -> list[str]:
    """Make only the LAP parameters trainable: the paper's first training phase (IV.B).

    "We first trained only the LAP module while other parameters were frozen". Parameters of
    the modules named in ``also_trainable`` (and their children) stay trainable too, e.g.
    ``["layer4", "fc"]`` for the paper's second phase. Sets ``requires_grad``; returns the names
    of the trainable parameters. BatchNorm running statistics still update in train mode: put
    the frozen part in eval mode if they must not.

    ``model`` must be an ``nn.Module`` with LAP layers; ``also_trainable`` a module name or a
    sequence of module names of ``model`` (``""`` is the whole model). Checked before any
    ``requires_grad`` changes.
    """
    if not lap_modules(model):
        raise ValueError(_NO_LAP)
    if isinstance(also_trainable, str):
        also_trainable = [also_trainable]
    if not isinstance(also_trainable, Sequence) or not all(
        isinstance(prefix, str) for prefix in also_trainable
    ):
        raise TypeError(
            "also_trainable must be a module name or a list of module names, "
            f"got {also_trainable!r}"
        )
    for prefix in also_trainable:
        if not _has_module(model, prefix):
            raise ValueError(f"also_trainable: the model has no module {prefix!r}")
    lap_ids = {id(p) for p in lap_parameters(model)}
    trainable = []
    for name, parameter in model.named_parameters():
        keep = id(parameter) in lap_ids or any(
            prefix == "" or name.startswith(prefix + ".") for prefix in also_trainable
        )
        parameter.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable
