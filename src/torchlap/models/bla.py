"""Bounded logit attention (BLA) and its baselines: paper 002 (Baumhauer et al., 2021).

BLA replaces the global average pool ``v = 1/n sum_i f_i`` of a classifier by an explanation
module over the ``n`` positions of the last feature map (section 3.1):

- a 1x1 convolution maps each feature vector ``f_i`` to a scalar ``g_i = u^T f_i (+ b)``;
- the bounded logits ``l_i = beta(g_i) = min(g_i, 0)``;
- the soft explanation ``q = softmax(theta * l)`` over positions (temperature ``theta = 0.1``);
- training pools ``v = sum_i q_i f_i`` (Eq. 1);
- the discrete (hard) explanation is ``delta_i = 1 iff l_i = 0`` and pools
  ``v = 1/|delta|_1 sum_i delta_i f_i`` (section 3). "Validation accuracies and losses are always
  reported for the hard explanations" (section 4.2), so a module in eval mode uses this hard
  path by default (``eval_path="hard"``).

Choices where the paper is silent (each one documented where it is made):

- **Empty hard explanation.** When no logit reaches the bound (every ``g_i < 0``) the rule
  ``l_i = 0`` selects nothing and ``v`` is undefined. We use ``delta_i = 1 iff l_i = max_j l_j``:
  identical to ``l_i = 0`` whenever some logit reaches 0, and the argmax set otherwise, so the
  explanation is never empty.
- **BLA-T, a trainable threshold.** Eq. 2 pools ``sum_i 1[q_i > gamma] f_i``: the indicator has
  no gradient, so the scorer would never learn. As the authors' public code (github.com/th-b/bla)
  does, we train with the soft-thresholded weights ``w_i = relu(q_i - gamma)`` and sum-pool
  ``v = sum_i w_i f_i`` without renormalising (``pool="sum"``, default): the support is exactly
  Eq. 2's set ``{q_i > gamma}`` and the weights are differentiable in ``q`` on it.
  ``pool="normalized"`` divides by ``sum_j w_j`` (a convex combination of features, the scale
  of Eq. 1; torchlap's rule before it followed the authors' code).
  ``gamma`` defaults to ``1/n``, the paper's proposed default (section 3.1: "We propose
  gamma = 1/n as the default threshold"); its experiments of section 4.2 use ``0.98 / n``
  (``blaify(..., gamma_factor=0.98)``, what the training recipes pass). With ``gamma < 1/n``
  at least one position always survives (``max_i q_i >= 1/n``); with ``gamma = 1/n`` the set
  ``{q_i > gamma}`` is empty only when ``q`` is uniform, and an empty set falls back to ``q``.
  The threshold only changes training; the hard explanation is the same ``delta`` as BLA's.
- **BLA-PH** is BLA-T with every other parameter frozen ("the same setup as BLA-T, but with
  frozen heads L", section 4.2).
- **L2X-F** (section 3.3, Chen et al. 2018 at feature level): inclusion logits from a 1x1
  convolution; training draws ``k`` Gumbel-softmax samples over the positions and takes their
  element-wise maximum as the relaxed k-hot mask ``m``; evaluation keeps the ``k`` positions of
  largest logit and pools their mean ``1/k sum_{i in top-k} f_i`` (the paper's
  ``v = 1/|delta|_1 sum_i delta_i f_i``). Training follows the authors' code: each sample is
  ``softmax((l + G^j) * 0.1)`` (temperature ``tau = 10``, which divides) and the relaxed mask
  sum-pools ``v = sum_i m_i f_i`` without normalising (``pool="sum"``); ``pool="normalized"``
  pools ``sum_i m_i f_i / sum_i m_i`` (torchlap's earlier rule, with ``tau=0.5``).

Initialisation follows the paper (section 4.2: "Non-pretrained parameters are set using the
Glorot uniform initializer"): ``init="glorot"`` (default) draws the scorer weight
Glorot-uniform, with a zero bias (Keras' default for a convolution's bias). ``init="zeros"``
starts the scorer at zero: every logit is 0, ``q`` is uniform and ``delta`` selects every
position, so the module computes exactly the global average pool it replaces (a trained model
keeps its outputs at insertion, as LAP does).

Where ``blaify`` puts the module (the same torchvision families as ``lapify``):

=====================================  ============================================================
model                                  BLA module name (returned by ``blaify``)
=====================================  ============================================================
ResNet/ResNeXt/Wide ResNet, RegNet,    the global ``nn.AdaptiveAvgPool2d`` (``avgpool``; the last
EfficientNet, MobileNetV3, ConvNeXt,   output-1 adaptive average pool of the model that is not
Inception v3, GoogLeNet, SqueezeNet    inside a squeeze-excitation block) is replaced
DenseNet (functional ``relu`` +        ``features.relu_final`` + ``features.global_pool`` appended
``adaptive_avg_pool2d`` in forward)    to ``features`` (as ``lapify`` does); the functional pool
                                       that follows then averages a 1x1 map (an identity)
MobileNetV2 (functional pool)          ``features.global_pool`` appended to ``features``
ShuffleNetV2 (``x.mean([2, 3])``)      ``conv5.global_pool`` appended to ``conv5``
MNASNet (``x.mean([2, 3])``)           ``layers.global_pool`` appended to ``layers``
VGG, AlexNet                           their ``avgpool`` is ``AdaptiveAvgPool2d((7, 7))`` /
                                       ``((6, 6))``, flattened into a classifier of ``C*49`` /
                                       ``C*36`` inputs: not a global pool. ``blaify`` raises unless
                                       ``resize_head=True``, which replaces ``avgpool`` by BLA and
                                       the first classifier ``Linear(C*h*w, d)`` by a fresh
                                       ``Linear(C, d)`` (its trained weights are lost)
=====================================  ============================================================

The BLA module returns ``(B, C, 1, 1)`` like the pool it replaces. Its maps of the last forward
pass are in ``module.maps`` (:class:`BlaMaps`) and :func:`bla_maps`.

Faithfulness (section 4.3): :func:`torchlap.metrics.lime_faithfulness.lime_spearman` and
:func:`torchlap.evaluate.bla_comparison.bla_lime_faithfulness` compute the Spearman rank
correlation between LIME scores of the cells of BLA's feature map (captum ``Lime``; 32x32
patches on a ResNet) and an explanation map (BLA's soft explanation, Grad-CAM) averaged over
the same cells.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torchlap._checks import check_positive_float, check_positive_int
from torchlap._hooks import Hooks, kept_training_flags
from torchlap.models.bla_pools import (
    POOLS,
    BlaMaps,
    BoundedLogitAttention,
    FeatureSelectionPool,
    L2XFeatureSelection,
    bla_maps,
    bla_modules,
    bla_parameters,
    freeze_all_but_bla,
)
from torchlap.models.lapify_refusals import check_changeable
from torchlap.models.lapify_sites import (
    DEFAULT_PROBE_SIZE,
    _dry_forward,
    _probe_input,
    _probe_shape,
    _reference_tensor,
    _set_child,
)
from torchlap.models.records import add_record_entry

__all__ = [
    "BLA_VARIANTS",
    "POOLS",
    "BlaMaps",
    "BoundedLogitAttention",
    "FeatureSelectionPool",
    "L2XFeatureSelection",
    "apply_blaify_config",
    "bla_maps",
    "bla_modules",
    "bla_parameters",
    "blaify",
    "freeze_all_but_bla",
]

logger = logging.getLogger(__name__)

BLA_VARIANTS = ("bla", "bla-t", "bla-ph", "l2x-f")
_THRESHOLDED = ("bla-t", "bla-ph")
#: the gamma_factor of records written before it was recorded (then the default, 0.98)
_LEGACY_GAMMA_FACTOR = 0.98

# ------------------------------------------------------------------------------- blaify


@dataclass
class _Site:
    """Where the BLA module goes: ``replace`` a pool module, or ``append`` to a container."""

    kind: str  # "replace" | "append"
    name: str  # the pool module's name, or the container's
    module: nn.Module  # the pool, or the container
    family: str = ""
    output_size: tuple[int, int] = (1, 1)

    @property
    def bla_name(self) -> str:
        if self.kind == "replace":
            return self.name
        return f"{self.name}.global_pool"


def _functional_pool_families() -> list[tuple[type, str, str]]:
    """(class, family, container) of the torchvision models that pool in ``forward``."""
    from torchvision.models import DenseNet, MNASNet, MobileNetV2, ShuffleNetV2

    return [
        (DenseNet, "DenseNet", "features"),
        (MobileNetV2, "MobileNetV2", "features"),
        (ShuffleNetV2, "ShuffleNetV2", "conv5"),
        (MNASNet, "MNASNet", "layers"),
    ]


def _adaptive_output(module: nn.AdaptiveAvgPool2d) -> tuple[Any, Any]:
    size = module.output_size
    if isinstance(size, int):
        return size, size
    return tuple(size)  # type: ignore[return-value]


def _is_global(module: nn.Module) -> bool:
    return isinstance(module, nn.AdaptiveAvgPool2d) and _adaptive_output(module) == (1, 1)


def _inside_squeeze_excitation(model: nn.Module) -> set[int]:
    from torchvision.ops import SqueezeExcitation

    inside: set[int] = set()
    for module in model.modules():
        if isinstance(module, SqueezeExcitation) or type(module).__name__ in (
            "SqueezeExcitation",
            "SEModule",
            "SqueezeExcite",
        ):
            inside.update(id(m) for m in module.modules())
    return inside


def _find_site(model: nn.Module, where: str | None, resize_head: bool) -> _Site:
    """The place of the BLA module (no change to the model)."""
    if where is not None:
        try:
            module = model.get_submodule(where)
        except AttributeError:
            raise ValueError(f"where={where!r}: the model has no such module") from None
        if not isinstance(module, nn.AdaptiveAvgPool2d):
            raise ValueError(
                f"where={where!r} is a {type(module).__name__}; blaify replaces an "
                "nn.AdaptiveAvgPool2d (the global average pool)"
            )
        return _pool_site(where, module, type(model).__name__, resize_head)
    for cls, family, container in _functional_pool_families():
        if type(model) is cls:
            features = getattr(model, container)
            if hasattr(features, "global_pool"):
                raise ValueError(
                    f"{family}: {container}.global_pool already exists (the model was made LAP "
                    "or BLA already); blaify needs the plain model"
                )
            return _Site("append", container, features, family)
    excluded = _inside_squeeze_excitation(model)
    pools = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.AdaptiveAvgPool2d) and id(m) not in excluded and n
    ]
    global_pools = [(n, m) for n, m in pools if _is_global(m)]
    if global_pools:
        name, module = global_pools[-1]
        return _Site("replace", name, module, type(model).__name__)
    if pools:
        name, module = pools[-1]
        return _pool_site(name, module, type(model).__name__, resize_head)
    raise ValueError(
        f"{type(model).__name__} has no global average pool: blaify replaces an "
        "nn.AdaptiveAvgPool2d with output size 1 (ResNet, RegNet, EfficientNet, MobileNetV3, "
        "ConvNeXt, Inception, GoogLeNet, SqueezeNet) or appends to the feature block of "
        "DenseNet, MobileNetV2, ShuffleNetV2 and MNASNet, which pool in forward(); pass "
        "where=<name of an nn.AdaptiveAvgPool2d> for other models"
    )


def _pool_site(name: str, module: nn.AdaptiveAvgPool2d, family: str, resize_head: bool) -> _Site:
    output = _adaptive_output(module)
    if output == (1, 1):
        return _Site("replace", name, module, family)
    if None in output:
        raise ValueError(f"{name} ({module}) keeps an input dimension: not a pool BLA can replace")
    if not resize_head:
        raise ValueError(
            f"{family}.{name} is {module}, not a global pool: the classifier flattens the "
            f"{output[0]}x{output[1]} grid (as VGG and AlexNet do). BLA replaces a global "
            "average pool (one weighted average over all positions, paper 002 section 3). Pass "
            "resize_head=True to also replace the first classifier nn.Linear(C*"
            f"{output[0] * output[1]}, d) by a fresh nn.Linear(C, d) (its weights are lost)"
        )
    return _Site("replace", name, module, family, (int(output[0]), int(output[1])))


def _probe_feature_shape(model: nn.Module, site: _Site, input_size: Any) -> tuple[int, ...]:
    """Shape of the feature map the BLA module will pool, from one dry forward pass.

    Eval mode, no grad, on a seeded random input; the hook is removed and every module's
    train/eval flag and every LAP layer's last maps restored whatever happens.
    """
    probe = _probe_input(model, input_size)  # the same input as lapify's probe
    seen: list[tuple[int, ...]] = []

    def pre_hook(_module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor):
            seen.append(tuple(args[0].shape))

    def post_hook(_module: nn.Module, _args: tuple, output: object) -> None:
        if isinstance(output, Tensor):
            seen.append(tuple(output.shape))

    with Hooks() as hooks, kept_training_flags(model):
        if site.kind == "replace":
            hooks.forward_pre(site.module, pre_hook)
        else:
            hooks.forward(site.module, post_hook)
        _dry_forward(model, probe, lambda: ", or in_channels=")  # as lapify's probe runs
    if not seen or len(seen[0]) != 4:
        raise ValueError(
            f"cannot tell the channels of the feature map at {site.name!r}: it did not see a "
            "(B, C, H, W) tensor in the dry forward pass"
        )
    return seen[0]


def _head_linear(model: nn.Module, site: _Site, channels: int) -> tuple[str, nn.Linear]:
    """The first ``nn.Linear`` after the pool that reads the flattened grid."""
    expected = channels * site.output_size[0] * site.output_size[1]
    after = False
    for name, module in model.named_modules():
        if module is site.module:
            after = True
            continue
        if after and isinstance(module, nn.Linear) and module.in_features == expected:
            return name, module
    raise ValueError(
        f"resize_head=True: found no nn.Linear with {expected} inputs after {site.name!r} to resize"
    )


def _make_module(
    variant: str,
    channels: int,
    options: dict[str, Any],
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> FeatureSelectionPool:
    if variant == "l2x-f":
        return L2XFeatureSelection(
            channels, k=options["k"], tau=options["tau"], eval_path=options["eval_path"],
            init=options["init"], device=device, dtype=dtype, pool=options["pool"],
        )  # fmt: skip
    factor = options["gamma_factor"]
    return BoundedLogitAttention(
        channels, theta=options["theta"], threshold=variant in _THRESHOLDED,
        gamma=options["gamma"], gamma_factor=1.0 if factor is None else factor,
        eval_path=options["eval_path"], init=options["init"], device=device, dtype=dtype,
        pool=options["pool"],
    )  # fmt: skip


def _placement(model: nn.Module, site: _Site) -> tuple[torch.device | None, torch.dtype | None]:
    """Device and dtype of the new module: those of the module it replaces, else the model's."""
    reference = _reference_tensor(site.module)
    if reference is None:
        reference = _reference_tensor(model)
    return (None, None) if reference is None else (reference.device, reference.dtype)


