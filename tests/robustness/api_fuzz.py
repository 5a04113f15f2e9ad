"""A fuzzer of the public Python API: each argument of a call replaced in turn by bad values.

A :class:`Spec` names one public callable and a factory of valid keyword arguments. From the
type of each valid value (a tensor, an int, a float, a text, a flag, a list, a model) the fuzzer
derives bad values (a wrong type, None, a bool for a number, NaN and infinities, a tensor of
the wrong rank or dtype, with a NaN, with no sample, on the ``meta`` device, with one sample
fewer than the other tensors) and the layouts that must be accepted (a non-contiguous and a
channels-last tensor, same values). :func:`outcome` runs one case and says what happened;
the test module asserts that every case ends as the contract says (see ``Outcome``)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchlap.runs import RunError

#: the errors a refusal may raise: Python's two, and the project's own classes (all subclass one)
REFUSALS = (TypeError, ValueError, RunError)

#: what reading a path the user named may raise: Python's own words for a missing file or a
#: folder in its place (with the path), as ``open`` says them
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError)

#: bad tensors that a call may accept when the spec says so (layouts are always accepted)
TENSOR_LABELS = (
    "text",
    "list",
    "none",
    "rank-1",
    "rank+1",
    "int64",
    "bool",
    "complex",
    "nan",
    "inf",
    "batch0",
    "meta",
    "batch-1",
    "negative",
)
LAYOUTS = ("noncontiguous", "channels_last")
#: the dtypes the exhaustive (slow) sweep adds: precisions torch computes in, and smaller ints
OTHER_DTYPES = (torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.int8, torch.int32)
EXHAUSTIVE_LABELS = tuple(str(dtype).removeprefix("torch.") for dtype in OTHER_DTYPES)

#: bad shapes that disagree with another tensor argument: the message may name either
PARTNER_LABELS = ("rank-1", "rank+1", "batch0", "batch-1")


@dataclass(frozen=True)
class Spec:
    """One public callable: ``call(**args())`` must succeed, and each bad value of one argument
    (the others kept) must be refused naming it.

    ``fixed``: arguments not fuzzed (a model whose bad values other specs cover, a callback);
    ``allow``: ``{argument: {label: reason}}``, bad values this call accepts on purpose (the
    reason is the documented behaviour); ``names``: the word the message uses for an argument
    when it is not the parameter's name (a documented alias, e.g. ``"images"`` for ``x``);
    ``batch``: the tensor arguments that share the batch dimension; ``positives``: int or
    float arguments that must be > 0 (counts, sizes, rates); ``choices``: text arguments that
    name one of a set (an unknown name is refused); ``paths``: arguments naming a file
    to read (a missing file and a folder in its place are refused, the message naming the path
    or the argument; a ``FileNotFoundError`` or ``IsADirectoryError`` is a refusal there);
    ``writes``: the argument naming the file the call writes (a refusal must leave its folder
    as it was); ``keywords``: dict arguments passed on as keyword arguments (a text, a list of
    pairs and a key that is not a str are refused); ``slow``: swept only by the slow test (the
    calls run a model many times)."""

    id: str
    call: Callable[..., Any]
    args: Callable[[], dict[str, Any]]
    fixed: frozenset[str] = frozenset()
    allow: dict[str, dict[str, str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    batch: tuple[str, ...] = ()
    positives: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    writes: str | None = None
    paths: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    slow: bool = False


#: forward passes of the models made by :func:`counted` since the case started
FORWARDS = [0]


def counted(model: nn.Module) -> nn.Module:
    """``model`` with a pre-hook counting its forward passes in :data:`FORWARDS` (a refusal
    must come before any)."""

    def count(module: nn.Module, args: object) -> None:
        FORWARDS[0] += 1

    model.register_forward_pre_hook(count)
    return model


def _optional(call: Callable[..., Any], name: str) -> bool:
    """Whether ``call``'s parameter ``name`` takes None (its annotation or its default)."""
    try:
        parameter = inspect.signature(call).parameters.get(name)
    except (TypeError, ValueError):
        return False
    if parameter is None:
        return False
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "None" in text or parameter.default is None


def _with_nan(tensor: Tensor, value: float) -> Tensor:
    bad = tensor.clone()
    bad.view(-1)[0] = value
    return bad


