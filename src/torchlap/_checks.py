"""Argument checks shared by the whole package: one wording, one choice of exception.

A value of the wrong type raises ``TypeError``, a value of the right type outside what is
accepted raises ``ValueError``; every message names the argument, says what is accepted and
shows what was given. ``bool`` is not accepted where an int or a float is expected (``True``
is an ``int`` in Python, but never a sensible count or rate).

The bottom of the package, next to :mod:`torchlap.io`: it imports nothing of torchlap, so every
layer may use it.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Collection, Mapping, Sequence
from fractions import Fraction
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = [
    "SEED_RANGE",
    "channel_mismatch",
    "check_bool",
    "check_channels",
    "check_choice",
    "check_device",
    "check_distinct",
    "check_feature_input",
    "check_fraction",
    "check_has_values",
    "check_int",
    "check_keyword_dict",
    "check_model_inputs",
    "check_number",
    "check_positive_float",
    "check_positive_int",
    "check_seed",
    "check_size_pair",
    "exact_decimal",
    "is_int",
    "is_integer_tensor",
    "is_number",
    "is_plain_number",
    "non_finite_samples",
]

T = TypeVar("T")

#: the seeds torchlap accepts: torch generators, numpy and scikit-learn's ``random_state`` alike
SEED_RANGE = (0, 2**32 - 1)


def is_int(value: object) -> bool:
    """``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """``value`` is an ``int`` or a ``float`` and not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# a decimal number as people write one (ASCII digits): what float() and int() take beyond it
# ("1_0" as 10, fullwidth digits, "nan", "inf") is bending, not reading
_PLAIN_INT = re.compile(r"[+-]?[0-9]+")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def is_plain_number(text: str, integer: bool = False) -> bool:
    """Whether ``text`` is a decimal number written plainly (``integer``: an int), ASCII digits
    only: not ``1_0``, ``１``, ``nan`` or ``inf``, which ``int()``/``float()`` accept."""
    return bool((_PLAIN_INT if integer else _PLAIN_NUMBER).fullmatch(text))


def _int_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an int from {minimum} to {maximum}"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (either bound may be None: unbounded).

    Raises ``TypeError`` when ``value`` is not an int (or is a bool), ``ValueError`` when it is
    out of range.
    """
    accepted = _int_range(minimum, maximum)
    if not is_int(value):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    if not -(2**63) <= value < 2**63:  # a size or count torch would fail to unpack
        raise ValueError(f"{name} must be {accepted} that fits in 64 bits, got {value!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1 (``TypeError`` for a non-int, ``ValueError`` for < 1)."""
    return check_int(value, name, minimum=1)


def check_number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    accepted: str | None = None,
) -> float:
    """``value`` as a finite float, at least ``minimum`` (above it with ``strict_minimum``) and
    at most ``maximum``.

    ``accepted`` replaces the generated description of the accepted values in the message
    (e.g. ``"a fraction of the pixels in (0, 1]"``). Raises ``TypeError`` when ``value`` is not
    an int or a float (or is a bool), ``ValueError`` when it is NaN, infinite or out of range.
    """
    if accepted is None:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if strict_minimum else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        accepted = " and ".join(["a finite number", *bounds]).replace(" and ", " ", 1)
    if not is_number(value):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    number = float(value)
    too_small = minimum is not None and (number <= minimum if strict_minimum else number < minimum)
    too_large = maximum is not None and number > maximum
    if not math.isfinite(number) or too_small or too_large:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return number


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int in ``[0, 2**32 - 1]`` (not a bool), checked before any work: torch's
    ``manual_seed`` takes negative and 64-bit seeds (-1 and 2**64 - 1 give the same stream) and
    refuses larger ones only when used, numpy and scikit-learn refuse what is outside."""
    return check_int(seed, name, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])


def check_size_pair(value: object, name: str = "size") -> tuple[int, int]:
    """``value`` as ``(H, W)``: a pair (tuple, list, ``torch.Size``) of two ints >= 1.

    ``TypeError`` naming ``name`` when ``value`` is not a sequence of ints (a text, a bool or a
    float among them), ``ValueError`` when it has not two entries or one is below 1.
    """
    message = f"{name} must be (H, W), two positive ints, got {value!r}"
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(is_int(n) for n in value)
    ):
        raise TypeError(message)
    if len(value) != 2 or not all(n >= 1 for n in value):
        raise ValueError(message)
    return int(value[0]), int(value[1])


def check_distinct(values: Collection[object], name: str) -> None:
    """``ValueError`` when ``values`` (a list option, e.g. ``--sizes``) holds an entry twice:
    the work would be repeated and its table row printed twice."""
    values = list(values)
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name} lists {', '.join(repeated)} more than once; name each once")


def check_positive_float(value: object, name: str) -> float:
    """``value`` as a finite float > 0."""
    return check_number(value, name, minimum=0.0, strict_minimum=True)


def exact_decimal(value: float | Fraction) -> Fraction:
    """The exact value of the decimal a float was written as (``0.7 -> 7/10``, where the float
    itself is slightly below 0.7); a ``Fraction`` as it is. Counts of pixels taken as a share
    of an image are computed on it, so that a share written ``0.7`` rounds as 7/10 does."""
    # repr() of a float is its shortest round-tripping decimal
    return value if isinstance(value, Fraction) else Fraction(repr(float(value)))


def check_fraction(value: object, name: str) -> float:
    """``value`` as a float in (0, 1]."""
    return check_number(
        value, name, minimum=0.0, maximum=1.0, strict_minimum=True, accepted="a number in (0, 1]"
    )


def check_choice(value: T, name: str, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value asked of a set or dict
        known = False
    if not known:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def check_channels(value: object, name: str = "channels") -> int:
    """``value`` as an image's channel count, 1 (grayscale) or 3 (RGB): ``TypeError`` for a
    non-int (or a bool, which ``True == 1`` would let through), ``ValueError`` for another
    int."""
    if not is_int(value):
        raise TypeError(f"{name} must be 1 (grayscale) or 3 (RGB), got {value!r}")
    if value not in (1, 3):
        raise ValueError(f"{name} must be 1 (grayscale) or 3 (RGB), got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a bool (numpy's included), else ``TypeError``: ``bool("no")`` is True,
    so a flag is never coerced."""
    kind = type(value)  # numpy's bool: numpy.bool_ (1.x), numpy.bool (2.x), without numpy
    if not isinstance(value, bool) and not (
        kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool")
    ):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_keyword_dict(value: object, name: str, accepted: str) -> dict[str, Any]:
    """``value`` (a mapping whose keys are str, the keyword arguments passed on with ``**``;
    None: none) as a new dict, else ``TypeError`` naming ``name``, what it got and
    ``accepted`` (what the keywords are for): ``dict(value or {})`` would take a text as
    pairs, a list of pairs, and a 0 or an empty text as no keyword at all."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a dict of keyword arguments ({accepted}) or None, got "
            f"{type(value).__name__} {reprlib.repr(value)}"
        )
    if keys := [key for key in value if not isinstance(key, str)]:
        raise TypeError(
            f"{name} must be a dict of keyword arguments ({accepted}) whose keys are str "
            f"(the keywords' names), got the key {reprlib.repr(keys[0])} "
            f"({type(keys[0]).__name__})"
        )
    return dict(value)


def check_device(value: object, name: str = "device") -> torch.device:
    """``value`` as a ``torch.device`` that this machine has, else ``ValueError`` saying what is
    wrong (not a device name; a CUDA, MPS or XPU device that is not available here; a CUDA
    index past the last GPU) and what is accepted. Checked before any work, where torch itself
    would fail deep inside the first tensor moved there."""
    try:
        device = torch.device(value)  # type: ignore[arg-type]
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{name} {value!r} is not a device; expected 'cpu', 'cuda' or 'cuda:N' (an index)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} {value!r}: no CUDA device is available here "
                "(torch.cuda.is_available() is False); use 'cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{name} {value!r}: this machine has {count} CUDA device(s), 'cuda:0' to "
                f"'cuda:{count - 1}'"
            )
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(
                f"{name} {value!r}: no {device.type} device is available here; use 'cpu'"
            )
    return device


def is_integer_tensor(value: object) -> bool:
    """Whether ``value`` is a tensor of an integer dtype (not bool, floating or complex): class
    indices, counts, image ids."""
    return isinstance(value, Tensor) and not (
        value.dtype == torch.bool or value.is_floating_point() or value.is_complex()
    )


def check_has_values(tensor: Tensor, name: str) -> Tensor:
    """``tensor`` unless it is on the ``meta`` device, which holds shapes but no values:
    ``ValueError`` naming ``name``, where torch would fail at the first value read (``.item()``,
    a copy) deep inside. For the functions that read values (a check of NaN, of a range)."""
    if tensor.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device, which holds shapes but no values; pass a tensor "
            "with values (e.g. on 'cpu' or 'cuda')"
        )
    return tensor


def non_finite_samples(batch: torch.Tensor, limit: int = 10) -> list[int]:
    """Batch indices (the first ``limit``) of the samples of ``batch`` (dimension 0) that hold a
    NaN or an infinite value; empty when all are finite. One reduction and one sync."""
    finite = torch.isfinite(batch).flatten(1).all(dim=1)
    if bool(finite.all()):
        return []
    return torch.nonzero(~finite).flatten()[:limit].tolist()


def check_feature_input(
    module: nn.Module, x: object, channels: int, parameter: Tensor, min_size: int = 0
) -> None:
    """A building block's input ``x`` before its forward pass: a (B, ``channels``, H, W)
    tensor (H, W >= ``min_size``), floating point of ``parameter``'s dtype (any floating dtype
    under ``torch.autocast``, which casts it) and on ``parameter``'s device; ``TypeError`` for
    the type or dtype, ``ValueError`` for the rest, naming ``module``'s class and what it takes.

    On every forward pass of a layer, so it reads only the tensor's metadata (no value, no
    device sync) and takes ``channels`` and ``parameter`` from its caller, which can read
    them from the module's dicts (cheaper than ``nn.Module.__getattr__``)."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{type(module).__name__} expects a (B, C, H, W) torch.Tensor, got "
            f"{type(x).__name__}; convert it with torch.as_tensor"
        )
    shape = x.shape
    if len(shape) != 4:
        raise ValueError(
            f"{type(module).__name__} expects (B, C, H, W) input, got shape {tuple(shape)}"
        )
    if shape[1] != channels:
        raise ValueError(
            f"{type(module).__name__} was built for {channels} input channels, "
            f"got an input with {shape[1]} channels (shape {tuple(shape)})"
        )
    if shape[2] < min_size or shape[3] < min_size:
        raise ValueError(
            f"{type(module).__name__} needs a feature map of at least {min_size}x{min_size} "
            f"pixels, got shape {tuple(shape)}"
        )
    floating = x.is_floating_point()  # autocast casts floats only
    if not floating or (x.dtype != parameter.dtype and not _autocast_on(x.device.type)):
        # not cast silently (as nn.Conv2d, which raises a less clear error)
        kind = "floating-point" if floating else "non-floating-point"
        raise TypeError(
            f"{type(module).__name__} has {parameter.dtype} parameters but got a {kind} "
            f"{x.dtype} input; convert the input (x.to({parameter.dtype})) or the layer "
            f"(layer.to(dtype)), or run under torch.autocast"
        )
    if x.device != parameter.device:
        raise ValueError(
            f"{type(module).__name__} has its parameters on {parameter.device} but got an "
            f"input on {x.device}; move the input (x.to({str(parameter.device)!r})) or the "
            "layer (layer.to(device))"
        )


