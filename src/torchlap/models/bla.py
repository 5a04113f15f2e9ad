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
  ``gamma`` defaults to ``0.98 / n`` (section 4.2); as ``max_i q_i >= 1/n > gamma`` at least
  one position always survives. For a user ``gamma >= 1/n`` an empty set falls back to ``q``.
  The threshold only changes training; the hard explanation is the same ``delta`` as BLA's.
- **BLA-PH** is BLA-T with every other parameter frozen ("the same setup as BLA-T, but with
  frozen heads L", section 4.2).
- **Initialisation.** The scorer starts at zero (``init="zeros"``): every logit is 0, ``q`` is
  uniform and ``delta`` selects every position, so the module computes exactly the global
  average pool it replaces (a trained model keeps its outputs at insertion, as LAP does). The
  paper initialises new parameters Glorot-uniform: ``init="glorot"``.
- **L2X-F** (section 3.3, Chen et al. 2018 at feature level): inclusion logits from a 1x1
  convolution; training draws ``k`` Gumbel-softmax samples over the positions and takes their
  element-wise maximum as the relaxed k-hot mask ``m``; evaluation keeps the ``k`` positions of
  largest logit and pools their mean ``1/k sum_{i in top-k} f_i`` (the paper's
  ``v = 1/|delta|_1 sum_i delta_i f_i``). Training follows the authors' code: each sample is
  ``softmax((l + G^j) * 0.1)`` (temperature ``tau = 10``, which divides) and the relaxed mask
  sum-pools ``v = sum_i m_i f_i`` without normalising (``pool="sum"``); ``pool="normalized"``
  pools ``sum_i m_i f_i / sum_i m_i`` (torchlap's earlier rule, with ``tau=0.5``).

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

Faithfulness (section 4.3): :func:`lime_spearman` and :func:`bla_lime_faithfulness` compute the
Spearman rank correlation between LIME scores of 32x32 patches (captum ``Lime``) and an
explanation map (BLA-T's soft explanation, Grad-CAM) averaged over the same patches.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # torchlap.metrics loads torchmetrics: imported where it is used
    from torchlap.metrics._common import MetricResult

__all__ = [
    "BLA_VARIANTS",
    "POOLS",
    "BlaMaps",
    "BoundedLogitAttention",
    "FeatureSelectionPool",
    "L2XFeatureSelection",
    "apply_blaify_config",
    "bla_lime_faithfulness",
    "bla_maps",
    "bla_modules",
    "bla_parameters",
    "blaify",
    "freeze_all_but_bla",
    "lime_patch_scores",
    "lime_spearman",
    "patch_feature_mask",
    "patch_means",
    "spearman_correlation",
]

logger = logging.getLogger(__name__)

BLA_VARIANTS = ("bla", "bla-t", "bla-ph", "l2x-f")
DEFAULT_PROBE_SIZE = 224
_INITS = ("zeros", "glorot")
#: training-time pooling of BLA-T and L2X-F: the authors' raw sum, or renormalised weights
POOLS = ("sum", "normalized")


def _check_pool(pool: object) -> str:
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return str(pool)


# ------------------------------------------------------------------------------------ modules


@dataclass
class BlaMaps:
    """The maps an explanation pool left in its last forward pass (feature-map resolution).

    ``soft``: the soft explanation ``q(i|f)`` (B, 1, H, W), summing to 1 over positions (for
    L2X-F: the inclusion probabilities ``softmax(l)``).
    ``hard``: the discrete explanation ``delta`` (B, 1, H, W), bool (L2X-F: the top-k set).
    ``logits``: the logits ``l`` (B, 1, H, W) (BLA: bounded, ``<= 0``).
    ``weights``: the pooling weights this pass used (B, 1, H, W), summing to 1 over positions.
    """

    soft: Tensor
    hard: Tensor
    logits: Tensor
    weights: Tensor

    def detach(self) -> BlaMaps:
        """A copy whose tensors are cut from the autograd graph."""
        return BlaMaps(
            self.soft.detach(), self.hard.detach(), self.logits.detach(), self.weights.detach()
        )

    def as_dict(self) -> dict[str, Tensor]:
        """``{"soft", "hard", "logits", "weights"}``."""
        return {
            "soft": self.soft,
            "hard": self.hard,
            "logits": self.logits,
            "weights": self.weights,
        }


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_positive_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


class FeatureSelectionPool(nn.Module):
    """Base of the explanation pools (BLA, L2X-F): a 1x1-convolution scorer over the feature
    map, a pooling to ``(B, C, 1, 1)``, and the maps of the last pass in ``self.maps``.

    ``eval_path`` chooses the pooling used when the module is in eval mode (``"hard"``: the
    discrete explanation, as the paper evaluates; ``"mean"``: the plain global average, i.e.
    the original model predicts and the module only explains, the purely post-hoc use of
    section 3.2). In train mode the relaxed (soft) explanation pools.
    """

    eval_paths: tuple[str, ...] = ("hard", "mean")
    maps: BlaMaps | None

    def __init__(
        self,
        in_channels: int,
        eval_path: str = "hard",
        init: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        if eval_path not in self.eval_paths:
            raise ValueError(
                f"unknown eval_path {eval_path!r} for {type(self).__name__}; expected one of "
                f"{self.eval_paths}"
            )
        if init not in _INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {_INITS}")
        self.in_channels = in_channels
        self.eval_path = eval_path
        self.init = init
        self.scorer = nn.Conv2d(in_channels, 1, kernel_size=1, device=device, dtype=dtype)
        if init == "zeros":
            nn.init.zeros_(self.scorer.weight)
        else:
            nn.init.xavier_uniform_(self.scorer.weight)
        nn.init.zeros_(self.scorer.bias)
        self.maps = None

    def clear_maps(self) -> None:
        """Forget the maps of the last pass."""
        self.maps = None

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects (B, C, H, W) input, got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_channels} channels, got an input "
                f"with {x.shape[1]} channels (shape {tuple(x.shape)})"
            )

    def _scores(self, x: Tensor) -> Tensor:
        """``g_i = u^T f_i + b`` for every position: (B, n)."""
        return self.scorer(x).flatten(1)

    @staticmethod
    def _pool(x: Tensor, weights: Tensor) -> Tensor:
        """``v = sum_i w_i f_i`` as one batched matmul: (B, C, 1, 1)."""
        pooled = torch.bmm(x.flatten(2), weights.unsqueeze(2).to(x.dtype))
        return pooled.unsqueeze(-1)

    def _store(self, x: Tensor, soft: Tensor, hard: Tensor, logits: Tensor, weights: Tensor):
        shape = (x.shape[0], 1, x.shape[-2], x.shape[-1])
        self.maps = BlaMaps(
            soft.reshape(shape), hard.reshape(shape), logits.reshape(shape), weights.reshape(shape)
        )


class BoundedLogitAttention(FeatureSelectionPool):
    """Bounded logit attention (paper 002, section 3.1), a drop-in for the global average pool.

    ``l = min(u^T f + b, 0)``, ``q = softmax(theta * l)`` over the ``n`` positions; train mode
    pools ``v = sum_i q_i f_i`` (Eq. 1), or with ``threshold=True`` (BLA-T) the soft-thresholded
    weights ``relu(q - gamma)`` (the differentiable form of Eq. 2 of the authors' code, see the
    module docstring), sum-pooled (``pool="sum"``) or renormalised (``"normalized"``); eval mode
    pools the hard explanation ``delta_i = 1 iff l_i = max_j l_j`` (= ``l_i
    = 0`` whenever a logit reaches the bound) as ``v = 1/|delta| sum_i delta_i f_i``.

    Args:
        in_channels: channels ``C`` of the feature map.
        theta: the softmax temperature (multiplies the logits), 0.1 in the paper.
        threshold: BLA-T's thresholding during training.
        gamma: the threshold; ``None`` is ``gamma_factor / n`` for ``n`` positions of the input.
        gamma_factor: 0.98 in the paper (``gamma = 0.98 / 49`` for a 7x7 map).
        pool: BLA-T's training pooling, ``"sum"`` (the authors' code) or ``"normalized"``.
        eval_path: ``"hard"`` (default), ``"soft"`` (``q`` or the thresholded weights, as in
            training) or ``"mean"`` (the plain average; the module only explains).
        init: ``"zeros"`` (starts as the exact average pool) or ``"glorot"`` (the paper's).
    """

    eval_paths = ("hard", "soft", "mean")

    def __init__(
        self,
        in_channels: int,
        theta: float = 0.1,
        threshold: bool = False,
        gamma: float | None = None,
        gamma_factor: float = 0.98,
        eval_path: str = "hard",
        init: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pool: str = "sum",
    ) -> None:
        super().__init__(in_channels, eval_path, init, device, dtype)
        self.pool = _check_pool(pool)
        self.theta = _check_positive_float(theta, "theta")
        if not isinstance(threshold, bool):
            raise TypeError(f"threshold must be a bool, got {threshold!r}")
        if gamma is not None:
            gamma = _check_positive_float(gamma, "gamma")
            if gamma >= 1:
                raise ValueError(f"gamma must lie in (0, 1) (a softmax weight), got {gamma}")
            if not threshold:
                raise ValueError("gamma is BLA-T's threshold: pass threshold=True with it")
        self.threshold = threshold
        self.gamma = gamma
        self.gamma_factor = _check_positive_float(gamma_factor, "gamma_factor")

    @property
    def variant(self) -> str:
        """``"bla-t"`` with thresholding, else ``"bla"``."""
        return "bla-t" if self.threshold else "bla"

    def gamma_for(self, n_positions: int) -> float:
        """The threshold used for a feature map of ``n_positions`` positions."""
        return self.gamma if self.gamma is not None else self.gamma_factor / n_positions

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x`` (B, C, H, W) to (B, C, 1, 1); leaves this pass's maps in ``self.maps``."""
        self._check_input(x)
        scores = self._scores(x)
        # beta(g) = min(g, 0), written g - relu(g): clamp() has zero gradient at g = 0, which
        # would freeze the zero-initialised scorer; this form has gradient 1 for g <= 0
        logits = scores - torch.relu(scores)
        soft = torch.softmax(self.theta * logits, dim=1)
        hard = logits == logits.amax(dim=1, keepdim=True)
        path = "soft" if self.training else self.eval_path
        if path == "soft":
            weights = soft
            if self.threshold:
                shrunk = torch.relu(soft - self.gamma_for(soft.shape[1]))
                total = shrunk.sum(dim=1, keepdim=True)
                if self.pool == "normalized":
                    shrunk = shrunk / total.clamp_min(1e-30)
                weights = torch.where(total > 0, shrunk, soft)
        elif path == "hard":
            mask = hard.to(soft.dtype)
            weights = mask / mask.sum(dim=1, keepdim=True)
        else:
            weights = torch.full_like(soft, 1.0 / soft.shape[1])
        self._store(x, soft, hard, logits, weights)
        return self._pool(x, weights)

    def extra_repr(self) -> str:
        gamma = (
            ""
            if not self.threshold
            else f", gamma={self.gamma or f'{self.gamma_factor}/n'}, pool={self.pool!r}"
        )
        return (
            f"{self.in_channels}, theta={self.theta}, threshold={self.threshold}{gamma}, "
            f"eval_path={self.eval_path!r}"
        )


class L2XFeatureSelection(FeatureSelectionPool):
    """L2X at feature level (L2X-F, paper 002 section 3.3; Chen et al. 2018): fixed-size
    instance-wise selection of ``k`` feature positions.

    Train mode: inclusion logits ``l = u^T f + b``; ``k`` independent Gumbel-softmax samples
    ``c^j = softmax((l + G^j) / tau)`` over the positions (``torch.nn.functional.gumbel_softmax``;
    ``log softmax(l)`` and ``l`` differ by a constant that the softmax cancels); the relaxed
    k-hot mask ``m_i = max_j c^j_i``; ``v = sum_i m_i f_i`` (``pool="sum"``) or
    ``sum_i m_i f_i / sum_i m_i`` (``pool="normalized"``). Eval mode: the ``k`` positions of
    largest logit, ``v = 1/k sum_{i in top-k} f_i``.

    ``tau`` is the Gumbel-softmax temperature (divides). The defaults ``tau=10``, ``pool="sum"``
    are the BLA authors' code (github.com/th-b/bla: ``softmax((G + l) * 0.1)``, sum pooling);
    torchlap used ``tau=0.5`` (the lowest temperature of Jang et al.'s annealing schedule) with
    ``pool="normalized"`` before.
    """

    def __init__(
        self,
        in_channels: int,
        k: int = 8,
        tau: float = 10.0,
        eval_path: str = "hard",
        init: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pool: str = "sum",
    ) -> None:
        super().__init__(in_channels, eval_path, init, device, dtype)
        self.k = _check_positive_int(k, "k")
        self.tau = _check_positive_float(tau, "tau")
        self.pool = _check_pool(pool)

    variant = "l2x-f"

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x`` (B, C, H, W) to (B, C, 1, 1); leaves this pass's maps in ``self.maps``."""
        self._check_input(x)
        logits = self._scores(x)
        n = logits.shape[1]
        if self.k > n:
            raise ValueError(
                f"L2X-F selects k={self.k} positions but the feature map has only {n} "
                f"({x.shape[-2]}x{x.shape[-1]}): use a larger input or a smaller k"
            )
        top = logits.topk(self.k, dim=1).indices
        hard = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top, True)
        soft = torch.softmax(logits, dim=1)
        if self.training:
            repeated = logits.unsqueeze(1).expand(-1, self.k, -1)  # (B, k, n): k draws
            # Gumbel(0, 1) noise as torch.nn.functional.gumbel_softmax draws it, one tensor
            gumbels = -torch.empty_like(repeated).exponential_().log()
            samples = torch.softmax((repeated + gumbels) / self.tau, dim=-1)
            mask = samples.amax(dim=1)
            weights = mask / mask.sum(dim=1, keepdim=True) if self.pool == "normalized" else mask
        elif self.eval_path == "hard":
            weights = hard.to(logits.dtype) / self.k
        else:
            weights = torch.full_like(logits, 1.0 / n)
        self._store(x, soft, hard, logits, weights)
        return self._pool(x, weights)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, k={self.k}, tau={self.tau}, pool={self.pool!r}, "
            f"eval_path={self.eval_path!r}"
        )


