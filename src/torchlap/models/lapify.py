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
  path, timm ResNet-D's shortcut pool and strided conv). Needs one dry forward pass.
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
import difflib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from torchlap.models.presets import PRESETS

__all__ = ["freeze_all_but_lap", "lap_parameters", "lapify"]

logger = logging.getLogger(__name__)

DEFAULT_PROBE_SIZE = 224
# Steps whose output stride is at least this get a LAP under where="auto" (ResNet blocks 2-4).
AUTO_MIN_OUTPUT_STRIDE = 8

Where = str | Sequence[str] | Callable[[str, nn.Module], bool]

# modules whose output has the channels of their input (walked over to find a pool's channels)
_CHANNEL_KEEPING = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.MaxPool2d, nn.AvgPool2d,
)  # fmt: skip
_LAP_WRAPPERS = (LapBase, LapConv2d, LapResidualBlock, LapInceptionReduction)


@dataclass
class _Site:
    """One place lapify can change: a module to replace, or a functional global pool."""

    name: str
    # pool | adaptive | fast_adaptive | strided_conv | resnet_block | inception | appended
    kind: str
    module: nn.Module  # for "appended": the Sequential the global LAP is appended to
    order: int
    stride: int = 1
    relu_first: bool = False  # "appended": the model applies a ReLU before its functional pool

    @property
    def is_block(self) -> bool:
        return self.kind in ("resnet_block", "inception")

    @property
    def is_global_kind(self) -> bool:
        return self.kind in ("adaptive", "fast_adaptive", "appended")

    @property
    def lap_name(self) -> str:
        if self.kind in ("strided_conv", "resnet_block", "inception"):
            return f"{self.name}.lap"
        if self.kind == "fast_adaptive" and self.module.flatten:
            return f"{self.name}.0"
        return self.name


@dataclass
class _Call:
    index: int
    name: str
    module: nn.Module
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None = None


@dataclass
class _Probe:
    calls: list[_Call] = field(default_factory=list)

    def first(self, name: str) -> _Call | None:
        return next((c for c in self.calls if c.name == name), None)


# ----------------------------------------------------------------------------- site discovery


def _torchvision_classes() -> dict[str, tuple[type, ...]]:
    try:
        from torchvision.models.inception import InceptionB, InceptionD
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return {"resnet": (), "inception": ()}
    return {"resnet": (BasicBlock, Bottleneck), "inception": (InceptionB, InceptionD)}


# torchvision classifiers whose global average pool is functional (in forward, not a module):
# class name -> (the Sequential whose output is pooled, whether forward applies a ReLU first).
# The global LAP is appended to that Sequential (as "global_pool"); the functional 1x1 average
# (and the ReLU, on LAP's non-negative output) then changes nothing.
_FUNCTIONAL_GLOBAL_POOLS = {
    "DenseNet": ("features", True),
    "MobileNetV2": ("features", False),
    "MNASNet": ("layers", False),
    "ShuffleNetV2": ("conv5", False),
}


def _appended_site(name: str, module: nn.Module) -> tuple[str, nn.Module, bool] | None:
    layout = _FUNCTIONAL_GLOBAL_POOLS.get(type(module).__name__)
    if layout is None or not type(module).__module__.startswith("torchvision.models"):
        return None
    container = getattr(module, layout[0], None)
    if not isinstance(container, nn.Sequential) or hasattr(container, "global_pool"):
        return None
    prefix = f"{name}." if name else ""
    return f"{prefix}{layout[0]}.global_pool", container, layout[1]


def _timm_fast_avg_pool() -> tuple[type, ...]:
    # a model holding timm modules has imported timm: never import it here (it is slow)
    module = sys.modules.get("timm.layers.adaptive_avgmax_pool")
    fast = getattr(module, "FastAdaptiveAvgPool", None)
    return (fast,) if isinstance(fast, type) else ()


