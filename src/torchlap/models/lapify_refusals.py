"""Models and modules ``lapify`` (and ``blaify``) refuse to change, and why.

:func:`check_changeable` refuses whole models whose modules cannot be swapped (TorchScript,
torch.compile wrappers); :func:`foreign_forward` says why a subclass of a module lapify
replaces (a ``Conv2d``, a pool) would be changed in silence by the LAP put in its place;
:func:`lost_on_swap` what a replaced module carries that its replacement would not.
"""

from __future__ import annotations

import sys

from torch import jit, nn
from torch.nn.utils import parametrize

__all__ = ["check_changeable", "foreign_forward", "lost_on_swap"]


def check_changeable(model: nn.Module, caller: str) -> None:
    """Refuse a model whose modules ``caller`` (lapify, blaify) cannot swap: a TorchScript
    module, or a torch.compile wrapper (its modules are named ``_orig_mod.<name>``)."""
    if isinstance(model, jit.ScriptModule):
        raise TypeError(
            f"model is a TorchScript module ({type(model).__name__}, from torch.jit.script or "
            f"torch.jit.trace), whose compiled code {caller} cannot change (it swaps Python "
            f"modules): {caller} the nn.Module first, then script or trace the result"
        )
    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    compiled = getattr(dynamo, "OptimizedModule", None)
    if isinstance(compiled, type) and isinstance(model, compiled):
        raise TypeError(
            "model is a torch.compile wrapper (OptimizedModule), whose modules are named "
            f"'_orig_mod.<name>' (no preset or module name fits them): {caller} "
            "model._orig_mod (the module you compiled), then call torch.compile on the result"
        )


_REPLACED_BASES = (
    nn.Conv2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)


def foreign_forward(module: nn.Module) -> str | None:
    """Why a subclass of a module lapify replaces cannot become a LAP, or None.

    A subclass with its own ``forward`` (timm's ``StdConv2d`` standardises its weights,
    ``Conv2dSame`` and ``MaxPool2dSame`` pad per input size) would lose that computation in the
    LAP (or the stride-1 ``nn.Conv2d`` of a ``LapConv2d``) put in its place: a silently
    different network, or one whose maps change size.
    """
    kind = type(module)
    base = next((b for b in _REPLACED_BASES if isinstance(module, b)), None)
    if base is None or (
        kind.forward is base.forward
        and (base is not nn.Conv2d or kind._conv_forward is nn.Conv2d._conv_forward)
    ):
        return None
    return (
        f"{kind.__name__} is a {base.__name__} subclass with its own forward (e.g. weight "
        "standardisation, or 'same' padding computed per input), which the LAP put in its "
        "place would not compute"
    )


_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


def lost_on_swap(module: nn.Module) -> str | None:
    """What replacing ``module`` would drop in silence, or None: its parametrizations
    (``torch.nn.utils.parametrize``, e.g. ``spectral_norm``) or its hooks (a user's feature
    hook, the old ``torch.nn.utils.weight_norm``, whose ``weight_g``/``weight_v`` would go)."""
    lost = []
    if parametrize.is_parametrized(module):
        names = sorted(module.parametrizations.keys())  # type: ignore[union-attr]
        lost.append(f"parametrizations of {names} (torch.nn.utils.parametrize)")
    hooks = [name.strip("_").replace("_", " ") for name in _HOOKS if getattr(module, name, None)]
    if hooks:
        lost.append(", ".join(hooks))
    if not lost:
        return None
    return (
        f"{type(module).__name__} carries {' and '.join(lost)}, which the module put in its "
        "place would not have (torch.nn.utils.weight_norm works by a forward pre hook): "
        "remove them first, and put them on the new module after lapify if needed"
    )
