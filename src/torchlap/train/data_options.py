"""The data of a run as it is recorded: ``--data`` (:func:`resolve_data_source`: a folder as
its absolute path) and ``--data-option KEY=VALUE``, the extra options of its dataset, checked
before anything is loaded or written.

A run passes its data options to :func:`torchlap.data.load_dataset` for each split. The keys a
dataset takes are read from its constructor (:func:`torchlap.data.builtin._options_of`: the
built-in benchmark's class, or :class:`~torchlap.data.AnnotatedFolder` for a folder), and each
value is parsed by the option's annotated type: ``int``, ``float``, ``bool`` (``true`` or
``false``), a list of numbers (a comma list ``0.5,0.25,0.25`` or JSON ``[0.5, 0.25, 0.25]``),
``null`` where the option may be ``None``. Refused: the keys with a flag of their own
(:data:`FLAG_OPTIONS`), the keys a run sets itself or cannot record (:data:`NOT_DATA_OPTIONS`),
and keys the dataset does not take.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchlap._checks import is_int, is_number, is_plain_number
from torchlap.data import AnnotatedFolder, builtin_names
from torchlap.data.builtin import BUILTINS, _options_of

__all__ = [
    "FLAG_OPTIONS",
    "NOT_DATA_OPTIONS",
    "check_data_options",
    "data_option_kinds",
    "parse_data_options",
    "resolve_data_source",
]

#: data options that ``torchlap train`` sets from a flag of its own
FLAG_OPTIONS = {"n_images": "--n-images", "image_size": "--image-size", "seed": "--seed"}
#: constructor arguments of the datasets that are not data settings of a run
NOT_DATA_OPTIONS = {
    "split": "the run loads the train, val and test splits itself",
    "transform": "a Python callable, which config.json cannot record (call "
    "torchlap.data.load_dataset(..., transform=...) from Python instead)",
}

_KIND_WORDS = {
    "int": "an int",
    "float": "a number",
    "bool": "true or false",
    "floats": "a list of numbers (a comma list 0.5,0.25,0.25 or JSON [0.5, 0.25, 0.25])",
    "str": "a string",
    "any": "a JSON value",
}


def _dataset_class(data: str) -> tuple[type, str]:
    """The class ``load_dataset(data)`` builds and how to name it in a message."""
    if data in BUILTINS:
        return BUILTINS[data], f"the built-in {data!r}"
    return AnnotatedFolder, f"the dataset folder {data!r}"


def _annotations(cls: type) -> dict[str, str]:
    """Each constructor keyword of ``cls`` (following ``**kwargs`` up the bases) and its
    annotation as text."""
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for parameter in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            annotation = parameter.annotation  # (a string under postponed annotations)
            text = (
                annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
            )
            found.setdefault(parameter.name, text)
    return found


def _kind(annotation: str) -> tuple[str, bool]:
    """``(kind, nullable)`` of an annotation: kind one of :data:`_KIND_WORDS` or
    ``"callable"``."""
    text = annotation.replace(" ", "")
    nullable = "None" in text
    if "Callable" in text:
        return "callable", nullable
    if re.search(r"(tuple|Sequence|list)\[float", text):
        return "floats", nullable
    base = re.sub(r"\|?None\|?", "", text).replace("Optional[", "").rstrip("]")
    return (base if base in ("int", "float", "bool", "str") else "any"), nullable


def data_option_kinds(data: str) -> tuple[dict[str, tuple[str, bool]], bool]:
    """``({option: (kind, nullable)}, open_ended)``: the data options of ``data`` (a built-in
    name or a folder), without those of :data:`FLAG_OPTIONS` and :data:`NOT_DATA_OPTIONS`;
    ``open_ended`` when the dataset takes any further keyword."""
    cls, _ = _dataset_class(data)
    accepted, open_ended = _options_of(cls)
    annotations = _annotations(cls)
    kinds = {
        name: _kind(annotations.get(name, ""))
        for name in accepted
        if name not in FLAG_OPTIONS and name not in NOT_DATA_OPTIONS and name != "root"
    }
    return kinds, open_ended


def _refuse_keys(data: str, keys: list[str]) -> None:
    """Refuse flag keys, non-data keys and keys the dataset does not take."""
    for key in keys:
        if key in FLAG_OPTIONS:
            raise ValueError(
                f"--data-option {key}=...: {key} has its own flag; use {FLAG_OPTIONS[key]} instead"
            )
        if key in NOT_DATA_OPTIONS:
            raise ValueError(
                f"--data-option {key}=... is not a data option: {NOT_DATA_OPTIONS[key]}"
            )
    kinds, open_ended = data_option_kinds(data)
    for key in keys:
        if kinds.get(key, ("any", True))[0] == "callable":
            raise ValueError(f"--data-option {key}=... is a Python callable, not a data option")
    unknown = sorted(k for k in keys if k not in kinds)
    if unknown and not open_ended:
        _, what = _dataset_class(data)
        flags = ", ".join(FLAG_OPTIONS.values())
        raise ValueError(
            f"{what} has no option(s) {unknown} (--data-option); its data options: "
            f"{', '.join(kinds) or 'none'} ({flags} are flags of their own)"
        )


def _parse_value(key: str, raw: str, kind: str, nullable: bool) -> Any:
    """A ``--data-option`` string as the option's type (``ValueError`` saying what it takes)."""
    text = raw.strip()
    if nullable and text.lower() in ("null", "none"):
        return None
    if kind == "str":
        return raw
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # not JSON (or deeper than it parses): text
        value = raw
    if kind == "floats" and isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        plain = all(is_plain_number(part) for part in parts)  # not "0.3_3" or fullwidth
        value = [float(part) for part in parts] if plain else raw
    elif kind == "floats" and is_number(value):
        value = [value]
    elif kind == "float" and is_int(value):
        value = float(value)
    _check_value(key, value, kind, nullable, shown=raw)
    return value