# -------------------------------------------------------------------------- model accessors


def bla_modules(model: nn.Module) -> dict[str, FeatureSelectionPool]:
    """Every BLA / L2X-F module of ``model`` by qualified name, in registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, FeatureSelectionPool)}


def _one_module(model: nn.Module, name: str | None) -> tuple[str, FeatureSelectionPool]:
    modules = bla_modules(model)
    if not modules:
        raise ValueError("the model has no BLA/L2X-F module; put one in with torchlap.blaify")
    if name is not None:
        if name not in modules:
            raise ValueError(f"no BLA/L2X-F module named {name!r}; the model has {list(modules)}")
        return name, modules[name]
    if len(modules) > 1:
        raise ValueError(f"the model has several BLA/L2X-F modules {list(modules)}: pass name=")
    return next(iter(modules.items()))


def bla_maps(model: nn.Module, name: str | None = None, detach: bool = True) -> dict[str, Tensor]:
    """The maps the model's BLA (or L2X-F) module left in the last forward pass.

    Returns ``{"soft", "hard", "logits", "weights"}``, each (B, 1, H, W) at the feature-map
    resolution (see :class:`BlaMaps`). ``name`` picks the module when there are several;
    ``detach=False`` keeps the autograd graph.
    """
    module_name, module = _one_module(model, name)
    if module.maps is None:
        raise ValueError(f"the module {module_name!r} has no maps yet: run a forward pass first")
    maps = module.maps.detach() if detach else module.maps
    return maps.as_dict()


def bla_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of every BLA / L2X-F module of ``model`` (the explanation module ``Q``)."""
    found: dict[int, nn.Parameter] = {}
    for module in bla_modules(model).values():
        for parameter in module.parameters():
            found.setdefault(id(parameter), parameter)
    return list(found.values())


