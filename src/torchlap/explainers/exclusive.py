"""One explanation at a time per model: the lock an explainer holds while it changes the model.

An explanation switches the model's modules to eval mode and off their in-place flags, hooks
its modules, and stands in copies for shared nonlinearities (DeepLIFT); it restores them all
when it ends. Two explanations of one model running at once in two threads would see each
other's hooks (a guided-backprop ReLU rule in the other's backward pass, the other's forwards
counted), and the second would save the first's eval flags as the model's own, leaving the
model in eval mode with its in-place activations switched off after both ended. So
:class:`~torchlap.explainers.base.Explainer` holds :func:`model_lock` for the whole
explanation context: a second thread explaining the same model waits for the first to finish.
The lock is reentrant, so nested contexts in one thread (``with explainer:`` around calls, two
explainers of one model nested) work as before.
"""

from __future__ import annotations

import threading
import weakref

from torch import nn

__all__ = ["model_lock"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The reentrant lock of ``model``'s explanations (one per model object, kept as long as
    the model lives)."""
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock
