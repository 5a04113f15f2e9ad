"""Argument and value checks of the knowledge-injection losses (internal to ``torchlap.losses``).

The losses run every training step, so the value checks on tensors cost one reduction
(``aminmax``) per tensor and ONE device sync per call, however many tensors a call checks;
:class:`~torchlap.losses.InjectionLoss` checks all its LAP maps at once and runs the functional
losses inside :func:`values_checked`, where they skip their own value checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import torch
from torch import Tensor

from torchlap._checks import check_has_values, check_number

RatioArg = float | None | Sequence[float | None]

#: what a tensor of probabilities must hold (the message of :func:`check_values`)
PROBABILITIES = "probabilities in [0, 1] (a LAP layer's sigmoid outputs, not logits)"
REGION_VALUES = "values in [0, 1] (1 = inside an expert's region)"

_VALUES_CHECKED: ContextVar[bool] = ContextVar("torchlap_loss_values_checked", default=False)


@contextlib.contextmanager
def values_checked() -> Iterator[None]:
    """Inside, :func:`check_values` does nothing: the caller has checked every tensor the
    losses will see, with one sync (``InjectionLoss.forward``)."""
    token = _VALUES_CHECKED.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def check_values(
    ranged: Sequence[tuple[str, Tensor | None, str]] = (),
    finite: Sequence[tuple[str, Tensor | None]] = (),
) -> None:
    """``ValueError`` when a tensor of ``ranged`` (name, tensor, what it must hold) has a value
    outside [0, 1], or one of ``finite`` a NaN or an infinite value. NaN fails both.

    One ``aminmax`` per tensor (NaN propagates through it) and one device sync for all of them;
    ``None``, empty and bool tensors are skipped (a bool is always in [0, 1] and finite).
    """
    if _VALUES_CHECKED.get():
        return
    entries: list[tuple[str, Tensor, Tensor, str]] = []
    flags: list[Tensor] = []
    for name, tensor, what in ranged:
        if tensor is None or tensor.numel() == 0 or tensor.dtype == torch.bool:
            continue
        low, high = tensor.detach().aminmax()
        entries.append((name, low, high, f"must hold {what}"))
        flags.append(~((low >= 0) & (high <= 1)))  # NaN compares False: flagged
    for name, tensor in finite:
        if tensor is None or tensor.numel() == 0 or not tensor.dtype.is_floating_point:
            continue
        low, high = tensor.detach().aminmax()
        entries.append((name, low, high, "must be finite (no NaN or infinite value)"))
        flags.append(~(low.isfinite() & high.isfinite()))
    if not flags:
        return
    device = flags[0].device
    bad = torch.stack([flag.to(device) for flag in flags]).tolist()  # the one sync
    for (name, low, high, rule), failed in zip(entries, bad, strict=True):
        if failed:
            low, high = float(low), float(high)
            held = "NaN" if low != low or high != high else f"values from {low:g} to {high:g}"
            raise ValueError(f"{name} {rule}; it holds {held}")


def check_eps(eps: object) -> float:
    """The log clamp ``eps``: a number in (0, 0.5) (both ``ln p`` and ``ln(1 - p)`` are clamped
    at ``eps``: at 0.5 or more they would be constant)."""
    accepted = "a number in (0, 0.5) (the clamp of the logarithms)"
    value = check_number(eps, "eps", minimum=0.0, strict_minimum=True, accepted=accepted)
    if value >= 0.5:
        raise ValueError(f"eps must be {accepted}, got {eps!r}")
    return value


def check_threshold(value: object, name: str) -> float:
    """Concordance's ``t``: a number in [0, 1) (``TypeError`` for a non-number or a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _check_ratio(value: object, name: str) -> float | None:
    if value is None:
        return None
    return check_number(
        value, name, minimum=0.0, maximum=1.0, strict_minimum=True,
        accepted="a fraction of the pixels in (0, 1] or None",
    )  # fmt: skip


def per_head_ratios(
    min_ar: RatioArg, max_ar: RatioArg, iar: RatioArg, n_heads: int
) -> list[tuple[float | None, float | None, float | None]]:
    """Validate MinAR/MaxAR/IAR and spread them to one ``(min_ar, max_ar, iar)`` per head.

    Each may be a float in (0, 1], ``None`` (that term off), or a sequence of such with one
    entry per head. ``min_ar > max_ar`` for a head is an error (its top and bottom pixel sets
    would overlap).
    """
    spread = []
    for value, name in ((min_ar, "min_ar"), (max_ar, "max_ar"), (iar, "iar")):
        if isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != n_heads:
                raise ValueError(
                    f"{name} has {len(value)} entries but there are {n_heads} concept heads; "
                    "give one value per head or a single value for all"
                )
            spread.append([_check_ratio(v, f"{name}[{i}]") for i, v in enumerate(value)])
        else:
            spread.append([_check_ratio(value, name)] * n_heads)
    out = list(zip(*spread, strict=True))
    for c, (lo, hi, _) in enumerate(out):
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"min_ar ({lo}) must not exceed max_ar ({hi}) (head {c}): MinAR is the smallest "
                "and MaxAR the largest fraction of the pixels a concept may cover"
            )
    return out


def check_probs(probs: object, name: str = "probs") -> Tensor:
    """``probs`` if it is a floating tensor (B, h, H, W) with a non-empty batch and map (its
    values are checked by :func:`check_values`)."""
    if not isinstance(probs, Tensor):
        raise TypeError(f"{name} must be a Tensor (B, h, H, W), got {type(probs).__name__}")
    if probs.dim() != 4 or not probs.dtype.is_floating_point:
        raise ValueError(
            f"{name} must be a floating tensor of shape (B, h, H, W), got dtype {probs.dtype} "
            f"and shape {tuple(probs.shape)}"
        )
    if probs.shape[0] == 0 or probs.shape[-1] * probs.shape[-2] == 0:
        raise ValueError(f"{name} must have a non-empty batch and map, got {tuple(probs.shape)}")
    return check_has_values(probs, name)


def check_selector(selector: object, probs: Tensor) -> Tensor | None:
    """``selector`` (``None``, or a floating or bool tensor of the shape of ``probs``; a bool
    one is returned as ``probs``' dtype, to rank on). Its values: :func:`check_values`."""
    if selector is None:
        return None
    if not isinstance(selector, Tensor) or tuple(selector.shape) != tuple(probs.shape):
        raise ValueError(
            f"selector must be a tensor of the same shape as probs {tuple(probs.shape)}, "
            f"got {getattr(selector, 'shape', type(selector).__name__)}"
        )
    check_has_values(selector, "selector")
    if selector.dtype == torch.bool:
        return selector.to(probs.dtype)
    if not selector.dtype.is_floating_point:
        raise TypeError(
            "selector must be a floating tensor (the discriminative scorer's probabilities) or "
            f"a bool one, got dtype {selector.dtype}"
        )
    return selector


def check_bool_mask(mask: object, shape: tuple[int, ...], name: str, what: str) -> Tensor:
    """``mask`` if it is a bool tensor of ``shape``."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor {what}, got {mask!r:.80}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} {what}, got {tuple(mask.shape)}")
    return check_has_values(mask, name)


def check_present(present: object, probs: Tensor) -> Tensor:
    """``present``, bool (B, h), on the device of ``probs``."""
    return check_bool_mask(present, tuple(probs.shape[:2]), "present", "(B, h)").to(probs.device)


def check_include(include: Tensor | None, probs: Tensor, name: str = "include") -> Tensor:
    """``include`` (bool (B,) or (B, h); ``None``: every pair) as bool (B, h); ``name`` is the
    argument's name in the messages."""
    batch, heads = probs.shape[:2]
    if include is None:
        return torch.ones(batch, heads, dtype=torch.bool, device=probs.device)
    if not isinstance(include, Tensor) or include.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (B,) or (B, h), got {include!r:.80}")
    if tuple(include.shape) == (batch,):
        return include.to(probs.device)[:, None].expand(batch, heads)
    if tuple(include.shape) == (batch, heads):
        return include.to(probs.device)
    raise ValueError(
        f"{name} must have shape ({batch},) or ({batch}, {heads}), got {tuple(include.shape)}"
    )
