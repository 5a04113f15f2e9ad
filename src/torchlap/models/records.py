"""How a model built by torchlap remembers how it was built (its build record).

:func:`~torchlap.lapify`, :func:`~torchlap.models.blaify`, :func:`~torchlap.models.build_model`
and :class:`~torchlap.models.antehoc.AnteHocModel` record their settings, JSON-serialisable,
in one dict on the model (the ``torchlap_config`` attribute: ``"lapify"`` calls, the
``"blaify"`` entry, the ``"antehoc"`` layers, the architecture). The model-family recipes
(:mod:`torchlap.models.recipes`) turn it into ``config.json``'s ``"model"`` record, from which
the same module tree is rebuilt. This module is the one place that reads and writes that
attribute; run facts (classes, concept sets, image size) are not in it: they travel as
arguments (and in ``config.json``).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["RECORD_ATTRIBUTE", "add_record_entry", "model_record", "set_model_record"]

#: the attribute holding the record (its name is what models saved before carry)
RECORD_ATTRIBUTE = "torchlap_config"


def model_record(model: nn.Module) -> dict[str, Any]:
    """A deep copy of ``model``'s build record (``{}`` when nothing recorded one)."""
    record = getattr(model, RECORD_ATTRIBUTE, None)
    return copy.deepcopy(record) if isinstance(record, dict) else {}


def set_model_record(model: nn.Module, record: dict[str, Any]) -> None:
    """Replace ``model``'s build record by ``record``."""
    if not isinstance(record, dict):
        raise TypeError(f"a build record must be a dict, got {type(record).__name__}")
    setattr(model, RECORD_ATTRIBUTE, record)


def add_record_entry(model: nn.Module, key: str, entry: Any, append: bool = False) -> None:
    """Set ``record[key] = entry`` in ``model``'s build record (``append``: add ``entry`` to the
    list under ``key``), keeping the other entries."""
    record = model_record(model)
    if append:
        record.setdefault(key, []).append(entry)
    else:
        record[key] = entry
    set_model_record(model, record)
