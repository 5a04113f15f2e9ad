"""The explainer contract shared by every method, the method registry and the shared helpers.

Every explainer is built as ``Explainer(model, **options)`` and called as
``explainer(images, target)``; it returns one map per image, shape ``(B, H, W)`` at the input
resolution, float, on the images' device. ``explainer.raw(images, target)`` returns the same maps
at the resolution the method works at (a layer's resolution for the CAM methods and the LAP
maps; the input resolution for the pixel-space and perturbation methods).

A subclass overrides one function, ``_explain(images, target) -> Tensor (B, h, w)``; the base
class does the rest:

- ``target`` handling: ``None`` (the predicted class, read from a forward pass the method makes
  anyway when it can), an ``int``, or an integer tensor of per-sample classes;
- the evaluation context: explainers run the model in eval mode (BatchNorm uses its running
  statistics, Dropout is off, so maps are deterministic), and switch every ``inplace=True``
  activation to out-of-place, because hook-based libraries (captum, zennit) compute wrong values
  or fail on in-place modules (the masked forwards of the perturbation methods, which keep no
  graph and capture nothing, switch them back on: :meth:`Explainer.in_place_forwards`). Every
  module's ``training`` and ``inplace`` flag is restored afterwards, also when an error is
  raised;
- hook bookkeeping: every hook an explainer registers is removed when the call ends, also on
  error;
- the last maps the model's LAP layers (and BLA pools, the ante-hoc model) keep are the
  caller's again when the call ends: the method's own forwards (its batches, masked copies,
  baselines, and the autograd graph they hold) neither replace them nor stay alive in them;
- upsampling to the input resolution, by one shared helper, :func:`upsample` (bilinear).

Explainers are also context managers: inside ``with explainer:`` the model stays in the
explanation state across several calls, and is restored on exit. One thread at a time explains
a model (:mod:`~torchlap.explainers.exclusive`): another thread's call waits for it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from torchlap._hooks import Hooks
from torchlap.explainers.exclusive import model_lock
from torchlap.explainers.inputs import (
    autograd_copies,
    channel_mismatch,
    check_images,
    check_layer_name,
    check_model_inputs,
    check_target,
    class_scores,
    logits_error,
    needs_autograd_copies,
    non_finite_outputs,
)
from torchlap.explainers.maps import minmax_normalize, upsample
from torchlap.explainers.probe import Capture, FeatureProbe, probe_features
from torchlap.layers._state import kept_last_maps

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "Explainer",
    "FeatureProbe",
    "applicability",
    "available",
    "check_options",
    "class_scores",
    "comparison_methods",
    "display_name",
    "explain",
    "get",
    "method_facts",
    "minmax_normalize",
    "own_scale",
    "probe_features",
    "register",
    "registered",
    "table_order",
    "unregister",
    "upsample",
]

TargetLike = int | Tensor | None

#: what kind of explanation a method gives (:attr:`Explainer.kind`): the model's own map (one
#: forward pass of a model built to explain itself), a backward pass (gradients or relevance
#: propagation), or many forward passes on perturbed inputs
KINDS = ("own map", "gradient", "perturbation")

_REGISTRY: dict[str, type[Explainer]] = {}


# --------------------------------------------------------------------------------- registry
#
# Everything the package knows about a method is a class attribute of its Explainer (the
# "facts" block of :class:`Explainer`: display name, kind, applies_to, native threshold, ranks,
# run facts) and is read here, nothing else lists the methods: evaluate, bench, explain and the
# demo derive their lists from these functions, the report from the facts evaluate writes into
# results.json (``results["methods"]``, :func:`method_facts`).


def register(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: register an :class:`Explainer` subclass under ``name``. The class's
    facts are checked here (``kind`` one of :data:`KINDS`, ranks ints or None, a
    ``native_threshold`` a number or None), so a bad registration fails at import."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an explainer name must be a non-empty string, got {name!r}")

    def decorate(cls: type[Explainer]) -> type[Explainer]:
        if not (isinstance(cls, type) and issubclass(cls, Explainer)):
            raise TypeError(f"@register({name!r}) needs an Explainer subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"an explainer named {name!r} is already registered")
        _check_facts(name, cls)
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _check_facts(name: str, cls: type[Explainer]) -> None:
    if cls.kind not in KINDS:
        raise ValueError(f"explainer {name!r}: kind must be one of {KINDS}, got {cls.kind!r}")
    if not isinstance(cls.display_name, str):
        raise TypeError(f"explainer {name!r}: display_name must be a str, got {cls.display_name!r}")
    for fact in ("comparison_rank", "column_rank"):
        value = getattr(cls, fact)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"explainer {name!r}: {fact} must be an int or None, got {value!r}")
    threshold = cls.native_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, type(None))):
        raise TypeError(
            f"explainer {name!r}: native_threshold must be a number or None, got {threshold!r}"
        )


def unregister(name: str) -> type[Explainer]:
    """Remove the explainer registered under ``name`` and return its class."""
    cls = get(name)
    del _REGISTRY[name]
    return cls


@contextmanager
def registered(name: str, cls: type[Explainer]) -> Iterator[type[Explainer]]:
    """Register ``cls`` under ``name`` for the ``with`` block only (tests, experiments)."""
    register(name)(cls)
    try:
        yield cls
    finally:
        _REGISTRY.pop(name, None)


def available() -> list[str]:
    """Names of the registered explainers, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Explainer]:
    """The explainer class registered under ``name``; ``ValueError`` names the available ones."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown explainer {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def check_options(name: str, options: object) -> None:
    """``ValueError`` naming the options of ``options`` (a dict) that method ``name``'s
    constructor does not take, and the ones it does; ``TypeError`` for a non-dict."""
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise TypeError(f"the options of {name!r} must be a dict of str keys, got {options!r}")
    parameters = list(inspect.signature(get(name).__init__).parameters.values())[2:]  # self, model
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    if unknown := [key for key in options if key not in accepted]:
        raise ValueError(f"{name} has no option(s) {unknown}; its options: {', '.join(accepted)}")


def comparison_methods() -> tuple[str, ...]:
    """The default comparison set (evaluate's and bench's default methods): the methods with a
    ``comparison_rank``, in its order (LAP, then paper 000's GC, GGC, GBP, DL, RC, then paper
    003's Score-CAM, RISE, SISE)."""
    ranked = [(cls.comparison_rank, name) for name, cls in _REGISTRY.items()]
    return tuple(name for rank, name in sorted(r for r in ranked if r[0] is not None))


def table_order(names: Iterable[str] | None = None) -> list[str]:
    """``names`` (default: every registered method) in the column order of the report's tables
    (:attr:`Explainer.column_rank`: paper 000's Table II, then papers 002-004), methods without
    a rank (and unknown names) after them in the order given."""
    if isinstance(names, (str, bytes)):
        raise TypeError(f"names must be a list of method names (or None), got {names!r}")
    names = list(dict.fromkeys(available() if names is None else names))

    def rank(name: str) -> tuple[int, int]:
        cls = _REGISTRY.get(name)
        if cls is None or cls.column_rank is None:
            return (1, names.index(name))
        return (0, cls.column_rank)

    return sorted(names, key=rank)


def display_name(name: str) -> str:
    """The short name tables and figures show (``"gradcam"`` -> ``"GC"``)."""
    return get(name).display_name or name


def own_scale(name: str) -> bool:
    """Whether method ``name``'s maps have one scale in every image (a native threshold, LAP's
    0.5: paper 000 IV.B): figures draw them as they are on [0, 1], not divided by their peak."""
    return get(name).native_threshold is not None


def applicability(name: str, model: nn.Module) -> str | None:
    """``None`` when method ``name`` can explain ``model``, else why not (e.g. ``"the model has
    no LAP layer"``; evaluate records it under ``results["skipped"]``)."""
    cls = get(name)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return None if cls.applies_to(model) else cls.not_applicable


def method_facts(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"display_name", "kind", "column_rank"}}`` for ``names``, in
    :func:`table_order`: what the report (which imports no explainer) needs, as evaluate writes
    it to ``results["methods"]``."""
    return {
        name: {
            "display_name": display_name(name),
            "kind": get(name).kind,
            "column_rank": get(name).column_rank,
        }
        for name in table_order(names)
    }


def explain(
    model: nn.Module,
    images: Tensor,
    method: str = "lap",
    target: TargetLike = None,
    **options: Any,
) -> Tensor:
    """Explain ``model``'s decision on ``images`` with ``method``: one map per image.

    Returns a float tensor ``(B, H, W)`` at the input resolution, on the images' device.
    ``target`` is ``None`` (the predicted class), an ``int`` or an integer tensor ``(B,)``.
    ``options`` go to the explainer's constructor (see each method's class for its options;
    :func:`available` lists the method names).
    """
    explainer_cls = get(method)
    check_options(method, options)
    with explainer_cls(model, **options) as explainer:
        return explainer(images, target)


# ----------------------------------------------------------------------------- the base class


class Explainer:
    """Base class of every explainer (see the module docstring for the contract).

    Subclasses override :meth:`_explain`. They may use :meth:`forward` (counted model call),
    :meth:`resolve_target`, :attr:`hooks`, :meth:`capture` and :meth:`feature_probe`.
    ``last_stats`` holds, after each call, ``forwards_per_image`` (images pushed through the
    model, divided by the batch size) and ``backwards_per_image`` (backward passes through the
    model's output, weighted the same way).
    """

    name: ClassVar[str] = ""

    # -- facts, read through the registry (register, comparison_methods, method_facts) ----
    #: the short name of tables and figures ("" : the registered name)
    display_name: ClassVar[str] = ""
    #: one of :data:`KINDS`: "own map", "gradient" or "perturbation"
    kind: ClassVar[str] = "gradient"
    #: the threshold the method's maps are binarized at by construction (LAP's 0.5, paper
    #: 000); ``None``: evaluate fits a global threshold on the validation images
    native_threshold: ClassVar[float | None] = None
    #: position in the default comparison set (:func:`comparison_methods`); None: not in it
    comparison_rank: ClassVar[int | None] = None
    #: column position in the report's tables (:func:`table_order`); None: after the ranked
    column_rank: ClassVar[int | None] = None
    #: facts of the run or the evaluation the constructor takes as options, passed when known
    #: (LAP: the run's ``"concept_sets"``; RISE: ``"seed"``, evaluate's ``--seed``)
    run_facts: ClassVar[tuple[str, ...]] = ()
    #: why the method does not apply to a model :meth:`applies_to` refuses
    not_applicable: ClassVar[str] = "the method does not apply to this model"

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """Whether the method can explain ``model`` (default: every classifier)."""
        return True

    @classmethod
    def ranking_options(cls, options: dict[str, Any], ranking: str) -> dict[str, Any] | None:
        """Options giving the maps of the metrics that rank pixels, when they differ from the
        maps of ``options`` (LAP: the ``ranking`` variant of "LAP All"); ``None``: the same."""
        return None

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.last_stats: dict[str, float] = {}
        self._depth = 0
        self._saved_flags: list[tuple[nn.Module, bool, bool | None]] = []
        self._kept_maps: AbstractContextManager | None = None
        #: hooks for the current call (``self.hooks.forward(module, fn)``, ``forward_pre``):
        #: removed when it ends, whatever ends it, also a KeyboardInterrupt mid-registration
        self.hooks = Hooks()
        self._probes: dict[tuple[int, ...], FeatureProbe] = {}
        self._counts = [0, 0]
        self._lock = model_lock(model)

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> Explainer:
        depth = None  # set once the lock is ours (one explanation at a time: exclusive.py)
        try:
            depth = self._depth if self._lock.acquire() else None
            if depth == 0:
                self._start()
            self._depth = depth + 1
            return self
        except BaseException:  # also an interrupt after _start: the model back, lock freed
            if depth is not None:
                self._depth = depth
                if depth == 0:
                    self._restore()
                self._lock.release()
            raise

    def _start(self) -> None:
        """Enter the explanation state: save every module's flags, switch them (see above)."""
        # the caller's last maps (LAP, BLA, ante-hoc) again afterwards, not the method's
        kept = kept_last_maps(self.model)
        kept.__enter__()
        self._kept_maps = kept  # only once entered: _restore exits it
        self._saved_flags = [
            (m, m.training, m.inplace if isinstance(getattr(m, "inplace", None), bool) else None)
            for m in self.model.modules()
        ]
        for module, _, inplace in self._saved_flags:  # undone by __enter__ if this fails
            module.training = False
            if inplace:  # only the flags that are on: a read-only False one is left alone
                module.inplace = False

    def __exit__(self, *exc_info: object) -> bool:
        try:
            self._depth -= 1
            if self._depth == 0:
                try:
                    self.hooks.remove()
                finally:  # the flags and maps back even if the removal is interrupted
                    self._restore()
        finally:
            self._lock.release()
        return False

    @contextmanager
    def in_place_forwards(self) -> Iterator[None]:
        """Within the explanation context: the modules' own ``inplace`` flags back on.

        The context switches them off for the gradient methods; forwards that keep no graph and
        capture no activation (the masked forwards of the perturbation methods) run faster with
        them on (an in-place ReLU writes its input instead of a new tensor: a LAP-ResNet18
        forward 11% faster at 112 px, measured). Switched off again when the block ends, also
        on error. Outside the explanation context it changes nothing.
        """
        switched = [module for module, _, inplace in self._saved_flags if inplace]
        try:
            for module in switched:
                module.inplace = True
            yield
        finally:
            for module in switched:
                module.inplace = False

    def _restore(self) -> None:
        for module, training, inplace in self._saved_flags:
            module.training = training
            if inplace is not None and module.inplace != inplace:
                module.inplace = inplace
        self._saved_flags = []
        kept, self._kept_maps = self._kept_maps, None
        if kept is not None:
            kept.__exit__(None, None, None)

    def add_hook(self, handle: RemovableHandle) -> RemovableHandle:
        """Keep ``handle`` so that it is removed when the current call ends (also on error)."""
        return self.hooks.keep(handle)

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, images: Tensor, target: TargetLike = None) -> Tensor:
        """Maps ``(B, H, W)`` at the input resolution (bilinear, see :func:`upsample`)."""
        return upsample(self.raw(images, target), images.shape[-2:])

    def raw(self, images: Tensor, target: TargetLike = None) -> Tensor:
        """Maps ``(B, h, w)`` at the resolution the method works at."""
        maps = self.run(images, target, self._explain)  # a tensor (run checks)
        if maps.dim() != 3 or maps.shape[0] != images.shape[0]:
            shape = tuple(maps.shape)
            raise RuntimeError(f"{type(self).__name__} returned {shape}, expected (B, h, w)")
        return maps

    def run(
        self,
        images: Tensor,
        target: TargetLike,
        fn: Callable[[Tensor, Tensor | None], Tensor],
    ) -> Tensor:
        """Check the inputs, then run ``fn(images, target)`` in the explanation context.

        Hooks added during the call are removed and flags restored when it ends (also on
        error); the result is detached, float, on the images' device. Called under
        ``torch.inference_mode`` (or with inference tensors), it runs outside it on copies of
        the inputs: the gradient methods need autograd, which inference mode switches off.
        """
        if needs_autograd_copies(images, target):
            with torch.inference_mode(False):
                return self.run(*autograd_copies(images, target), fn)
        images = check_images(images)
        target = check_target(target, images)
        check_model_inputs(self.model, images)
        with self:
            try:
                if target is not None:  # an out-of-range class fails here, not inside captum
                    with torch.no_grad():
                        self.resolve_target(target, self.forward(images[:1]))
                self._counts[:] = [0, 0]
                self.hooks.forward(self.model, self._count_hook)
                result = fn(images, target)
            except RuntimeError as error:  # torch names the probe's shape, not the user's
                message = channel_mismatch(self.model, images, error)
                if message is None:
                    raise
                raise ValueError(message) from error
            finally:
                self.hooks.remove()
            batch = images.shape[0]
            self.last_stats = {
                "forwards_per_image": self._counts[0] / batch,
                "backwards_per_image": self._counts[1] / batch,
            }
        if not isinstance(result, Tensor):  # a subclass's bug, named (not "no .detach")
            kind = type(result).__name__
            raise RuntimeError(f"{type(self).__name__} returned {kind}, expected a tensor")
        dtype = images.dtype if images.is_floating_point() else torch.float32
        return result.detach().to(device=images.device, dtype=dtype)

    def _explain(self, images: Tensor, target: Tensor | None) -> Tensor:
        """Return maps ``(B, h, w)``; ``target`` is ``None`` or a long tensor ``(B,)``."""
        raise NotImplementedError

    def _count_hook(self, module: nn.Module, args: tuple, output: object) -> None:
        if isinstance(output, Tensor) and output.dim() >= 1:
            rows = output.shape[0]
            self._counts[0] += rows
            if output.requires_grad:

                def count_backward(grad: Tensor) -> None:
                    self._counts[1] += rows

                output.register_hook(count_backward)

    # -- helpers for subclasses -------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Call the model and check that it returns logits ``(N, num_classes)``."""
        logits = self.model(images)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise logits_error(logits, images.shape[0])
        return logits

    def resolve_target(self, target: Tensor | None, logits: Tensor) -> Tensor:
        """``target`` checked against ``logits``, or the predicted class when it is ``None``.

        Every row of ``logits`` must be finite (a NaN logit makes the argmax, the class
        probabilities and the method's scores meaningless): ``ValueError`` naming the images
        otherwise. One device sync, the class-range check included.
        """
        finite = logits.detach().isfinite().all(dim=1)
        low = high = 0
        if target is not None and target.numel():
            counts = torch.stack([target.min(), target.max(), (~finite).sum().to(target)])
            low, high, bad = counts.tolist()
        else:
            bad = not bool(finite.all())
        if low < 0 or high >= logits.shape[1]:
            raise ValueError(
                f"target classes must lie in [0, {logits.shape[1]}) for this model, got "
                f"{target.tolist() if target.numel() <= 16 else target}"
            )
        if bad:
            raise non_finite_outputs(self.name or type(self).__name__, finite)
        return logits.detach().argmax(dim=1) if target is None else target

    def check_finite_rows(
        self, values: Tensor, images: Tensor | None = None, masked: bool = False
    ) -> None:
        """``ValueError`` (:func:`~torchlap.explainers.inputs.non_finite_outputs`) unless every
        row of ``values`` is finite; ``images``: the image index of each row (default: row
        ``i`` is image ``i``); ``masked``: rows of masked copies' scores. One device sync."""
        # no rows: nothing was scored (every feature map constant), nothing to check
        finite = values.detach().isfinite().reshape(len(values), -1 if len(values) else 0).all(1)
        if not bool(finite.all()):
            raise non_finite_outputs(self.name or type(self).__name__, finite, images, masked)

    def predict_target(self, images: Tensor, target: Tensor | None) -> Tensor:
        """The resolved target, running one forward pass only when ``target`` is ``None``."""
        if target is not None:
            return target
        with torch.no_grad():
            return self.resolve_target(None, self.forward(images))

    def feature_probe(self, images: Tensor) -> FeatureProbe:
        """The model's feature layers (see :class:`FeatureProbe`), probed once per image size."""
        key = tuple(images.shape[1:])
        if key not in self._probes:
            with self:  # eval mode and no in-place activations, as in the explanation itself
                # probe_features removes its hooks itself, whatever ends it
                self._probes[key] = probe_features(self.model, images[:1].detach(), [])
        return self._probes[key]

    def resolve_layer(self, layer: str | nn.Module | None, images: Tensor) -> str:
        """Name of the layer to explain: the given one (name or module), or the probe's choice.

        Accepted: a submodule that runs once in a forward pass and outputs ``(B, C, h, w)``
        feature maps of more than one pixel (a 1x1 map, e.g. the global pool's output, would
        give a flat map); anything else raises ``ValueError`` saying why.
        """
        modules = dict(self.model.named_modules())
        if layer is None:
            name = self.feature_probe(images).cam_layer
            if name is None:
                raise ValueError(
                    "found no layer with a 4-D output of spatial size > 1 in one forward pass; "
                    "this method needs a convolutional model taking (B, C, H, W) images"
                )
        elif isinstance(layer, nn.Module):
            found = [n for n, m in modules.items() if m is layer and n]
            if not found:
                raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
            name = found[0]
        else:
            name = layer
        check_layer_name(name, modules)
        probe = self.feature_probe(images)
        calls = probe.ran(name)  # ValueError: the layer did not run, or returned no tensor
        shape = probe.shapes.get(name)
        if shape is not None and len(shape) != 4:
            default = f" (the default here: {probe.cam_layer!r})" if probe.cam_layer else ""
            raise ValueError(
                f"layer {name!r} outputs shape ({', '.join(['B', *map(str, shape[1:])])}); "
                f"{type(self).__name__} explains a layer "
                f"with a (B, C, h, w) output{default}"
            )
        if calls > 1:
            raise ValueError(
                f"layer {name!r} runs {calls} times in one forward pass (a shared module), so it "
                "has no single output to explain; choose a layer that runs once"
            )
        if shape is not None and shape[2] * shape[3] == 1:
            default = f", e.g. the last block {probe.cam_layer!r}" if probe.cam_layer else ""
            raise ValueError(
                f"layer {name!r} outputs 1x1 feature maps (shape "
                f"({', '.join(['B', *map(str, shape[1:])])}) for {images.shape[-2]}x"
                f"{images.shape[-1]} images): {type(self).__name__} weighs a layer's feature "
                "maps over their pixels, and 1x1 maps give every pixel the same value (a flat "
                f"map); choose a layer before the global pool{default}"
            )
        return name

    def explained_layers(self) -> list[str | nn.Module | None]:
        """The ``layer`` options this explainer resolves with :meth:`resolve_layer` (None: the
        probe's choice); none for the methods that explain no chosen layer."""
        return []

    def check_layers(self, images: Tensor) -> None:
        """Resolve :meth:`explained_layers` on a probe of ``images[:1]``: a layer that does not
        run, runs twice or has no ``(B, C, h, w)`` output is named before any work (evaluate
        calls it for every method first). The probe is cached for the explanation itself."""
        images = check_images(images)
        check_model_inputs(self.model, images)
        with self:
            for layer in self.explained_layers():
                self.resolve_layer(layer, images[:1])

    def capture(self, name: str, call: int = 0) -> Capture:
        """Register (for this call) a hook keeping the output of layer ``name``."""
        module = dict(self.model.named_modules())[name]
        cap = Capture(name, call)
        cap.handle = self.hooks.forward(module, cap)
        return cap