def freeze_all_but_bla(model: nn.Module) -> list[str]:
    """BLA-PH (paper 002, section 3.2/4.2): only the explanation module's parameters train.

    Sets ``requires_grad``; returns the names of the trainable parameters. BatchNorm running
    statistics still update in train mode: put the frozen part in eval mode if they must not.
    """
    ids = {id(p) for p in bla_parameters(model)}
    if not ids:
        raise ValueError("the model has no BLA/L2X-F module; put one in with torchlap.blaify")
    trainable = []
    for name, parameter in model.named_parameters():
        keep = id(parameter) in ids
        parameter.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


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


def _reference_tensor(model: nn.Module) -> Tensor | None:
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor
    return None


def _probe_size(model: nn.Module, input_size: Any) -> tuple[int, int, int]:
    """(C, H, W) of the probe input: the same rule as lapify's probe."""
    from torchlap.models.lapify import _probe_shape

    return _probe_shape(model, input_size)


def _probe_feature_shape(model: nn.Module, site: _Site, input_size: Any) -> tuple[int, ...]:
    """Shape of the feature map the BLA module will pool, from one dry forward pass.

    Eval mode, no grad, on a seeded random input; the hook is removed and every module's
    train/eval flag restored whatever happens.
    """
    shape = _probe_size(model, input_size)
    reference = _reference_tensor(model)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((1, *shape), generator=generator)
    if reference is not None:
        probe = probe.to(device=reference.device, dtype=reference.dtype)
    seen: list[tuple[int, ...]] = []

    def pre_hook(_module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor):
            seen.append(tuple(args[0].shape))

    def post_hook(_module: nn.Module, _args: tuple, output: object) -> None:
        if isinstance(output, Tensor):
            seen.append(tuple(output.shape))

    flags = {module: module.training for module in model.modules()}
    if site.kind == "replace":
        handle = site.module.register_forward_pre_hook(pre_hook)
    else:
        handle = site.module.register_forward_hook(post_hook)
    try:
        model.eval()
        with torch.no_grad():
            try:
                model(probe)
            except Exception as error:
                raise ValueError(
                    f"the dry forward pass on a probe input of shape {tuple(probe.shape)} failed "
                    f"({type(error).__name__}: {error}); pass input_size= a size the model "
                    "accepts, or in_channels="
                ) from error
    finally:
        handle.remove()
        for module, training in flags.items():
            module.training = training
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
    return BoundedLogitAttention(
        channels, theta=options["theta"], threshold=variant in ("bla-t", "bla-ph"),
        gamma=options["gamma"], eval_path=options["eval_path"], init=options["init"],
        device=device, dtype=dtype, pool=options["pool"],
    )  # fmt: skip


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


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
    init: str = "zeros",
    resize_head: bool = False,
    inplace: bool = True,
    pool: str = "sum",
) -> tuple[nn.Module, list[str]]:
    """Put an explanation module in place of the global average pool (paper 002, section 3).

    ``variant``: ``"bla"`` (Eq. 1), ``"bla-t"`` (thresholded with ``gamma``, default
    ``0.98 / n``), ``"bla-ph"`` (BLA-T with every other parameter frozen, section 4.2) or
    ``"l2x-f"`` (fixed size ``k``, Gumbel-softmax temperature ``tau``; ``k="auto"`` keeps the
    paper's share, 8 of the 7x7 = 49 positions, on the model's feature map at ``input_size``:
    ``max(1, round(8 n / 49))`` of its ``n`` positions, so 8 at 224 px and 1 of 2x2 at 64 px).
    ``pool``: the training pooling of BLA-T/BLA-PH and L2X-F, ``"sum"`` (the authors' code,
    default) or ``"normalized"`` (see the module docstring). ``tau=10`` is the authors' ``* 0.1``.
    Returns
    ``(model, [name of the new module])``; see the module docstring for where it goes in each
    torchvision family, VGG's ``resize_head`` and the initialisation (``init="zeros"``: the new
    model computes exactly what the old one did until the scorer learns).

    ``where`` names the ``nn.AdaptiveAvgPool2d`` to replace (default: found automatically).
    The channel count comes from ``in_channels`` or one dry forward pass on an input of
    ``input_size`` (default 224). Everything is checked and built before the model is touched;
    ``inplace=False`` works on a deep copy. The settings are recorded, JSON-serialisable, in
    ``model.torchlap_config["blaify"]`` (merged into an existing config) for
    :func:`apply_blaify_config`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if variant not in BLA_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {BLA_VARIANTS}")
    if gamma is not None and variant not in ("bla-t", "bla-ph"):
        raise ValueError(f"gamma is the threshold of 'bla-t'/'bla-ph', not of {variant!r}")
    for flag, label in ((resize_head, "resize_head"), (inplace, "inplace")):
        if not isinstance(flag, bool):
            raise TypeError(f"{label} must be a bool, got {flag!r}")
    if where is not None and not isinstance(where, str):
        raise TypeError(f"where must be a module name (str) or None, got {where!r}")
    if in_channels is not None:
        _check_positive_int(in_channels, "in_channels")
    auto_k = k == "auto"
    if auto_k and variant != "l2x-f":
        raise ValueError(f"k='auto' is the selection size of 'l2x-f', not of {variant!r}")
    options = {
        "theta": theta, "gamma": gamma, "k": 8 if auto_k else k, "tau": tau,
        "eval_path": eval_path, "init": init, "pool": pool,
    }  # fmt: skip
    _make_module(variant, 1, options)  # the module's own checks, before any work
    if input_size is not None:
        _probe_size(model, input_size)
    existing = bla_modules(model)
    if existing:
        raise ValueError(f"the model already has a BLA/L2X-F module at {list(existing)}")
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
    reference = _reference_tensor(site.module)
    if reference is None:
        reference = _reference_tensor(model)
    device = reference.device if reference is not None else None
    dtype = reference.dtype if reference is not None else None
    module = _make_module(variant, channels, options, device, dtype)
    head: tuple[str, nn.Linear] | None = None
    if site.output_size != (1, 1):
        head_name, linear = _head_linear(model, site, channels)
        fresh = nn.Linear(
            channels, linear.out_features, bias=linear.bias is not None,
            device=linear.weight.device, dtype=linear.weight.dtype,
        )  # fmt: skip
        head = (head_name, fresh)
    # ----- all checks passed and everything is built: change the model
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
    entry = {
        "variant": variant,
        "module_name": site.bla_name,
        "where": where,
        "in_channels": channels,
        "theta": float(options["theta"]),
        "gamma": None if options["gamma"] is None else float(options["gamma"]),
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
    config = getattr(model, "torchlap_config", None)
    config = copy.deepcopy(config) if isinstance(config, dict) else {}
    config["blaify"] = entry
    model.torchlap_config = config


def apply_blaify_config(model: nn.Module, entry: dict[str, Any]) -> nn.Module:
    """Replay a recorded ``blaify`` call (``model.torchlap_config["blaify"]``) on a fresh model.

    The channel count is taken from the record (no dry forward pass); load the weights after.
    """
    if not isinstance(entry, dict) or "variant" not in entry:
        raise ValueError("entry must be the dict blaify recorded in torchlap_config['blaify']")
    blaify(
        model, variant=entry["variant"], theta=entry["theta"], gamma=entry["gamma"],
        k=entry["k"], tau=entry["tau"], where=entry.get("where"),
        in_channels=entry["in_channels"], input_size=entry.get("input_size"),
        eval_path=entry["eval_path"], init=entry["init"], resize_head=entry["resize_head"],
        pool=entry.get("pool", "normalized"),  # records without "pool" predate the sum pooling
    )  # fmt: skip
    return model


# ------------------------------------------------------------------ faithfulness (section 4.3)


def spearman_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation of each row pair of ``a``, ``b`` (N, n): (N,).

    Ties get their average rank (as ``scipy.stats.spearmanr``); a row whose ranks are constant
    has no correlation: ``nan``. Ranks come from pairwise comparisons (O(n^2) per row; ``n`` is a
    number of patches here), batched on the tensors' device.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("a and b must be tensors")
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (N, n), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] < 2:
        raise ValueError(f"a rank correlation needs at least 2 values per row, got {a.shape[1]}")
    ranks_a = _average_ranks(a.to(torch.float64))
    ranks_b = _average_ranks(b.to(torch.float64))
    ranks_a = ranks_a - ranks_a.mean(dim=1, keepdim=True)
    ranks_b = ranks_b - ranks_b.mean(dim=1, keepdim=True)
    numerator = (ranks_a * ranks_b).sum(dim=1)
    denominator = (ranks_a.square().sum(dim=1) * ranks_b.square().sum(dim=1)).sqrt()
    nan = torch.full_like(numerator, float("nan"))
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), nan)


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks, ties averaged: ``#{j: x_j < x_i} + (#{j: x_j = x_i} + 1) / 2``."""
    less = (x.unsqueeze(1) < x.unsqueeze(2)).sum(dim=2)
    equal = (x.unsqueeze(1) == x.unsqueeze(2)).sum(dim=2)
    return less.to(x.dtype) + (equal.to(x.dtype) + 1) / 2


