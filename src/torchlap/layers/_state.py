"""State that a module keeps from its last forward pass, and what a copy of it keeps."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

__all__ = ["KeepsLastMaps", "kept_last_maps"]


class KeepsLastMaps:
    """Mixin for modules that keep the maps of their last forward pass in ``self.maps``.

    Those maps hold autograd graph nodes, which can be neither deep-copied nor pickled
    (``copy.deepcopy`` raises on non-leaf tensors). A copy of the module therefore starts
    without maps, as a fresh module does: the sanity checks deep-copy a model after explaining
    it, and a user may copy or pickle a model after any forward pass.
    """

    def __getstate__(self) -> dict[str, Any]:
        """The module's state with ``maps`` set to ``None``."""
        parent = getattr(super(), "__getstate__", None)
        state = dict(parent() if parent is not None else self.__dict__)
        state["maps"] = None
        return state


@contextlib.contextmanager
def kept_last_maps(model: nn.Module) -> Iterator[None]:
    """The last maps of the modules that keep them (:class:`KeepsLastMaps`: LAP layers, BLA
    pools, the ante-hoc model) as they were before the block, whatever happens in it: the
    forwards of a probe or an explainer (its batches, masked copies, baselines, and the autograd
    graph they hold) must not replace the caller's maps."""
    saved = {
        module: {
            key: vars(module)[key] for key in ("maps", "_forward_index") if key in vars(module)
        }
        for module in model.modules()
        if isinstance(module, KeepsLastMaps)
    }
    try:
        yield
    finally:
        for module, state in saved.items():
            for key in ("maps", "_forward_index"):
                if key in state:
                    vars(module)[key] = state[key]
                else:
                    vars(module).pop(key, None)
