"""Where ``lapify`` puts LAP layers: site discovery, the dry probe pass, and site selection.

:func:`_discover` lists the candidate sites of a model (pooling layers, strided
convolutions, residual blocks, Inception reductions, functional global pools);
:func:`_run_probe` runs one dry forward pass (hooks removed and train/eval flags restored
whatever happens) to learn each site's output shape and stride; :func:`_select` turns
``where`` (``"auto"``, ``"global"``, a preset, a list of names, a predicate) into the sites.
Private to :mod:`torchlap.models.lapify`, which documents the rules.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchlap._checks import check_bool
from torchlap._hooks import Hooks, kept_training_flags
from torchlap.layers import LapBase
from torchlap.layers._state import kept_last_maps
from torchlap.models.blocks import LapConv2d, LapInceptionReduction, LapResidualBlock
from torchlap.models.lapify_refusals import foreign_forward
from torchlap.models.presets import PRESETS

logger = logging.getLogger("torchlap.models.lapify")

DEFAULT_PROBE_SIZE = 224
# Steps whose output stride is at least this get a LAP under where="auto" (ResNet blocks 2-4).
AUTO_MIN_OUTPUT_STRIDE = 8

Where = str | Sequence[str] | Callable[[str, nn.Module], bool]

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


def _first_conv(model: nn.Module) -> nn.Module | None:
    """The first 2-D convolution, also inside a TorchScript part (a scripted ``Conv2d``)."""
    return next(
        (
            m
            for m in model.modules()
            if isinstance(m, nn.Conv2d)
            or (
                isinstance(m, torch.jit.ScriptModule)
                and getattr(m, "original_name", "") == "Conv2d"
            )
        ),
        None,
    )


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
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 2**63 for v in size):
        raise ValueError(
            f"input_size entries must be positive ints that fit in 64 bits, got {input_size!r}"
        )
    return size  # type: ignore[return-value]


def _channels_hint(model: nn.Module, input_size: Any) -> str:
    """Where the probe's channel count came from, unless the user gave it as (C, H, W)."""
    if isinstance(input_size, Sequence) and len(input_size) == 3:
        return ""
    conv = _first_conv(model)
    if conv is None:
        return " (the probe has 3 channels: the model has no Conv2d to read them from)"
    name = next(n for n, m in model.named_modules() if m is conv)
    return (
        f" (the probe's {conv.in_channels} channels are the in_channels of the first Conv2d, "
        f"{name!r}; a model whose stem changes the channel count before it takes another: "
        "pass input_size=(C, H, W))"
    )


def _reference_tensor(model: nn.Module) -> torch.Tensor | None:
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor
    return None