def _stride_of(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    if stride is None:
        stride = getattr(module, "kernel_size", 1)
    if isinstance(stride, int):
        return stride
    return max(int(s) for s in stride)


def _site_kind(module: nn.Module, classes: dict[str, tuple[type, ...]]) -> str | None:
    """The kind of site ``module`` is, or None when lapify cannot replace it."""
    if isinstance(module, _LAP_WRAPPERS):
        return None
    kind = type(module)
    if kind in classes["resnet"]:
        convs = [getattr(module, n, None) for n in ("conv1", "conv2", "conv3")]
        strided = any(isinstance(c, nn.Conv2d) and tuple(c.stride) != (1, 1) for c in convs)
        return "resnet_block" if strided else None
    if kind in classes["inception"]:
        return "inception"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return "pool"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "adaptive"
    fast = _timm_fast_avg_pool()
    if fast and isinstance(module, fast) and tuple(getattr(module, "dim", ())) == (2, 3):
        return "fast_adaptive"
    if isinstance(module, nn.Conv2d) and tuple(module.stride) != (1, 1):
        return "strided_conv"
    return None


def _discover(model: nn.Module) -> dict[str, _Site]:
    """Every site of ``model`` by name, in registration order (appended global pools last)."""
    classes = _torchvision_classes()
    sites: dict[str, _Site] = {}
    skip: list[str] = []
    virtual: list[tuple[str, nn.Module, bool]] = []
    for order, (name, module) in enumerate(model.named_modules()):
        if any(name.startswith(prefix + ".") for prefix in skip):
            continue
        if isinstance(module, _LAP_WRAPPERS):
            skip.append(name)
            continue
        appended = _appended_site(name, module)
        if appended is not None:
            virtual.append(appended)
        kind = _site_kind(module, classes)
        if kind is not None and name:
            sites[name] = _Site(name, kind, module, order, _stride_of_site(module, kind))
    base = len(sites) + 10**6
    for offset, (name, container, relu_first) in enumerate(virtual):
        sites[name] = _Site(name, "appended", container, base + offset, relu_first=relu_first)
    return sites


def _stride_of_site(module: nn.Module, kind: str) -> int:
    if kind == "resnet_block":
        return max(
            _stride_of(getattr(module, n))
            for n in ("conv1", "conv2", "conv3")
            if isinstance(getattr(module, n, None), nn.Conv2d)
        )
    if kind == "inception":
        return 2
    if kind in ("pool", "strided_conv"):
        return _stride_of(module)
    return 1


def _nested_in(name: str, others: Sequence[str]) -> str | None:
    return next((o for o in others if o != name and name.startswith(o + ".")), None)


# ----------------------------------------------------------------------------- the dry forward


def _first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _probe_shape(model: nn.Module, input_size: Any) -> tuple[int, int, int]:
    conv = _first_conv(model)
    channels = conv.in_channels if conv is not None else 3
    if input_size is None:
        return channels, DEFAULT_PROBE_SIZE, DEFAULT_PROBE_SIZE
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        size: tuple[int, ...] = (channels, input_size, input_size)
    elif isinstance(input_size, Sequence) and len(input_size) in (2, 3):
        size = tuple(input_size)
        if len(size) == 2:
            size = (channels, *size)
    else:
        raise TypeError(f"input_size must be an int, (H, W) or (C, H, W), got {input_size!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise ValueError(f"input_size entries must be positive ints, got {input_size!r}")
    return size  # type: ignore[return-value]


def _reference_tensor(model: nn.Module) -> torch.Tensor | None:
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor
    return None


def _shape_of(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return tuple(value[0].shape)
    return None


def _run_probe(model: nn.Module, input_size: Any) -> _Probe:
    """One forward pass in eval mode under no_grad, recording every module call in order.

    Hooks are removed, train/eval flags and the LAP layers' stored maps restored, whatever
    happens.
    """
    shape = _probe_shape(model, input_size)
    reference = _reference_tensor(model)
    device = reference.device if reference is not None else None
    dtype = reference.dtype if reference is not None else None
    generator = torch.Generator().manual_seed(0)
    probe_input = torch.randn((1, *shape), generator=generator).to(device=device, dtype=dtype)
    record = _Probe()
    pending: dict[int, list[_Call]] = {}
    handles = []
    flags = {module: module.training for module in model.modules()}
    saved_maps = {m: (m.maps, m._forward_index) for m in model.modules() if isinstance(m, LapBase)}

    def make_hooks(name: str, module: nn.Module):
        def pre_hook(_module: nn.Module, args: tuple) -> None:
            call = _Call(len(record.calls), name, module, _shape_of(args[0]) if args else None)
            record.calls.append(call)
            pending.setdefault(id(module), []).append(call)

        def post_hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            stack = pending.get(id(module))
            if stack:
                stack.pop().out_shape = _shape_of(output)

        return pre_hook, post_hook

    try:
        for name, module in model.named_modules():
            pre_hook, post_hook = make_hooks(name, module)
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        model.eval()
        with torch.no_grad():
            try:
                model(probe_input)
            except Exception as error:
                raise ValueError(
                    f"the dry forward pass on a probe input of shape {tuple(probe_input.shape)} "
                    f"failed ({type(error).__name__}: {error}); pass input_size= a size the "
                    "model accepts"
                ) from error
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags.items():
            module.training = flag
        for module, (maps, index) in saved_maps.items():
            module.maps = maps
            module._forward_index = index
    return record


# ----------------------------------------------------------------------------- site selection


def _find_global(sites: dict[str, _Site], probe: _Probe) -> _Site | None:
    """The global pool: the last adaptive pool after which no BatchNorm, LAP or bigger map runs."""
    virtual = [s for s in sites.values() if s.kind == "appended"]
    by_module = {id(s.module): s for s in sites.values() if s.kind in ("adaptive", "fast_adaptive")}
    found = None
    for position, call in enumerate(probe.calls):
        site = by_module.get(id(call.module))
        if site is None or call.out_shape is None:
            continue
        out_area = 1
        if len(call.out_shape) == 4:
            out_area = call.out_shape[-1] * call.out_shape[-2]
        later = probe.calls[position + 1 :]
        if all(_ends_network(c, out_area) for c in later):
            found = site
    if found is None and virtual:
        return virtual[-1]
    return found


def _ends_network(call: _Call, out_area: int) -> bool:
    if isinstance(call.module, (nn.BatchNorm2d, LapBase)):
        return False
    if call.in_shape is not None and len(call.in_shape) == 4:
        return call.in_shape[-1] * call.in_shape[-2] <= out_area
    return True


def _auto_steps(sites: dict[str, _Site], probe: _Probe) -> list[_Site]:
    """Sites of the down-sampling steps with output stride >= AUTO_MIN_OUTPUT_STRIDE."""
    blocks = [s.name for s in sites.values() if s.is_block]
    candidates = {
        id(s.module): s
        for s in sites.values()
        if s.kind in ("pool", "strided_conv", "resnet_block", "inception")
        and s.stride > 1
        and _nested_in(s.name, blocks) is None
    }
    groups: dict[tuple[int, int], list[tuple[_Site, _Call]]] = {}
    seen: set[int] = set()
    for call in probe.calls:
        site = candidates.get(id(call.module))
        if site is None or id(call.module) in seen:
            continue
        seen.add(id(call.module))
        if call.in_shape is None or len(call.in_shape) != 4 or call.out_shape is None:
            continue
        before, after = call.in_shape[-2:], call.out_shape[-2:]
        if not (after[0] < before[0] or after[1] < before[1]):
            raise ValueError(
                f"the probe input is too small: {site.name} (stride {site.stride}) gets a "
                f"{before[0]}x{before[1]} map and does not shrink it, so its down-sampling step "
                "cannot be told apart; pass a larger input_size"
            )
        groups.setdefault((before[0], before[1]), []).append((site, call))
    chosen: list[_Site] = []
    output_stride = 1
    for members in groups.values():  # insertion order = forward order of the steps
        output_stride *= max(site.stride for site, _ in members)
        if output_stride >= AUTO_MIN_OUTPUT_STRIDE:
            chosen.extend(site for site, _ in members)
    return chosen


def _select(
    model: nn.Module, sites: dict[str, _Site], where: Where, input_size: Any
) -> tuple[list[_Site], _Probe | None, str]:
    """Resolve ``where`` into sites (model order), the probe run if any, and a label."""
    if isinstance(where, str):
        if where in ("auto", "global"):
            probe = _run_probe(model, input_size)
            chosen = _auto_steps(sites, probe) if where == "auto" else []
            global_site = _find_global(sites, probe)
            if global_site is not None:
                chosen.append(global_site)
            else:
                logger.warning("lapify(where=%r): no global pool found in the model", where)
            if not chosen:
                raise ValueError(
                    f"lapify(where={where!r}) found nothing to replace: no down-sampling step "
                    f"with output stride >= {AUTO_MIN_OUTPUT_STRIDE} and no global average pool"
                    " (is the model already made LAP?); pass module names instead"
                )
            return _ordered(chosen), probe, where
        if where in PRESETS:
            preset = PRESETS[where]
            missing = [n for n in preset.sites if n not in sites and not _has_module(model, n)]
            if missing:
                raise ValueError(
                    f"preset {where!r} does not fit this model: it names modules "
                    f"{', '.join(missing)} that the model does not have (the preset is for "
                    f"torchvision {', '.join(preset.architectures)}; use where='auto' or "
                    "module names for other models)"
                )
            return _by_names(model, sites, preset.sites, f"preset {where!r}"), None, where
        known = ["auto", "global", *PRESETS]
        hint = f" (to replace the module {where!r}, pass [{where!r}])" if where in sites else ""
        raise ValueError(
            f"unknown where={where!r}: expected one of {known}, a list of module names or a "
            f"predicate (name, module) -> bool{hint}"
        )
    if callable(where):
        chosen = [s for s in sites.values() if s.kind != "appended" and where(s.name, s.module)]
        if not chosen:
            raise ValueError("the where= predicate selected no module that lapify can replace")
        _check_no_overlap(chosen)
        return _ordered(chosen), None, "predicate"
    if isinstance(where, Sequence) and all(isinstance(n, str) for n in where):
        return _by_names(model, sites, list(where), "where"), None, "names"
    raise TypeError(
        f"where must be 'auto', 'global', a preset name, a list of module names or a predicate,"
        f" got {type(where).__name__}"
    )


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _ordered(chosen: list[_Site]) -> list[_Site]:
    return sorted({s.name: s for s in chosen}.values(), key=lambda s: s.order)


def _by_names(
    model: nn.Module, sites: dict[str, _Site], names: Sequence[str], origin: str
) -> list[_Site]:
    if not names:
        raise ValueError(f"{origin}: the list of module names is empty")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise ValueError(f"{origin}: module names listed twice: {duplicates}")
    all_names = [n for n, _ in model.named_modules() if n]
    missing, unsupported, chosen = [], [], []
    for name in names:
        if name in sites:
            chosen.append(sites[name])
        elif _has_module(model, name):
            module = model.get_submodule(name)
            unsupported.append(f"{name} ({type(module).__name__})")
        else:
            close = difflib.get_close_matches(name, all_names + list(sites), n=3)
            missing.append(f"{name!r}" + (f" (did you mean {close}?)" if close else ""))
    if missing:
        raise ValueError(f"{origin}: the model has no module {', '.join(missing)}")
    if unsupported:
        raise ValueError(
            f"{origin}: lapify cannot replace {', '.join(unsupported)}; it replaces MaxPool2d, "
            "AvgPool2d, AdaptiveAvgPool2d/AdaptiveMaxPool2d, Conv2d with stride > 1, torchvision "
            "ResNet down-sampling blocks and Inception reduction blocks (and not modules that "
            "are already LAP)"
        )
    _check_no_overlap(chosen)
    return _ordered(chosen)


def _check_no_overlap(chosen: list[_Site]) -> None:
    names = [s.name for s in chosen]
    for name in names:
        outer = _nested_in(name, names)
        if outer is not None:
            raise ValueError(
                f"{name!r} lies inside {outer!r}: choose the block or the modules inside it"
            )


# ----------------------------------------------------------------------------- channels, build


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
) -> dict[str, int]:
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
    return channels


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
    if site.kind == "pool":
        dilation = getattr(module, "dilation", 1)
        if dilation not in (1, (1, 1)):
            raise ValueError(f"{site.name}: a dilated max pool ({module}) has no LAP equivalent")
        if getattr(module, "return_indices", False):
            raise ValueError(f"{site.name}: a max pool returning indices cannot be replaced")
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
    parent_name, _, child_name = site.name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    replacement.train(site.module.training)
    setattr(parent, child_name, replacement)


def _options(
    n_concepts: int, hidden_channels: int, aggregation: str | nn.Module, alpha: float, eps: float
) -> dict[str, Any]:
    options = {
        "n_concepts": n_concepts,
        "hidden_channels": hidden_channels,
        "aggregation": aggregation,
        "alpha": alpha,
        "eps": eps,
    }
    LocalAttentionPool2d(1, 1, **options)  # the layer's own checks, before any work
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
) -> tuple[nn.Module, list[str]]:
    """Put LAP layers into ``model`` (paper 000, section III.C); returns ``(model, names)``.

    ``names`` are the replaced modules (model order); the LAP layers are ``<name>`` for pools,
    ``<name>.lap`` for strided convolutions and blocks (see the module docstring). Every LAP is a
    fresh module on the device and dtype of the module it replaces, starting with uniform scores.
    The LAP options (``n_concepts``, ``hidden_channels``, ``aggregation``, ``alpha``, ``eps``)
    are those of :class:`torchlap.LocalAttentionPool2d`. ``input_size`` is the probe input
    (int, (H, W) or (C, H, W)) when a dry forward pass is needed. ``inplace=False`` works on a
    deep copy.

    All replacements are built before any is put in: on any error the model is unchanged. The
    settings are recorded, JSON-serialisable, in ``model.torchlap_config["lapify"]`` (a list,
    one entry per call) so that :func:`torchlap.models.apply_lapify_config` can rebuild the
    same layout on a fresh model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {inplace!r}")
    options = _options(n_concepts, hidden_channels, aggregation, alpha, eps)
    if input_size is not None:
        _probe_shape(model, input_size)
    if not inplace:
        model = _deepcopy_without_maps(model)
    sites = _discover(model)
    chosen, probe, label = _select(model, sites, where, input_size)
    channels = _channels(model, chosen, probe, input_size)
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
        "input_size": list(input_size) if isinstance(input_size, Sequence) else input_size,
    }
    config = getattr(model, "torchlap_config", None)
    if not isinstance(config, dict):
        config = {}
    config = copy.deepcopy(config)
    config.setdefault("lapify", []).append(entry)
    model.torchlap_config = config


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


def lap_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of every LAP layer of ``model`` (scorers, ``alpha``, aggregation modules)."""
    found: dict[int, nn.Parameter] = {}
    for module in lap_modules(model).values():
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
    """
    if not lap_modules(model):
        raise ValueError("the model has no LAP layer; put some in with torchlap.lapify(model)")
    if isinstance(also_trainable, str):
        also_trainable = [also_trainable]
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
