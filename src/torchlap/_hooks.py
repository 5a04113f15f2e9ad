"""Module hooks that come off whatever stops the code that put them on.

``handles.append(module.register_forward_hook(hook))`` inside a ``try`` whose ``finally``
removes ``handles`` misses one case: a KeyboardInterrupt (or any asynchronous exception)
raised after torch stored the hook but before its handle reached the list, which leaves the
hook on the user's model for good. :class:`Hooks` writes the module and the hook function down
*before* registering, and :meth:`Hooks.remove` takes off every entry of the module's hook
dictionaries holding that very function object, whether or not the handle was ever seen.
:func:`kept_training_flags` puts the modules' train/eval flags back the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["Hooks", "kept_training_flags"]

#: the dictionary a kind of hook lives in, then the dictionaries keyed by the same handle id
_DICTS = {
    "forward": ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called"),
    "forward_pre": ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs"),
}


class Hooks:
    """The forward and forward-pre hooks registered through it, removed by :meth:`remove` (or
    at the end of a ``with`` block), also those whose registration was interrupted."""

    def __init__(self) -> None:
        self._added: list[tuple[nn.Module, str, Callable[..., Any]]] = []
        self._kept: list[RemovableHandle] = []

    def forward(self, module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        """``module.register_forward_hook(hook)``, written down first."""
        self._added.append((module, "forward", hook))
        return module.register_forward_hook(hook)

    def forward_pre(self, module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        """``module.register_forward_pre_hook(hook)``, written down first."""
        self._added.append((module, "forward_pre", hook))
        return module.register_forward_pre_hook(hook)

    def keep(self, handle: RemovableHandle) -> RemovableHandle:
        """Remove ``handle`` with the others (a hook someone registered for this object)."""
        self._kept.append(handle)
        return handle

    def remove(self) -> None:
        """Take every hook registered through this object off its module (last first), and
        the handles it keeps; the hooks of anyone else, the same function registered by
        someone else included, stay: only as many entries of a function come off as were
        registered here, and only plain ones (an entry registered ``with_kwargs`` or
        ``always_call`` is not torchlap's)."""
        while self._kept:
            self._kept.pop().remove()
        while self._added:
            module, kind, hook = self._added.pop()
            main, *extras = _DICTS[kind]
            hooks = getattr(module, main)
            # torchlap registers plainly: an entry of the same function with a flag
            # (with_kwargs, always_call) is someone else's
            keys = [
                key
                for key, value in hooks.items()
                if value is hook and not any(key in getattr(module, extra) for extra in extras)
            ]
            if keys:
                del hooks[max(keys)]  # the latest registration (handle ids only grow)

    def __len__(self) -> int:
        return len(self._added) + len(self._kept)

    def __enter__(self) -> Hooks:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()


@contextmanager
def kept_training_flags(model: nn.Module) -> Iterator[None]:
    """Every module's ``training`` flag in ``model`` as it was before the block, whatever ends
    it (the block may call ``model.eval()`` or set flags itself)."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training