def check_model_inputs(model: nn.Module, images: Tensor) -> None:
    """The images must be on the device and of the dtype of the model's parameters.

    Checked only where the model's floating-point parameters agree on one device and one dtype
    (a model split over devices, or of mixed precision, is left to torch), and the dtype only
    outside ``torch.autocast``, where torch casts the inputs itself.
    """
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    devices = {p.device for p in parameters}
    dtypes = {p.dtype for p in parameters}
    if len(devices) == 1:
        (device,) = devices
        if device.type == "meta":  # moving the images there would not help: no values
            raise ValueError(
                "the model's parameters are on the meta device, which holds shapes but no "
                "values; materialise the model first (e.g. model.to_empty(device='cpu'), then "
                "load its weights with load_state_dict)"
            )
        if images.device != device:
            raise ValueError(
                f"images are on {images.device} but the model's parameters are on {device}: "
                f"move them with images.to({str(device)!r})"
            )
    if len(dtypes) == 1 and not _autocast_on(images.device.type):
        (dtype,) = dtypes
        if images.dtype != dtype:
            raise TypeError(
                f"images are {images.dtype} but the model's parameters are {dtype}: pass "
                f"images.to({dtype}) (or convert the model with model.to({dtype}))"
            )


def channel_mismatch(model: nn.Module, images: Tensor, error: BaseException) -> str | None:
    """A message for ``error`` if it is torch's complaint about the images' channel count.

    The first convolution of the model (in module order) names the channels it takes; None
    when the error is about something else or the model has no convolution.
    """
    if not isinstance(error, RuntimeError) or "channels" not in str(error):
        return None
    first = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)),
        None,
    )
    if first is None or first[1].in_channels == images.shape[1]:
        return None
    name, conv = first
    return (
        f"images have {images.shape[1]} channels (shape {tuple(images.shape)}), but the model's "
        f"first convolution {name!r} takes {conv.in_channels}: pass {conv.in_channels}-channel "
        "images, read as the model was trained (see torchlap.data.load_image's channels)"
    )


def _autocast_on(device_type: str) -> bool:
    """Whether ``torch.autocast`` casts on ``device_type``; False for a device type autocast
    does not know (``meta``), where ``torch.is_autocast_enabled`` raises instead."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False