def _check_blaify_args(
    model: object,
    variant: object,
    gamma: object,
    k: object,
    where: object,
    in_channels: object,
    resize_head: object,
    inplace: object,
) -> None:
    """The arguments of :func:`blaify` (before any work; the module checks its own options)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if variant not in BLA_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {BLA_VARIANTS}")
    if gamma is not None and variant not in _THRESHOLDED:
        raise ValueError(f"gamma is the threshold of 'bla-t'/'bla-ph', not of {variant!r}")
    for flag, label in ((resize_head, "resize_head"), (inplace, "inplace")):
        if not isinstance(flag, bool):
            raise TypeError(f"{label} must be a bool, got {flag!r}")
    if where is not None and not isinstance(where, str):
        raise TypeError(f"where must be a module name (str) or None, got {where!r}")
    if in_channels is not None:
        check_positive_int(in_channels, "in_channels")
    if k == "auto" and variant != "l2x-f":
        raise ValueError(f"k='auto' is the selection size of 'l2x-f', not of {variant!r}")
    # used by 'l2x-f' only, but a value that no variant takes is refused whatever the variant
    if k != "auto":
        check_positive_int(k, "k")


def _check_gamma_factor(variant: object, gamma: object, gamma_factor: object) -> float | None:
    """``gamma_factor``: None, or a finite float > 0 for 'bla-t'/'bla-ph' without ``gamma``.

    Returns the factor to use: the paper's 1.0 (``gamma = 1/n``, section 3.1) for None with a
    thresholded variant and no ``gamma``, else ``gamma_factor``.
    """
    if gamma_factor is None:
        return 1.0 if gamma is None and variant in _THRESHOLDED else None
    if variant not in _THRESHOLDED:
        raise ValueError(f"gamma_factor sets the threshold of 'bla-t'/'bla-ph', not of {variant!r}")
    if gamma is not None:
        raise ValueError(
            "pass gamma (the threshold) or gamma_factor (the threshold gamma_factor / n for n "
            "positions), not both"
        )
    return check_positive_float(gamma_factor, "gamma_factor")


def _check_model(model: nn.Module, input_size: Any) -> None:
    """A model blaify can change, a valid ``input_size`` for the probe, and no BLA/L2X-F
    module in ``model`` yet."""
    check_changeable(model, "blaify")
    if input_size is not None:
        _probe_shape(model, input_size)
    existing = bla_modules(model)
    if existing:
        raise ValueError(f"the model already has a BLA/L2X-F module at {list(existing)}")


def _fresh_head(model: nn.Module, site: _Site, channels: int) -> tuple[str, nn.Linear] | None:
    """``(name, new Linear(channels, d))`` for the head after a non-global pool, else None."""
    if site.output_size == (1, 1):
        return None
    head_name, linear = _head_linear(model, site, channels)
    fresh = nn.Linear(
        channels, linear.out_features, bias=linear.bias is not None,
        device=linear.weight.device, dtype=linear.weight.dtype,
    )  # fmt: skip
    return head_name, fresh


def _insert(
    model: nn.Module, site: _Site, module: nn.Module, head: tuple[str, nn.Linear] | None
) -> None:
    """Put the built BLA module (and the resized head) into ``model`` at ``site``."""
    module.train(site.module.training)
    if site.kind == "replace":
        _set_child(model, site.name, module)
    else:
        if site.family == "DenseNet":
            # DenseNet.forward is relu -> adaptive_avg_pool2d: pool the relu'd map; the later
            # relu and 1x1 average are identities on the (non-negative) pooled vector.
            site.module.add_module("relu_final", nn.ReLU(inplace=False))
        site.module.add_module("global_pool", module)
    if head is not None:
        _set_child(model, head[0], head[1])
        logger.warning("blaify: %s replaced by a fresh %s", head[0], head[1])


def blaify(
    model: nn.Module,
    variant: str = "bla",
    theta: float = 0.1,
    gamma: float | None = None,
    k: int | str = 8,
    tau: float = 10.0,
    where: str | None = None,
    in_channels: int | None = None,
    input_size: int | Sequence[int] | None = None,
    eval_path: str = "hard",
    init: str = "glorot",
    resize_head: bool = False,
    inplace: bool = True,
    pool: str = "sum",
    gamma_factor: float | None = None,
) -> tuple[nn.Module, list[str]]:
    """Put an explanation module in place of the global average pool (paper 002, section 3).

    ``variant``: ``"bla"`` (Eq. 1), ``"bla-t"`` (thresholded with ``gamma``, default
    ``gamma_factor / n`` for the ``n`` positions of the feature map; ``gamma_factor``, a float
    > 0 for these two variants only, defaults to 1.0, the paper's ``1/n``, and section 4.2's
    experiments used 0.98), ``"bla-ph"`` (BLA-T with every other parameter frozen) or
    ``"l2x-f"`` (fixed size ``k``, Gumbel-softmax temperature ``tau``; ``k="auto"`` keeps the
    paper's share, 8 of the 7x7 = 49 positions, on the model's feature map at ``input_size``:
    ``max(1, round(8 n / 49))`` of its ``n`` positions, so 8 at 224 px and 1 of 2x2 at 64 px).
    ``pool``: the training pooling of BLA-T/BLA-PH and L2X-F, ``"sum"`` (the authors' code,
    default) or ``"normalized"`` (see the module docstring). ``tau=10`` is the authors' ``* 0.1``.
    Returns ``(model, [name of the new module])``; see the module docstring for where it goes
    in each torchvision family, VGG's ``resize_head`` and the initialisation (``init="glorot"``,
    the paper's, default; ``init="zeros"``: the new model computes exactly what the old one did
    until the scorer learns).

    ``where`` names the ``nn.AdaptiveAvgPool2d`` to replace (default: found automatically).
    The channel count comes from ``in_channels`` or one dry forward pass on an input of
    ``input_size`` (default 224). Everything is checked and built before the model is touched;
    ``inplace=False`` works on a deep copy. The settings are recorded, JSON-serialisable, in
    ``model.torchlap_config["blaify"]`` (merged into an existing config) for
    :func:`apply_blaify_config`.
    """
    _check_blaify_args(model, variant, gamma, k, where, in_channels, resize_head, inplace)
    check_positive_float(tau, "tau")  # as k: checked for every variant
    gamma_factor = _check_gamma_factor(variant, gamma, gamma_factor)
    auto_k = k == "auto"
    options = {
        "theta": theta, "gamma": gamma, "k": 8 if auto_k else k, "tau": tau,
        "eval_path": eval_path, "init": init, "pool": pool, "gamma_factor": gamma_factor,
    }  # fmt: skip
    _make_module(variant, 1, options)  # the module's own checks, before any work
    _check_model(model, input_size)
    if not inplace:
        model = copy.deepcopy(model)
    site = _find_site(model, where, resize_head)
    shape: tuple[int, ...] | None = None
    if in_channels is None or site.output_size != (1, 1) or auto_k:
        shape = _probe_feature_shape(model, site, input_size)
        channels = shape[1]
        if in_channels is not None and in_channels != channels:
            raise ValueError(
                f"in_channels={in_channels} but the feature map at {site.name!r} has {channels}"
            )
    else:
        channels = in_channels
    if auto_k and shape is not None:
        options["k"] = k = max(1, round(8 * shape[-2] * shape[-1] / 49))
    if variant == "l2x-f" and shape is not None and shape[-2] * shape[-1] < k:
        raise ValueError(
            f"L2X-F selects k={k} positions but the {site.name!r} feature map has "
            f"{shape[-2]}x{shape[-1]} at input_size {input_size or DEFAULT_PROBE_SIZE}: use a "
            "smaller k or a larger input"
        )
    module = _make_module(variant, channels, options, *_placement(model, site))
    head = _fresh_head(model, site, channels)  # (after the module: the same RNG draws)
    # ----- all checks passed and everything is built: change the model
    _insert(model, site, module, head)
    trainable = freeze_all_but_bla(model) if variant == "bla-ph" else None
    _record(model, variant, site, where, channels, options, input_size, resize_head, head)
    logger.info("blaify: %s at %s (trainable: %s)", variant, site.bla_name, trainable or "all")
    return model, [site.bla_name]


def _record(
    model: nn.Module,
    variant: str,
    site: _Site,
    where: str | None,
    channels: int,
    options: dict[str, Any],
    input_size: Any,
    resize_head: bool,
    head: tuple[str, nn.Linear] | None,
) -> None:
    factor = options["gamma_factor"]
    entry = {
        "variant": variant,
        "module_name": site.bla_name,
        "where": where,
        "in_channels": channels,
        "theta": float(options["theta"]),
        "gamma": None if options["gamma"] is None else float(options["gamma"]),
        "gamma_factor": None if factor is None else float(factor),
        "k": int(options["k"]),
        "tau": float(options["tau"]),
        "pool": options["pool"],
        "eval_path": options["eval_path"],
        "init": options["init"],
        "input_size": list(input_size) if isinstance(input_size, Sequence) else input_size,
        "resize_head": resize_head,
        "resized_head": None if head is None else head[0],
        "frozen": variant == "bla-ph",
    }
    add_record_entry(model, "blaify", entry)


def apply_blaify_config(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Replay a recorded ``blaify`` call (``model.torchlap_config["blaify"]``) on a fresh model.

    The channel count is taken from the record (no dry forward pass); load the weights after.
    A BLA-T/BLA-PH record without ``gamma_factor`` (written when the default was 0.98 / n)
    replays with 0.98.
    """
    if not isinstance(entry, dict) or "variant" not in entry:
        raise ValueError("entry must be the dict blaify recorded in torchlap_config['blaify']")
    legacy = entry["variant"] in _THRESHOLDED and entry.get("gamma") is None
    blaify(
        model, variant=entry["variant"], theta=entry["theta"], gamma=entry["gamma"],
        k=entry["k"], tau=entry["tau"], where=entry.get("where"),
        in_channels=entry["in_channels"], input_size=entry.get("input_size"),
        eval_path=entry["eval_path"], init=entry["init"], resize_head=entry["resize_head"],
        pool=entry.get("pool", "normalized"),  # records without "pool" predate the sum pooling
        gamma_factor=entry.get("gamma_factor", _LEGACY_GAMMA_FACTOR if legacy else None),
    )  # fmt: skip
    return model