def _tensor_values(spec: Spec, name: str, value: Tensor) -> Iterator[tuple[str, object]]:
    yield "text", "abc"
    yield "list", value.tolist()
    if not _optional(spec.call, name):
        yield "none", None
    if value.dim() >= 1:
        yield "rank-1", value[0]
    yield "rank+1", value.unsqueeze(0)
    if value.is_floating_point():
        yield "int64", value.round().to(torch.int64)
        yield "bool", value > 0.5
        yield "complex", value.to(torch.complex64)
        if value.numel():
            yield "nan", _with_nan(value, math.nan)
            yield "inf", _with_nan(value, math.inf)
    elif value.dtype != torch.bool and value.numel():
        yield "negative", _with_nan(value, -1)
        yield "huge", _with_nan(value, 1000)  # a class index, a box edge past any size
        yield "complex", value.to(torch.complex64)
    if name in spec.batch and value.dim() >= 1:
        yield "batch0", value[:0]
        if value.shape[0] >= 2 and len(spec.batch) >= 2:
            yield "batch-1", value[:-1]
    if value.dim() >= 2 and value.shape[-1] and value.shape[-2]:
        yield "empty-map", value[..., :0, :0]
    yield "meta", value.to("meta")


def _other_dtypes(value: Tensor) -> Iterator[tuple[str, Tensor]]:
    """The exhaustive sweep's further dtypes: each is refused naming the argument or accepted
    (a result), never an error from inside."""
    for dtype in OTHER_DTYPES:
        if dtype != value.dtype:
            yield str(dtype).removeprefix("torch."), value.to(dtype)


def _layouts(value: Tensor) -> Iterator[tuple[str, Tensor]]:
    if value.dim() >= 2 and value.shape[-1] > 1 and value.shape[-2] > 1:
        yield "noncontiguous", value.transpose(-1, -2).contiguous().transpose(-1, -2)
    if value.dim() == 4 and value.shape[1] > 1:
        yield "channels_last", value.contiguous(memory_format=torch.channels_last)


def _scalar_values(spec: Spec, name: str, value: object) -> Iterator[tuple[str, object]]:
    optional = _optional(spec.call, name)
    if not optional:
        yield "none", None
    if isinstance(value, bool):
        yield "text", "yes"
        yield "int", 1
    elif isinstance(value, int):
        yield "text", str(value)
        yield "float", value + 0.5
        yield "bool", True
        yield "negative", -1
        if name in spec.positives:
            yield "zero", 0
        yield "nan", math.nan
    elif isinstance(value, float):
        yield "text", str(value)
        yield "bool", True
        yield "nan", math.nan
        yield "inf", math.inf
        yield "-inf", -math.inf
        if name in spec.positives:
            yield "zero", 0.0
            yield "negative", -1.0
    elif isinstance(value, str):
        yield "int", 3
        if name in spec.choices:
            yield "unknown", "no-such-choice"
        if name in spec.paths:
            yield "missing", str(Path(value).parent / "no-such-file")
            yield "folder", str(Path(value).parent)
    elif (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        yield "text", "abc"
        yield "empty", type(value)()
        yield "nan-item", type(value)([math.nan, *value[1:]])
        yield "text-item", type(value)(["x", *value[1:]])
        yield "bool-item", type(value)([True, *value[1:]])
    elif isinstance(value, dict) and name in spec.keywords:
        yield "text", "abc"
        yield "pairs", list(value.items())
        yield "int-key", {1: 1, **value}
    elif isinstance(value, nn.Module):
        yield "text", "model"
    elif callable(value):
        yield "text", "abc"


def cases(spec: Spec, exhaustive: bool = False) -> list[tuple[str, str]]:
    """``(argument, label)`` of every bad value (and layout) fuzzed for ``spec``; with
    ``exhaustive`` only the further dtypes of every tensor argument (``OTHER_DTYPES``)."""
    valid = spec.args()
    found = []
    for name, value in valid.items():
        if name in spec.fixed:
            continue
        if exhaustive:
            if isinstance(value, Tensor):
                found += [(name, label) for label, _ in _other_dtypes(value)]
            continue
        if isinstance(value, Tensor):
            labels = [label for label, _ in _tensor_values(spec, name, value)]
            labels += [label for label, _ in _layouts(value)]
        else:
            labels = [label for label, _ in _scalar_values(spec, name, value)]
        found += [(name, label) for label in labels]
    return found


def bad_value(spec: Spec, valid: dict[str, Any], name: str, label: str) -> object:
    """The bad value ``label`` of argument ``name`` (its valid value in ``valid``)."""
    value = valid[name]
    if isinstance(value, Tensor):
        values = dict(_tensor_values(spec, name, value)) | dict(_layouts(value))
        values |= dict(_other_dtypes(value))
    else:
        values = dict(_scalar_values(spec, name, value))
    return values[label]


def _tensors(value: object) -> list[Tensor]:
    """The tensors in ``value`` (a tensor, a sequence or dict of them, a dataclass of them)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for k in value.__dataclass_fields__ for t in _tensors(getattr(value, k))]
    return []


def _same(a: object, b: object) -> bool:
    """Equal results; floating tensors up to the rounding of a changed reduction order."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():
            return torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
        return torch.equal(a, b)
    if isinstance(a, Path) and isinstance(b, Path):  # a written file: its bytes
        return a.read_bytes() == b.read_bytes()
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__") and type(a) is type(b):
        return all(_same(getattr(a, k), getattr(b, k)) for k in a.__dataclass_fields__)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b))
    return a == b


