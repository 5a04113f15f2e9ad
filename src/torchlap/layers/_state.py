"""State that a module keeps from its last forward pass, and what a copy of it keeps."""

from __future__ import annotations

from typing import Any

__all__ = ["KeepsLastMaps"]


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
