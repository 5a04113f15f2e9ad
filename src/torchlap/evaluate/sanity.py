"""Sanity checks for saliency maps: the model-parameter randomization test (Adebayo et al. 2018).

"Sanity Checks for Saliency Maps" (NeurIPS 2018), section 3: re-initialise the weights of the
trained model, *cascading* from the output layer down to the input (each step randomizes one
more unit, the earlier ones stay random) and *independently* (one unit at a time, the rest
trained), explain the same images for the same classes on every randomized copy, and measure
how similar each map is to the trained model's map. A method whose maps stay similar when the
weights they claim to explain are destroyed fails the check.

Units. :func:`randomization_units` splits a model into the units the steps randomize, in
forward order (the order of the first call of any module a unit re-initialises in one probe
pass, so a block whose forward calls its own LAP layer first comes after that LAP layer):

- ``granularity="block"`` (default): the root (and any wrapper holding a single child with
  parameters, such as :class:`~torchlap.train.wrapping.NormalizedClassifier`'s ``net``) and
  every ``nn.Sequential``/``nn.ModuleList`` whose children are themselves containers (a ResNet's
  ``layer1``) are opened; every other child with parameters is a unit (``conv1``, ``bn1``,
  ``layer1.0``, ..., ``fc``; a SmallCNN stage ``layer1``). A LAP layer is always a unit of its
  own (its concept heads are re-initialised like any other layer, in their own step), and is
  left out of the unit that contains it. An opened module that also owns parameters directly
  (a root's temperature) is a unit for those alone, placed at its own first call (so cascading
  randomizes a root's parameters last), its children being units of their own.
- ``granularity="layer"``: every module that owns parameters directly (Quantus' MPRT walks
  the same modules when they have ``reset_parameters``).

Re-initialisation: a module's own ``reset_parameters()`` (PyTorch's default initialisation of
that layer; batch-norm layers also reset their running statistics), or, for a module without
one, Kaiming-uniform weights (``a = sqrt(5)``, PyTorch's default for ``nn.Linear``/``nn.Conv``)
and ``U(-1/sqrt(n), 1/sqrt(n))`` vectors; a scalar parameter (LAP's sharpness ``alpha``) has no
random initialisation and keeps its value (the concept heads it scales are re-initialised).
Every unit is re-initialised right after ``torch.manual_seed(seed + index)`` (``index``: its
forward position), so a unit gets the same random weights in the cascading and the independent
test (``reseed="fixed"``: ``seed`` for
every unit, Quantus' convention). The caller's RNG state is restored afterwards. All work
happens on deep copies: the model passed in is never modified.

Similarity (section 3 of the paper): Spearman rank correlation of the absolute values
(:func:`spearman_abs`, average ranks for ties) and SSIM of the min-max-normalised absolute maps
(:func:`ssim_abs`, Wang et al.'s mean over the windows inside the map), per image, averaged over
the images.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.explainers.base import minmax_normalize
from torchlap.layers.lap import LapBase
from torchlap.logs import track

__all__ = [
    "DEFAULT_SANITY_THRESHOLD",
    "RandomizationUnit",
    "randomization_units",
    "randomize_unit",
    "randomized_models",
    "sanity_check",
    "spearman_abs",
    "ssim_abs",
    "summarize",
]

logger = logging.getLogger(__name__)

#: a method passes when the mean Spearman correlation (absolute values) between its maps on the
#: trained and the fully randomized model is below this (the paper gives no number: torchlap's)
DEFAULT_SANITY_THRESHOLD = 0.5
MODES = ("cascading", "independent")
GRANULARITIES = ("block", "layer")
RESEEDS = ("per_unit", "fixed")
CONSTANT_MAPS = ("score", "exclude")

ExplainFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class RandomizationUnit:
    """One step's unit: ``name`` (a module name) and the module names it re-initialises."""

    name: str
    modules: tuple[str, ...]
    index: int


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _container_of_blocks(module: nn.Module) -> bool:
    children = [c for c in module.children() if _has_parameters(c)]
    return bool(children) and all(any(True for _ in c.children()) for c in children)