def patch_feature_mask(
    height: int, width: int, patch: int, device: torch.device | str | None = None
) -> Tensor:
    """(H, W) long tensor of patch indices, row-major over a grid of ``patch`` x ``patch``
    squares (the last row/column of patches is smaller when ``patch`` does not divide the size).
    """
    _check_positive_int(patch, "patch")
    columns = -(-width // patch)
    rows = torch.arange(height, device=device) // patch
    cols = torch.arange(width, device=device) // patch
    return rows[:, None] * columns + cols[None, :]


def patch_means(maps: Tensor, image_size: Sequence[int], patch: int) -> Tensor:
    """Average explanation maps ``(B, h, w)`` over the patches of an image of ``image_size``.

    Maps already at the patch-grid resolution (e.g. a 7x7 BLA map for 32x32 patches of a 224
    image) are used as they are; other maps are resized to ``image_size`` (bilinear,
    ``align_corners=False``, torchlap's shared upsampling) and averaged per patch.
    Returns (B, n_patches), patches row-major.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be (B, h, w), got {shape}")
    height, width = int(image_size[0]), int(image_size[1])
    _check_positive_int(patch, "patch")
    grid = (-(-height // patch), -(-width // patch))
    maps = maps.float() if not maps.is_floating_point() else maps
    if tuple(maps.shape[-2:]) == grid:
        return maps.flatten(1)
    if tuple(maps.shape[-2:]) != (height, width):
        maps = F.interpolate(
            maps.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
        )[:, 0]
    ids = patch_feature_mask(height, width, patch, maps.device).flatten()
    n_patches = grid[0] * grid[1]
    sums = maps.new_zeros(maps.shape[0], n_patches).index_add_(1, ids, maps.flatten(1))
    counts = torch.bincount(ids, minlength=n_patches).to(maps.dtype)
    return sums / counts


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got {shape}")


def _resolve_target(model: nn.Module, images: Tensor, target: int | Tensor | None) -> Tensor:
    batch = images.shape[0]
    if target is None:
        with torch.no_grad():
            logits = model(images)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise TypeError("the model must return class scores of shape (B, n_classes)")
        return logits.argmax(dim=1)
    if isinstance(target, int) and not isinstance(target, bool):
        return torch.full((batch,), target, dtype=torch.long, device=images.device)
    if isinstance(target, Tensor) and target.dim() <= 1 and not target.is_floating_point():
        target = target.reshape(-1).to(device=images.device, dtype=torch.long)
        if target.numel() == 1:
            return target.expand(batch).clone()
        if target.numel() == batch:
            return target
    raise ValueError(f"target must be None, an int or {batch} class indices, got {target!r}")


class _EvalMode:
    """Context: every module of ``model`` in eval mode, flags restored on exit (also on error)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: dict[nn.Module, bool] = {}

    def __enter__(self) -> nn.Module:
        self.flags = {m: m.training for m in self.model.modules()}
        self.model.eval()
        return self.model

    def __exit__(self, *exc_info: object) -> bool:
        for module, training in self.flags.items():
            module.training = training
        return False


def lime_patch_scores(
    model: nn.Module,
    images: Tensor,
    target: int | Tensor | None = None,
    patch: int = 32,
    n_samples: int = 1000,
    seed: int = 0,
    baseline: float = 0.0,
    perturbations_per_eval: int = 50,
    score: str = "probability",
) -> Tensor:
    """LIME scores of square patches (paper 002, section 4.3), one row per image: (B, n_patches).

    captum's ``Lime`` with a feature mask of ``patch`` x ``patch`` squares, ``n_samples`` random
    occlusion patterns (each patch kept with probability 1/2, an absent patch set to
    ``baseline``: black for un-normalised images, the mean for normalised ones), weighted by
    captum's default exponential cosine kernel, and a least-squares linear model
    (``SkLearnLinearRegression``), as the paper fits "a least squares model". ``score``:
    ``"probability"`` (softmax of the target class) or ``"logit"``. The occlusion patterns are
    drawn from a generator seeded with ``seed`` for every image (the same patterns for each
    image; the global RNG is left untouched). The model runs in eval mode, flags restored.
    """
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr import Lime

    _check_images(images)
    _check_positive_int(patch, "patch")
    _check_positive_int(n_samples, "n_samples")
    _check_positive_int(perturbations_per_eval, "perturbations_per_eval")
    if score not in ("probability", "logit"):
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    height, width = images.shape[-2:]
    mask = patch_feature_mask(height, width, patch, images.device)
    mask = mask.expand(1, images.shape[1], height, width)

    def forward(x: Tensor) -> Tensor:
        logits = model(x)
        return logits.softmax(dim=1) if score == "probability" else logits

    rows = []
    with _EvalMode(model), torch.no_grad():
        classes = _resolve_target(model, images, target)
        lime = Lime(forward, interpretable_model=SkLearnLinearRegression())
        # captum fits one surrogate per example (it warns for batches and loops itself)
        for index in range(images.shape[0]):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                coefficients = lime.attribute(
                    images[index : index + 1], baselines=baseline,
                    target=int(classes[index]), feature_mask=mask, n_samples=n_samples,
                    perturbations_per_eval=perturbations_per_eval, return_input_shape=False,
                )  # fmt: skip
            rows.append(coefficients.reshape(1, -1).to(images.device, torch.float32))
    return torch.cat(rows, dim=0)


def lime_spearman(
    model: nn.Module,
    images: Tensor,
    explanation_maps: Tensor,
    target: int | Tensor | None = None,
    patch: int = 32,
    n_samples: int = 1000,
    seed: int = 0,
    lime_scores: Tensor | None = None,
    **lime_options: Any,
) -> MetricResult:
    """Spearman rank correlation between LIME patch scores and explanation maps (section 4.3).

    ``explanation_maps`` (B, h, w) or (B, 1, h, w) are averaged per ``patch`` x ``patch`` square
    (:func:`patch_means`); LIME scores come from :func:`lime_patch_scores` on ``model`` (pass
    precomputed ``lime_scores`` (B, n_patches) to compare several maps with one LIME run).
    Returns a :class:`~torchlap.metrics.MetricResult` (higher is better, in [-1, 1]); images
    whose map or LIME scores are constant (no ranking) are excluded (``n_excluded``).
    """
    from torchlap.metrics._common import MetricResult

    _check_images(images)
    if isinstance(explanation_maps, Tensor) and explanation_maps.dim() == 4:
        if explanation_maps.shape[1] != 1:
            raise ValueError(
                f"explanation_maps must be (B, h, w) or (B, 1, h, w), got "
                f"{tuple(explanation_maps.shape)}"
            )
        explanation_maps = explanation_maps[:, 0]
    if not isinstance(explanation_maps, Tensor) or explanation_maps.dim() != 3:
        raise ValueError("explanation_maps must be a (B, h, w) tensor")
    if explanation_maps.shape[0] != images.shape[0]:
        raise ValueError(
            f"{explanation_maps.shape[0]} explanation maps for {images.shape[0]} images"
        )
    map_scores = patch_means(explanation_maps.detach().to(images.device), images.shape[-2:], patch)
    if lime_scores is None:
        lime_scores = lime_patch_scores(
            model, images, target, patch=patch, n_samples=n_samples, seed=seed, **lime_options
        )
    elif tuple(lime_scores.shape) != tuple(map_scores.shape):
        raise ValueError(
            f"lime_scores has shape {tuple(lime_scores.shape)}, expected "
            f"{tuple(map_scores.shape)} (B, n_patches)"
        )
    per_sample = spearman_correlation(map_scores, lime_scores.to(map_scores.device))
    valid = torch.isfinite(per_sample)
    n = int(valid.sum())
    value = float(per_sample[valid].mean()) if n else float("nan")
    return MetricResult(
        value=value,
        higher_is_better=True,
        n=n,
        n_excluded=int(per_sample.numel() - n),
        per_sample=per_sample,
    )


def bla_lime_faithfulness(
    bla_model: nn.Module,
    images: Tensor,
    baseline_model: nn.Module | None = None,
    target: int | Tensor | None = None,
    patch: int = 32,
    n_samples: int = 1000,
    seed: int = 0,
    gradcam_layer: str | None = None,
    **lime_options: Any,
) -> dict[str, MetricResult]:
    """Paper 002, section 4.3 / Table 2: rank correlation of LIME with BLA-T and with Grad-CAM.

    LIME patch scores and Grad-CAM maps are computed on ``baseline_model`` (the paper's
    "uninterpretable baseline model"; default ``bla_model`` itself, i.e. faithfulness to the
    BLA model), the soft explanation ``q`` on ``bla_model`` (eval mode). One LIME run is shared
    by both maps. ``target`` defaults to the reference model's predicted class; Grad-CAM uses
    ``gradcam_layer`` (default: the input of the global pool). Returns
    ``{"bla": MetricResult, "gradcam": MetricResult}``.
    """
    from torchlap.explainers import GradCam

    _check_images(images)
    reference = bla_model if baseline_model is None else baseline_model
    with _EvalMode(bla_model), torch.no_grad():
        bla_model(images)
        soft = bla_maps(bla_model)["soft"][:, 0]
    with _EvalMode(reference):
        classes = _resolve_target(reference, images, target)
    scores = lime_patch_scores(
        reference, images, classes, patch=patch, n_samples=n_samples, seed=seed, **lime_options
    )
    with GradCam(reference, layer=gradcam_layer) as explainer:
        cam = explainer.raw(images, classes)
    return {
        "bla": lime_spearman(reference, images, soft, classes, patch, lime_scores=scores),
        "gradcam": lime_spearman(reference, images, cam, classes, patch, lime_scores=scores),
    }