def _check_value(key: str, value: Any, kind: str, nullable: bool, shown: Any = None) -> None:
    """``TypeError`` naming the option and what it takes when ``value`` is not of ``kind``."""
    if value is None and nullable:
        return
    finite = is_number(value) and math.isfinite(value)
    fits = {
        "int": is_int(value),
        "float": finite,
        "bool": isinstance(value, bool),
        "floats": isinstance(value, (list, tuple))
        and all(is_number(v) and math.isfinite(v) for v in value),
        "str": isinstance(value, str),
        "any": True,
    }[kind]
    if not fits:
        accepted = _KIND_WORDS[kind] + (" or null" if nullable else "")
        given = value if shown is None else shown
        raise TypeError(f"--data-option {key}: {key} takes {accepted}, got {given!r}")


def parse_data_options(data: str, items: Mapping[str, str]) -> dict[str, Any]:
    """The ``--data-option`` strings ``{key: text}`` for ``data``, each parsed by its option's
    type (see the module docstring); the keys are checked first."""
    _refuse_keys(data, list(items))
    kinds, _ = data_option_kinds(data)
    return {
        key: _parse_value(key, raw, *kinds.get(key, ("any", True))) for key, raw in items.items()
    }


def check_data_options(data: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError``/``TypeError`` when ``options`` (already typed, e.g. from
    ``config.json`` or Python) name a key :func:`parse_data_options` refuses or hold a value
    of another type than the option's."""
    _refuse_keys(data, list(options))
    kinds, _ = data_option_kinds(data)
    for key, value in options.items():
        _check_value(key, value, *kinds.get(key, ("any", True)))


def resolve_data_source(data: str) -> str:
    """``--data`` as a run records it: a built-in benchmark's name as it is, an existing
    dataset folder as its absolute path (so that ``evaluate``/``explain`` from another
    directory find it), anything else as given (for the data loader's error to name it)."""
    if not isinstance(data, str) or data in builtin_names():
        return data
    path = Path(data)
    return str(path.resolve()) if path.exists() else data