def _own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def randomization_units(
    model: nn.Module, sample: Tensor, granularity: str = "block"
) -> list[RandomizationUnit]:
    """The units of ``model`` in forward order (see the module docstring for the rules).

    ``sample`` is one batch the model accepts; it runs once through a deep copy (no gradient,
    eval mode) to find the order, so ``model`` is not touched. Units that did not run are put
    first in module order (so cascading randomizes them last).
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    lap_names = [n for n, m in model.named_modules() if isinstance(m, LapBase)]
    if granularity == "layer":
        candidates = _layer_candidates(model, lap_names)
    else:
        candidates = _block_candidates(model, lap_names)
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no parameters to randomize")
    members = {
        name: _members(model, name, [*lap_names, *candidates], granularity) for name in candidates
    }
    started = _forward_starts(model, members, sample)
    ordered = sorted(candidates, key=lambda n: (n in started, started.get(n, -1)))
    return [
        RandomizationUnit(name=name, modules=members[name], index=index)
        for index, name in enumerate(ordered)
    ]


def _members(model: nn.Module, name: str, units: list[str], granularity: str) -> tuple[str, ...]:
    """The modules unit ``name`` re-initialises: those under it holding state, without the
    other units inside it (LAP layers, and the children of a unit that also owns parameters
    directly: units of their own); ``granularity="layer"``: the module itself."""
    if granularity == "layer" and not isinstance(model.get_submodule(name), LapBase):
        return (name,)

    def under(n: str, unit: str) -> bool:
        return n == unit or n.startswith(f"{unit}." if unit else "")

    return tuple(
        n
        for n, m in model.named_modules()
        if under(n, name)
        and _own_state(m)
        and not any(unit != name and under(unit, name) and under(n, unit) for unit in units)
    )


def _layer_candidates(model: nn.Module, lap_names: list[str]) -> list[str]:
    """``granularity="layer"``: every module owning parameters, LAP layers whole."""
    inside_lap = {
        n for lap in lap_names for n, _ in model.named_modules() if n.startswith(f"{lap}.")
    }
    candidates = [
        n
        for n, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
        and n not in inside_lap
        and not isinstance(m, LapBase)
    ]
    return candidates + lap_names


def _block_candidates(model: nn.Module, lap_names: list[str]) -> list[str]:
    """``granularity="block"``: the units of the module docstring's rules."""
    candidates: list[str] = []

    def visit(prefix: str, module: nn.Module, opened: bool) -> None:
        if isinstance(module, LapBase) and prefix:
            candidates.append(prefix)
            return
        if not opened:
            candidates.append(prefix)
            # LAP layers inside this unit are units of their own
            candidates.extend(n for n in lap_names if n.startswith(f"{prefix}."))
            return
        if any(True for _ in module.parameters(recurse=False)):
            candidates.append(prefix)  # its own parameters (the root's too: name "")
        holders = [(n, c) for n, c in module.named_children() if _has_parameters(c)]
        for child_name, child in holders:
            child_opened = (
                len(holders) == 1 and not any(True for _ in module.parameters(recurse=False))
            ) or (isinstance(child, (nn.Sequential, nn.ModuleList)) and _container_of_blocks(child))
            visit(f"{prefix}.{child_name}" if prefix else child_name, child, child_opened)

    visit("", model, True)
    return candidates