def _probe_input(model: nn.Module, input_size: Any) -> torch.Tensor:
    """The dry passes' input ``(1, *_probe_shape(...))``: normal noise from a generator seeded
    with 0 (drawn on the CPU), on the device and in the dtype of the model's first floating
    parameter or buffer."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((1, *_probe_shape(model, input_size)), generator=generator, device="cpu")
    reference = _reference_tensor(model)
    if reference is None:
        return probe
    return probe.to(device=reference.device, dtype=reference.dtype)


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` of ``model``: lapify, blaify and the model builder
    swap modules through here."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


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
    probe_input = _probe_input(model, input_size)
    record = _Probe()
    pending: dict[int, list[_Call]] = {}

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

    with Hooks() as hooks, kept_training_flags(model):
        for name, module in model.named_modules():
            if isinstance(module, torch.jit.ScriptModule):
                continue  # TorchScript parts take no hooks; nothing in them is a site
            pre_hook, post_hook = make_hooks(name, module)
            hooks.forward_pre(module, pre_hook)
            hooks.forward(module, post_hook)
        _dry_forward(model, probe_input, lambda: _channels_hint(model, input_size))
    return record


def _dry_forward(model: nn.Module, probe: torch.Tensor, hint: Callable[[], str]) -> None:
    """``model(probe)`` in eval mode under no_grad, the LAP layers' (and BLA pools') last maps
    kept as they were (:func:`kept_last_maps`): the dry pass of lapify's and blaify's probes. A
    failure is a ValueError naming the probe's shape and the model's error, ending with
    ``hint()`` (what else to pass). The caller restores the train/eval flags and its hooks."""
    model.eval()
    with torch.no_grad(), kept_last_maps(model):
        try:
            model(probe)
        except Exception as error:
            raise ValueError(
                f"the dry forward pass on a probe input of shape {tuple(probe.shape)} failed "
                f"({type(error).__name__}: {error}); pass input_size= a size the model "
                f"accepts{hint()}"
            ) from error


# ----------------------------------------------------------------------------- site selection


def _find_global(sites: dict[str, _Site], probe: _Probe) -> _Site | None:
    """The global pool: the last adaptive pool after which no BatchNorm, LAP or bigger map runs."""
    virtual = [s for s in sites.values() if s.kind == "appended"]
    by_module = {id(s.module): s for s in sites.values() if s.kind in ("adaptive", "fast_adaptive")}
    found = None
    for position, call in enumerate(probe.calls):
        site = by_module.get(id(call.module))
        if site is None or call.out_shape is None or foreign_forward(site.module):
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
    # Every call of a step counts towards the output stride: a pool module run twice shrinks
    # the map twice. A module that runs at output stride >= AUTO_MIN_OUTPUT_STRIDE is chosen even
    # when it ran earlier too; replacing such a shared module is refused later, naming its uses.
    # A step run on one unbatched (C, H, W) sample shrinks the map as well, but no LAP can
    # take its place: LAP layers take (B, C, H, W).
    groups: dict[tuple[int, int], list[_Site]] = {}
    unbatched: list[str] = []
    for call in probe.calls:
        site = candidates.get(id(call.module))
        if site is None or call.in_shape is None or call.out_shape is None:
            continue
        if len(call.in_shape) != 4:
            if len(call.in_shape) != 3 or len(call.out_shape) != 3:
                continue
            unbatched.append(site.name)
        before, after = call.in_shape[-2:], call.out_shape[-2:]
        if not (after[0] < before[0] or after[1] < before[1]):
            raise ValueError(
                f"the probe input is too small: {site.name} (stride {site.stride}) gets a "
                f"{before[0]}x{before[1]} map and does not shrink it, so its down-sampling step "
                "cannot be told apart; pass a larger input_size"
            )
        groups.setdefault((before[0], before[1]), []).append(site)
    chosen: list[_Site] = []
    output_stride = 1
    for members in groups.values():  # insertion order = forward order of the steps
        output_stride *= max(site.stride for site in members)
        if output_stride >= AUTO_MIN_OUTPUT_STRIDE:
            chosen.extend(site for site in members if site not in chosen)
    if any(s.name in unbatched for s in chosen):
        logger.warning(
            "lapify(where='auto'): left %s as they are: they ran on unbatched (C, H, W) "
            "tensors in the dry forward pass, and LAP layers take (B, C, H, W)",
            sorted({s.name for s in chosen if s.name in unbatched}),
        )
        chosen = [s for s in chosen if s.name not in unbatched]
    foreign = [s for s in chosen if not s.is_block and foreign_forward(s.module)]
    if foreign:
        logger.warning(
            "lapify(where='auto'): left %s as they are: %s",
            [s.name for s in foreign],
            foreign_forward(foreign[0].module),
        )
    return [s for s in chosen if s not in foreign]


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
                    f"module names for other models){_wrapper_hint(model)}"
                )
            return _by_names(model, sites, preset.sites, f"preset {where!r}"), None, where
        known = ["auto", "global", *PRESETS]
        hint = f" (to replace the module {where!r}, pass [{where!r}])" if where in sites else ""
        raise ValueError(
            f"unknown where={where!r}: expected one of {known}, a list of module names or a "
            f"predicate (name, module) -> bool{hint}"
        )
    if callable(where):
        chosen = [s for s in sites.values() if s.kind != "appended" and _asks(where, s)]
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


def _wrapper_hint(model: nn.Module) -> str:
    """For a DataParallel/DistributedDataParallel model: its modules are 'module.<name>'."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return (
            f"; the model is a {type(model).__name__} wrapper, whose modules are named "
            "'module.<name>': lapify model.module (before wrapping it) instead"
        )
    return ""


def _asks(predicate: Callable[[str, nn.Module], bool], site: _Site) -> bool:
    """The where= predicate's answer for ``site``: True or False (numpy's bools too), never
    the truth of another value (a string "no" is truthy)."""
    answer = predicate(site.name, site.module)
    return check_bool(answer, f"the where= predicate's answer for {site.name!r}")


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
    aliases = module_aliases(model)
    missing, unsupported, chosen = [], [], []
    for name in names:
        if name in aliases:
            raise ValueError(shared_module_message(name, f"registered as {aliases[name]}"))
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


def module_aliases(model: nn.Module) -> dict[str, list[str]]:
    """Name -> every name of the same module object, for the modules registered under more
    than one name (``model.p2 = model.p1``; ``named_modules`` lists each object once)."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            names.setdefault(id(module), []).append(name)
    return {name: group for group in names.values() if len(group) > 1 for name in group}


def shared_module_message(name: str, uses: str) -> str:
    """Why lapify refuses a module with several uses (``uses`` says which: names or calls)."""
    return (
        f"{name!r} is one module with several uses ({uses}): one LAP layer in its "
        "place would keep the maps of only one of them (and is built for one channel count); "
        "give each use a module of its own (e.g. copy.deepcopy) and name those"
    )


def check_single_use(model: nn.Module, chosen: Sequence[_Site], probe: _Probe | None) -> None:
    """Refuse a chosen module registered under several names, or (where the dry forward pass
    ran) called more than once in a forward pass."""
    aliases = module_aliases(model)
    for site in chosen:
        if site.kind == "appended":
            continue
        if site.name in aliases:
            uses = f"registered as {aliases[site.name]}"
            raise ValueError(shared_module_message(site.name, uses))
        if probe is not None:
            calls = [c for c in probe.calls if c.module is site.module]
            if len(calls) > 1:
                shapes = ", ".join(str(c.in_shape) for c in calls)
                uses = f"called {len(calls)} times in one forward pass, on {shapes}"
                raise ValueError(shared_module_message(site.name, uses))


def _check_no_overlap(chosen: list[_Site]) -> None:
    names = [s.name for s in chosen]
    for name in names:
        outer = _nested_in(name, names)
        if outer is not None:
            raise ValueError(
                f"{name!r} lies inside {outer!r}: choose the block or the modules inside it"
            )


# ----------------------------------------------------------------------------- channels, build