def _listing(folder: Path | None) -> list[str]:
    """The entries below ``folder`` (none without one)."""
    if folder is None or not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def outcome(spec: Spec, name: str, label: str) -> str:
    """What the call did with the bad value: ``"refused"`` (a typed error naming the
    argument), ``"same"`` (a layout that gave the valid call's result), ``"meta result"`` or
    ``"empty result"`` (a meta or empty tensor in, the same out: nothing read), else the fault:
    ``"accepted"``, ``"different result"``, ``"unnamed <Error>: <message>"``, ``"refused after
    a model pass"``, ``"refused after writing [...]"`` or ``"<Error>: <message>"`` (an
    error from inside)."""
    valid = spec.args()
    arguments = dict(valid)
    arguments[name] = bad_value(spec, valid, name, label)
    folder = Path(valid[spec.writes]).parent if spec.writes else None
    before = _listing(folder)
    torch.manual_seed(0)
    FORWARDS[0] = 0
    refusals = REFUSALS + (PATH_ERRORS if label in ("missing", "folder") else ())
    try:
        result = spec.call(**arguments)
    except refusals as error:
        message = str(error)
        if _listing(folder) != before:
            return f"refused after writing {sorted(set(_listing(folder)) - set(before))}"
        if FORWARDS[0]:
            return "refused after a model pass"
        words = {spec.names.get(name, name)}
        if label in PARTNER_LABELS and name in spec.batch:  # the shapes disagree: either named
            words |= {spec.names.get(n, n) for n in spec.batch}
        if label in ("missing", "folder"):  # the path itself names what was wrong
            words.add(str(arguments[name]))
        if not any(word in message for word in words):
            return f"unnamed {type(error).__name__}: {message[:160]}"
        return "refused"
    except Exception as error:  # the fault reported
        return f"{type(error).__name__}: {str(error)[:160]}"
    tensors = _tensors(result)
    if label == "meta" and tensors and all(t.device.type == "meta" for t in tensors):
        return "meta result"  # shapes in, shapes out: no value read
    if label in ("batch0", "empty-map") and tensors and all(t.numel() == 0 for t in tensors):
        return "empty result"
    if label in LAYOUTS:
        torch.manual_seed(0)
        expected = spec.call(**spec.args())
        return "same" if _same(result, expected) else "different result"
    return "accepted"


def expected(spec: Spec, name: str, label: str) -> set[str]:
    """The outcomes the contract allows for the case."""
    if label in LAYOUTS:
        return {"same"}
    if label in spec.allow.get(name, {}):
        return {"refused", "accepted", "empty result", "meta result", "refused after a model pass"}
    if label == "meta":
        return {"refused", "meta result"}
    if label in ("batch0", "empty-map"):
        return {"refused", "empty result"}
    if label in EXHAUSTIVE_LABELS:
        return {"refused", "accepted", "empty result"}
    return {"refused"}
