"""The explanation pools of paper 002: bounded logit attention (BLA, BLA-T) and L2X-F.

The modules :func:`torchlap.models.blaify` puts in place of a classifier's global average
pool, and the helpers that find them in a model (:func:`bla_modules`), read their maps
(:func:`bla_maps`) and freeze everything else (:func:`freeze_all_but_bla`). The choices where
the paper is silent are described in :mod:`torchlap.models.bla`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from torchlap._checks import (
    check_bool,
    check_choice,
    check_feature_input,
    check_positive_float,
    check_positive_int,
)
from torchlap.layers._state import KeepsLastMaps

__all__ = [
    "POOLS",
    "BlaMaps",
    "BoundedLogitAttention",
    "FeatureSelectionPool",
    "L2XFeatureSelection",
    "bla_maps",
    "bla_modules",
    "bla_parameters",
    "freeze_all_but_bla",
]

#: the scorer's initialisation: Glorot uniform (paper 002, section 4.2: "Non-pretrained
#: parameters are set using the Glorot uniform initializer"), or zero (the exact average pool)
_INITS = ("glorot", "zeros")
#: training-time pooling of BLA-T and L2X-F: the authors' raw sum, or renormalised weights
POOLS = ("sum", "normalized")


@dataclass
class BlaMaps:
    """The maps an explanation pool left in its last forward pass (feature-map resolution).

    ``soft``: the soft explanation ``q(i|f)`` (B, 1, H, W), summing to 1 over positions (for
    L2X-F: the inclusion probabilities ``softmax(l)``).
    ``hard``: the discrete explanation ``delta`` (B, 1, H, W), bool (L2X-F: the top-k set).
    ``logits``: the logits ``l`` (B, 1, H, W) (BLA: bounded, ``<= 0``).
    ``weights``: the pooling weights this pass used (B, 1, H, W), ``v = sum_i w_i f_i``. They
    sum to 1 over positions on the hard and mean paths (eval mode), for BLA's ``q`` (no
    threshold) and with ``pool="normalized"``; not with ``pool="sum"`` (BLA-T's and L2X-F's
    training default, the authors' code): BLA-T's ``relu(q - gamma)`` sums to less than 1
    (``q`` itself when no weight exceeds ``gamma``; also on BLA-T's eval path ``"soft"``),
    L2X-F's relaxed k-hot mask ``max_j c^j`` to between 1 and ``k``.
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


class FeatureSelectionPool(KeepsLastMaps, nn.Module):
    """Base of the explanation pools (BLA, L2X-F): a 1x1-convolution scorer over the feature
    map, a pooling to ``(B, C, 1, 1)``, and the maps of the last pass in ``self.maps``.

    ``eval_path`` chooses the pooling used when the module is in eval mode (``"hard"``: the
    discrete explanation, as the paper evaluates; ``"mean"``: the plain global average, i.e.
    the original model predicts and the module only explains, the purely post-hoc use of
    section 3.2). In train mode the relaxed (soft) explanation pools. ``init``: ``"glorot"``
    (the paper's, section 4.2: a Glorot-uniform scorer weight, zero bias) or ``"zeros"``
    (every logit 0: the module starts as the exact global average pool).
    """

    eval_paths: tuple[str, ...] = ("hard", "mean")
    maps: BlaMaps | None

    def __init__(
        self,
        in_channels: int,
        eval_path: str = "hard",
        init: str = "glorot",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
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
        # the LAP layers' metadata-only check (type, shape, channels, dtype, device; no sync)
        check_feature_input(self, x, self.in_channels, self._modules["scorer"].weight)

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
        gamma_factor: 1.0, the paper's proposed default ``gamma = 1/n`` (section 3.1); its
            experiments of section 4.2 use 0.98 (``gamma = 0.98 / 49`` for a 7x7 map).
        pool: BLA-T's training pooling, ``"sum"`` (the authors' code) or ``"normalized"``.
        eval_path: ``"hard"`` (default), ``"soft"`` (``q`` or the thresholded weights, as in
            training) or ``"mean"`` (the plain average; the module only explains).
        init: ``"glorot"`` (the paper's, default) or ``"zeros"`` (starts as the exact average
            pool).
    """

    eval_paths = ("hard", "soft", "mean")

    def __init__(
        self,
        in_channels: int,
        theta: float = 0.1,
        threshold: bool = False,
        gamma: float | None = None,
        gamma_factor: float = 1.0,
        eval_path: str = "hard",
        init: str = "glorot",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pool: str = "sum",
    ) -> None:
        super().__init__(in_channels, eval_path, init, device, dtype)
        self.pool = check_choice(pool, "pool", POOLS)
        self.theta = check_positive_float(theta, "theta")
        if not isinstance(threshold, bool):
            raise TypeError(f"threshold must be a bool, got {threshold!r}")
        if gamma is not None:
            gamma = check_positive_float(gamma, "gamma")
            if gamma >= 1:
                raise ValueError(f"gamma must lie in (0, 1) (a softmax weight), got {gamma}")
            if not threshold:
                raise ValueError("gamma is BLA-T's threshold: pass threshold=True with it")
        self.threshold = threshold
        self.gamma = gamma
        self.gamma_factor = check_positive_float(gamma_factor, "gamma_factor")

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
        init: str = "glorot",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pool: str = "sum",
    ) -> None:
        super().__init__(in_channels, eval_path, init, device, dtype)
        self.k = check_positive_int(k, "k")
        self.tau = check_positive_float(tau, "tau")
        self.pool = check_choice(pool, "pool", POOLS)

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
    check_bool(detach, "detach")  # as attention_maps: "no" is not False
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