def _forward_starts(
    model: nn.Module, members: dict[str, tuple[str, ...]], sample: Tensor
) -> dict[str, int]:
    """The forward position of each unit in one probe pass, on a copy (a forward pass leaves
    state behind in some modules, e.g. the maps a LAP layer keeps): the first call of any of
    its member modules (the ones it re-initialises), or, when none of them is called (weights
    read directly by a parent), of the unit's module itself. A block that calls its own LAP
    layer first (``LapResidualBlock``: ``self.lap(x)``, then the convolutions) comes after
    that LAP layer, as its convolutions do."""
    calls: dict[str, int] = {}
    probe = copy.deepcopy(model)
    modules = dict(probe.named_modules())
    handles = []

    def make_hook(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            calls.setdefault(name, len(calls))

        return hook

    try:
        for name in {n for unit, names in members.items() for n in (unit, *names)}:
            handles.append(modules[name].register_forward_pre_hook(make_hook(name)))
        probe.eval()
        with torch.no_grad():
            probe(sample)
    finally:
        for handle in handles:
            handle.remove()
        del probe
    started: dict[str, int] = {}
    for unit, names in members.items():
        called = [calls[n] for n in names if n in calls]
        if called or unit in calls:
            started[unit] = min(called) if called else calls[unit]
    return started


def _reinit_module(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for param in module.parameters(recurse=False):
            if param.dim() == 0:
                continue  # a scalar (e.g. LAP's sharpness alpha) has no random init: kept
            if param.dim() >= 2:
                nn.init.kaiming_uniform_(param, a=math.sqrt(5))
            else:
                bound = 1.0 / math.sqrt(max(param.numel(), 1))
                nn.init.uniform_(param, -bound, bound)


def randomize_unit(model: nn.Module, unit: RandomizationUnit, seed: int) -> None:
    """Re-initialise (in place) every module of ``unit`` in ``model`` after
    ``torch.manual_seed(seed)``; the caller's RNG state is restored afterwards."""
    modules = dict(model.named_modules())
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in unit.modules:
            _reinit_module(modules[name])


def randomized_models(
    model: nn.Module,
    units: Sequence[RandomizationUnit],
    mode: str = "cascading",
    seed: int = 0,
    reseed: str = "per_unit",
) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(unit name, randomized copy)`` per step; ``model`` itself is never touched.

    ``cascading``: from the last unit in forward order (the classifier) down to the first, each
    step adding one randomized unit (the same copy, re-used: consume a step before the next).
    ``independent``: each unit alone, in the same order, the rest holding the trained weights.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if reseed not in RESEEDS:
        raise ValueError(f"reseed must be one of {RESEEDS}, got {reseed!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    copy_ = copy.deepcopy(model)
    trained = (
        {k: v.detach().clone() for k, v in copy_.state_dict().items()}
        if mode == "independent"
        else None
    )
    for unit in reversed(list(units)):
        if trained is not None:
            copy_.load_state_dict(trained)
        randomize_unit(copy_, unit, seed + unit.index if reseed == "per_unit" else seed)
        yield unit.name, copy_


# ------------------------------------------------------------------------------ similarity


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks (1-based) of each row of ``values`` ``(N, D)``, ties sharing their mean rank."""
    ordered = values.sort(dim=1).values.contiguous()
    less = torch.searchsorted(ordered, values.contiguous(), side="left")
    less_or_equal = torch.searchsorted(ordered, values.contiguous(), side="right")
    return (less + less_or_equal + 1).to(torch.float64) / 2.0


def spearman_abs(a: Tensor, b: Tensor, constant_maps: str = "score") -> Tensor:
    """Spearman rank correlation of ``|a|`` and ``|b|`` per map (maps ``(N, ...)``) -> ``(N,)``.

    Pearson correlation of the average ranks (ties share their mean rank, as
    ``scipy.stats.spearmanr``). A constant map has no ranking: ``constant_maps="score"`` gives 1
    when both maps are constant and 0 when only one is (the maps share no ranking);
    ``"exclude"`` gives ``nan`` (scipy's value).
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.shape != b.shape:
        raise ValueError(
            "spearman_abs needs two tensors of the same shape (N, ...), got "
            f"{getattr(a, 'shape', type(a))} and {getattr(b, 'shape', type(b))}"
        )
    if constant_maps not in CONSTANT_MAPS:
        raise ValueError(f"constant_maps must be one of {CONSTANT_MAPS}, got {constant_maps!r}")
    ra = _average_ranks(a.detach().flatten(1).abs().to(torch.float64))
    rb = _average_ranks(b.detach().flatten(1).abs().to(torch.float64))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    norm_a = ra.norm(dim=1)
    norm_b = rb.norm(dim=1)
    rho = (ra * rb).sum(dim=1) / (norm_a * norm_b)
    const_a, const_b = norm_a == 0, norm_b == 0
    if constant_maps == "score":
        rho = torch.where(const_a & const_b, 1.0, torch.where(const_a | const_b, 0.0, rho))
    else:
        rho = torch.where(const_a | const_b, float("nan"), rho)
    return rho.to(torch.float32)


def ssim_abs(a: Tensor, b: Tensor) -> Tensor:
    """SSIM of the min-max-normalised absolute maps ``(N, H, W)`` -> ``(N,)``.

    Wang et al.'s mean SSIM: the local SSIM index in a Gaussian window of width 11 (sigma 1.5;
    on maps smaller than 11 pixels the largest odd width that fits, sigma shrunk with it,
    ``1.5 * width / 11``), data range 1, averaged over the windows that lie inside the map.
    torchmetrics computes the local indices; its own mean (1.9) also averages windows centred
    on border pixels, over the map mirrored past its edge, which Wang et al. do not define and
    which moved random related maps' SSIM by 0.10-0.22 at 7x7 to 14x14 pixels (a 7x7 map has one
    inside window of width 7 and 48 partly mirrored ones), so only the inside windows are kept
    (metrics revision 13). This equals scikit-image's ``structural_similarity`` with Gaussian
    weights, ``use_sample_covariance=False`` and ``data_range=1`` (a port of the sanity-check
    authors' notebook leaves scikit-image's defaults of the time: sample covariance, data
    range 2 for float maps)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if not isinstance(a, Tensor) or a.dim() != 3 or a.shape != getattr(b, "shape", None):
        raise ValueError(
            "ssim_abs needs two map tensors of the same shape (N, H, W), got "
            f"{getattr(a, 'shape', type(a))} and {getattr(b, 'shape', type(b))}"
        )
    side = min(a.shape[-2:])
    if side < 3:
        raise ValueError(f"SSIM needs maps of at least 3x3 pixels, got {tuple(a.shape[-2:])}")
    kernel = min(11, side if side % 2 else side - 1)
    x = minmax_normalize(a.detach().abs().float()).unsqueeze(1)
    y = minmax_normalize(b.detach().abs().float()).unsqueeze(1)
    _, local = structural_similarity_index_measure(
        x,
        y,
        data_range=1.0,
        kernel_size=kernel,
        sigma=1.5 * kernel / 11,
        reduction="none",
        return_full_image=True,
    )
    half = (kernel - 1) // 2
    inside = local[..., half : local.shape[-2] - half, half : local.shape[-1] - half]
    return inside.reshape(inside.shape[0], -1).mean(1)


# ----------------------------------------------------------------------------------- driver


def summarize(values: Tensor) -> dict[str, Any]:
    """Mean, standard deviation and count of the finite ``values`` (the others excluded)."""
    finite = values[torch.isfinite(values)]
    n = int(finite.numel())
    return {
        "mean": float(finite.mean()) if n else None,
        "std": float(finite.std(unbiased=False)) if n else None,
        "n": n,
        "n_excluded": int(values.numel() - n),
    }


def sanity_check(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    explain_fn: ExplainFn,
    modes: Sequence[str] = MODES,
    granularity: str = "block",
    threshold: float = DEFAULT_SANITY_THRESHOLD,
    seed: int = 0,
    reseed: str = "per_unit",
    constant_maps: str = "score",
    original_maps: Tensor | None = None,
) -> dict[str, Any]:
    """The model-parameter randomization test of one method (Adebayo et al. 2018, section 3).

    ``explain_fn(model, images, targets) -> maps (N, H, W)`` explains on whichever copy it is
    given; ``targets`` (the classes explained) stay the same on every copy. Returns a JSON-ready
    dict: per mode the unit names in step order and, per step, the mean/std of
    ``spearman_abs`` and ``ssim`` over the images; ``summary`` = the similarities at full
    cascading randomization (or, with only the independent mode, the mean over its steps);
    ``passed`` = ``summary["spearman_abs"] < threshold``.
    """
    if not modes or any(mode not in MODES for mode in modes):
        raise ValueError(f"modes must be a non-empty choice from {MODES}, got {list(modes)!r}")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got {images!r:.60}")
    if not isinstance(targets, Tensor) or targets.shape != (images.shape[0],):
        raise ValueError(f"targets must be a ({images.shape[0]},) tensor of classes")
    if reseed not in RESEEDS:
        raise ValueError(f"reseed must be one of {RESEEDS}, got {reseed!r}")
    if constant_maps not in CONSTANT_MAPS:
        raise ValueError(f"constant_maps must be one of {CONSTANT_MAPS}, got {constant_maps!r}")
    device = next((p.device for p in model.parameters()), images.device)
    units = randomization_units(model, images[:1].to(device), granularity)
    reference = original_maps if original_maps is not None else explain_fn(model, images, targets)
    reference = reference.detach().float().cpu()
    result: dict[str, Any] = {
        "test": "model parameter randomization (Adebayo et al. 2018)",
        "granularity": granularity,
        "threshold": float(threshold),
        "pass_rule": "summary spearman_abs < threshold",
        "seed": seed,
        "reseed": reseed,
        "constant_maps": constant_maps,
        "n_images": int(images.shape[0]),
        "units_forward_order": [u.name for u in units],
    }
    for mode in modes:
        steps: list[str] = []
        rows: dict[str, list[dict[str, Any]]] = {"spearman_abs": [], "ssim": []}
        randomized_steps = track(randomized_models(model, units, mode, seed, reseed),
                                 total=len(units), description=f"{mode} randomization",
                                 unit="layers")  # fmt: skip
        for name, randomized in randomized_steps:
            maps = explain_fn(randomized, images, targets).detach().float().cpu()
            steps.append(name)
            rows["spearman_abs"].append(summarize(spearman_abs(reference, maps, constant_maps)))
            rows["ssim"].append(summarize(ssim_abs(reference, maps)))
        result[mode] = {
            "steps": steps,
            **{measure: [r["mean"] for r in values] for measure, values in rows.items()},
            **{f"{measure}_std": [r["std"] for r in values] for measure, values in rows.items()},
            "n_excluded": [r["n_excluded"] for r in rows["spearman_abs"]],
        }
    if "cascading" in result:
        summary = {m: result["cascading"][m][-1] for m in ("spearman_abs", "ssim")}
        summary["at"] = "full cascading randomization"
    else:
        summary = {
            m: _mean([v for v in result["independent"][m] if v is not None])
            for m in ("spearman_abs", "ssim")
        }
        summary["at"] = "mean over the independent steps"
    result["summary"] = summary
    value = summary["spearman_abs"]
    result["passed"] = None if value is None else bool(value < threshold)
    return result


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
