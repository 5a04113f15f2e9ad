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
  or fail on in-place modules. Every module's ``training`` and ``inplace`` flag is restored
  afterwards, also when an error is raised;
- hook bookkeeping: every hook an explainer registers is removed when the call ends, also on
  error;
- upsampling to the input resolution, by one shared helper, :func:`upsample` (bilinear).

Explainers are also context managers: inside ``with explainer:`` the model stays in the
explanation state across several calls, and is restored on exit.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from torchlap.layers.lap import LapBase

logger = logging.getLogger(__name__)

__all__ = [
    "Explainer",
    "FeatureProbe",
    "available",
    "class_scores",
    "explain",
    "get",
    "minmax_normalize",
    "probe_features",
    "register",
    "upsample",
]

TargetLike = int | Tensor | None

_REGISTRY: dict[str, type[Explainer]] = {}

# The methods LAP is compared with (paper 000's GBP, GC, GGC, DL, RC; paper 003's Score-CAM,
# RISE and SISE) and LAP itself, in the order tables and benchmarks show them.
COMPARISON_METHODS = (
    "lap",
    "gradcam",
    "guided_gradcam",
    "guided_backprop",
    "deeplift",
    "relevance_cam",
    "scorecam",
    "rise",
    "sise",
)


# --------------------------------------------------------------------------------- registry


def register(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: register an :class:`Explainer` subclass under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an explainer name must be a non-empty string, got {name!r}")

    def decorate(cls: type[Explainer]) -> type[Explainer]:
        if not (isinstance(cls, type) and issubclass(cls, Explainer)):
            raise TypeError(f"@register({name!r}) needs an Explainer subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"an explainer named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    """Names of the registered explainers, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Explainer]:
    """The explainer class registered under ``name``; ``ValueError`` names the available ones."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown explainer {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


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
    with explainer_cls(model, **options) as explainer:
        return explainer(images, target)


# ---------------------------------------------------------------------------- shared helpers


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize maps ``(B, h, w)`` to ``size = (H, W)`` by bilinear interpolation.

    ``align_corners=False`` (pixel centres aligned, as ``torchvision`` and captum do). Every
    explainer brings its maps to the input resolution with this helper (and the masks of
    Score-CAM, RISE and SISE, and captum's Guided Grad-CAM, use the same interpolation), so
    methods are compared on the same footing.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"upsample expects maps of shape (B, h, w), got {shape}")
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def minmax_normalize(maps: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """Rescale each map to [0, 1] over ``dims`` (a constant map becomes all zeros)."""
    low = maps.amin(dim=tuple(dims), keepdim=True)
    high = maps.amax(dim=tuple(dims), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)


def class_scores(logits: Tensor, target: Tensor, kind: str = "softmax") -> Tensor:
    """The score of class ``target[i]`` for every row ``i`` of ``logits`` ``(N, K)``.

    ``kind="softmax"``: the class probability (a single-output model uses the sigmoid of its
    logit); ``kind="logit"``: the raw logit.
    """
    if kind == "softmax":
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(dim=1)
    elif kind == "logit":
        probs = logits
    else:
        raise ValueError(f"unknown score kind {kind!r}; expected 'softmax' or 'logit'")
    return probs.gather(1, target.view(-1, 1)).squeeze(1)


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


# ------------------------------------------------------------------------- the feature probe


@dataclass(eq=False)
class _Event:
    """One module call seen by the probe: output shape and the tensors going in and out."""

    index: int
    name: str
    inputs: tuple[Tensor, ...]
    output: Tensor | None


@dataclass
class FeatureProbe:
    """What one probe forward pass saw, and the feature layers it implies.

    ``cam_layer``: name of the layer the CAM methods explain by default — the input of the last
    global pooling (a module whose 4-D output is 1x1, e.g. ``avgpool`` or the adaptive LAP), or
    when there is none, the last module with a 4-D output of spatial size > 1 (``None`` when no
    module has one).
    ``block_layers``: SISE's block-wise selection (paper 003, "Block-Wise Feature Explanation"):
    the layers whose output feeds a spatial down-sampling (a module whose 4-D output has at most
    half the pixels of its 4-D input), i.e. the last layer of each block, plus ``cam_layer``; in
    forward order. Of the modules returning the same tensor the outermost is named (``layer1``,
    not ``layer1.1.relu``); branches inside a reduction block are skipped for the block's input.
    ``calls``: how often each module ran in the pass (a layer that runs more than once has no
    single output to explain).
    """

    cam_layer: str | None
    block_layers: list[str]
    calls: dict[str, int] = field(default_factory=dict)


def _is_spatial(t: object) -> bool:
    return isinstance(t, Tensor) and t.dim() == 4 and t.shape[-2] * t.shape[-1] > 1


def probe_features(model: nn.Module, sample: Tensor, hooks: list[RemovableHandle]) -> FeatureProbe:
    """Run ``model`` once on ``sample`` with forward hooks on every module and find its layers.

    Modules inside a LAP layer (the concept scorer) are not feature layers and are skipped; a LAP
    layer itself counts as a (down-sampling) pool. Hook handles go to ``hooks`` (the caller
    removes them in ``finally``).
    """
    inside_lap = set()
    for module in model.modules():
        if isinstance(module, LapBase):
            inside_lap.update(id(m) for m in module.modules() if m is not module)
    events: list[_Event] = []
    calls: dict[str, int] = {}

    def make_hook(name: str, record: bool) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if not record:
                return
            tensors = tuple(a for a in args if isinstance(a, Tensor))
            out = output if isinstance(output, Tensor) else None
            events.append(_Event(len(events), name, tensors, out))

        return hook

    for name, module in model.named_modules():
        if name:
            record = id(module) not in inside_lap
            hooks.append(module.register_forward_hook(make_hook(name, record)))
    with torch.no_grad():
        model(sample)
    for handle in hooks:
        handle.remove()
    hooks.clear()

    # the module that produced each tensor: of the modules returning the same tensor object,
    # the outermost (a block returns its last child's tensor), then the first (an identity
    # such as Dropout in eval mode returns its input)
    producer: dict[int, _Event] = {}
    for event in events:
        if event.output is not None:
            known = producer.get(id(event.output))
            if known is None or event.name.count(".") < known.name.count("."):
                producer[id(event.output)] = event

    spatial = [e for e in events if _is_spatial(e.output)]
    if not spatial:
        return FeatureProbe(cam_layer=None, block_layers=[], calls=dict(calls))
    # down-sampling: a module whose 4-D output has at most half the pixels of its 4-D input
    # (a stride-2 convolution or pool, an adaptive pool; not a "valid" 3x3 convolution)
    downsampling = [
        e
        for e in events
        if e.output is not None
        and e.output.dim() == 4
        and e.inputs
        and _is_spatial(e.inputs[0])
        and 2 * e.output.shape[-2] * e.output.shape[-1]
        <= e.inputs[0].shape[-2] * e.inputs[0].shape[-1]
    ]
    # single reduction steps (at most ~3x per side), e.g. a ResNet block or Inception's Mixed_6a,
    # unlike a container holding several steps (VGG's ``features``)
    reducing_input = {
        e.name: tuple(e.inputs[0].shape[-2:])
        for e in downsampling
        if 10 * e.output.shape[-2] * e.output.shape[-1]
        > e.inputs[0].shape[-2] * e.inputs[0].shape[-1]
    }

    def inside_reduction_block(feeder: _Event) -> bool:
        # a branch inside a reduction block (Inception's Mixed_6a, a Bottleneck's conv1) at the
        # block's input resolution: the block's own input is the layer to take
        parts = feeder.name.split(".")
        size = tuple(feeder.output.shape[-2:])
        return any(reducing_input.get(".".join(parts[:k])) == size for k in range(1, len(parts)))

    # of the pools to 1x1, only the last is the model's global pool (earlier ones are e.g. the
    # squeeze-and-excitation gates of EfficientNet/MobileNetV3 blocks)
    global_pools = [e for e in downsampling if e.output.shape[-2] == e.output.shape[-1] == 1]
    block: list[_Event] = []
    global_pool_input: _Event | None = None
    for event in downsampling:
        if global_pools and event in global_pools[:-1]:
            continue
        feeder = producer.get(id(event.inputs[0]))
        if feeder is None or feeder.index >= event.index or inside_reduction_block(feeder):
            continue  # fed by the input image, a functional op, or inside a reduction block
        if all(feeder.name != b.name for b in block):
            block.append(feeder)
        if event.output.shape[-2] == event.output.shape[-1] == 1:
            global_pool_input = feeder
    cam = global_pool_input if global_pool_input is not None else spatial[-1]
    if global_pool_input is None:
        cam = producer.get(id(cam.output), cam)
    if all(cam.name != b.name for b in block):
        block.append(cam)
    block.sort(key=lambda e: e.index)
    # a block layer must come no later than the CAM layer (layers after it are the classifier)
    names = [e.name for e in block if e.index <= cam.index]
    return FeatureProbe(cam_layer=cam.name, block_layers=names, calls=dict(calls))


class _Capture:
    """Forward hook keeping the output of one module's ``call``-th call in each forward pass."""

    def __init__(self, name: str, call: int = 0) -> None:
        self.name = name
        self.call = call
        self.count = 0
        self.output: Tensor | None = None
        self.version = 0
        self.handle: RemovableHandle | None = None

    def remove(self) -> None:
        """Remove the hook now (it is removed at the end of the call anyway)."""
        if self.handle is not None:
            self.handle.remove()

    def __call__(self, module: nn.Module, args: tuple, output: object) -> None:
        if self.count == self.call:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"layer {self.name!r} returns {type(output).__name__}, not a tensor; "
                    "choose a layer whose output is a (B, C, h, w) feature map"
                )
            self.output = output
            self.version = output._version
        self.count += 1

    def get(self) -> Tensor:
        """The captured feature map; raises if it is missing or was later changed in place."""
        if self.output is None:
            raise ValueError(f"layer {self.name!r} did not run in the forward pass")
        if self.output._version != self.version:
            raise ValueError(
                f"the output of layer {self.name!r} was modified in place after it was computed "
                "(e.g. by `x += y` in the model's forward); choose another layer"
            )
        if self.output.dim() != 4:
            raise ValueError(
                f"layer {self.name!r} outputs shape {tuple(self.output.shape)}; the method needs "
                "a (B, C, h, w) feature map"
            )
        return self.output


# ----------------------------------------------------------------------------- the base class


class Explainer:
    """Base class of every explainer (see the module docstring for the contract).

    Subclasses override :meth:`_explain`. They may use :meth:`forward` (counted model call),
    :meth:`resolve_target`, :meth:`add_hook`, :meth:`capture` and :meth:`feature_probe`.
    ``last_stats`` holds, after each call, ``forwards_per_image`` (images pushed through the
    model, divided by the batch size) and ``backwards_per_image`` (backward passes through the
    model's output, weighted the same way).
    """

    name: ClassVar[str] = ""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.last_stats: dict[str, float] = {}
        self._depth = 0
        self._saved_flags: list[tuple[nn.Module, bool, bool | None]] = []
        self._handles: list[RemovableHandle] = []
        self._probes: dict[tuple[int, ...], FeatureProbe] = {}
        self._counts = [0, 0]

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> Explainer:
        if self._depth == 0:
            self._saved_flags = [
                (
                    m,
                    m.training,
                    m.inplace if isinstance(getattr(m, "inplace", None), bool) else None,
                )
                for m in self.model.modules()
            ]
            try:
                for module, _, inplace in self._saved_flags:
                    module.training = False
                    if inplace is not None:
                        module.inplace = False
            except BaseException:
                self._restore()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> bool:
        self._depth -= 1
        if self._depth == 0:
            self._remove_hooks()
            self._restore()
        return False

    def _restore(self) -> None:
        for module, training, inplace in self._saved_flags:
            module.training = training
            if inplace is not None:
                module.inplace = inplace
        self._saved_flags = []

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def add_hook(self, handle: RemovableHandle) -> RemovableHandle:
        """Keep ``handle`` so that it is removed when the current call ends (also on error)."""
        self._handles.append(handle)
        return handle

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, images: Tensor, target: TargetLike = None) -> Tensor:
        """Maps ``(B, H, W)`` at the input resolution (bilinear, see :func:`upsample`)."""
        return upsample(self.raw(images, target), images.shape[-2:])

    def raw(self, images: Tensor, target: TargetLike = None) -> Tensor:
        """Maps ``(B, h, w)`` at the resolution the method works at."""
        maps = self.run(images, target, self._explain)
        if not isinstance(maps, Tensor) or maps.dim() != 3 or maps.shape[0] != images.shape[0]:
            shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
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
        error); the result is detached, float, on the images' device.
        """
        images = self._check_images(images)
        target = self._check_target(target, images)
        with self:
            if target is not None:  # an out-of-range class fails here, not inside captum
                with torch.no_grad():
                    self.resolve_target(target, self.forward(images[:1]))
            self._counts[:] = [0, 0]
            self.add_hook(self.model.register_forward_hook(self._count_hook))
            try:
                result = fn(images, target)
            finally:
                self._remove_hooks()
            batch = images.shape[0]
            self.last_stats = {
                "forwards_per_image": self._counts[0] / batch,
                "backwards_per_image": self._counts[1] / batch,
            }
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
        """Call the model and check that it returns logits ``(N, n_classes)``."""
        logits = self.model(images)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise TypeError(
                f"the model must return logits of shape (B, n_classes), got {shape}; "
                "wrap models with other outputs in an nn.Module returning the class scores"
            )
        return logits

    def resolve_target(self, target: Tensor | None, logits: Tensor) -> Tensor:
        """``target`` checked against ``logits``, or the predicted class when it is ``None``."""
        if target is None:
            return logits.detach().argmax(dim=1)
        n_classes = logits.shape[1]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n_classes):
            raise ValueError(
                f"target classes must lie in [0, {n_classes}) for this model, got "
                f"{target.tolist() if target.numel() <= 16 else target}"
            )
        return target

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
            hooks: list[RemovableHandle] = []
            with self:  # eval mode and no in-place activations, as in the explanation itself
                try:
                    self._probes[key] = probe_features(self.model, images[:1].detach(), hooks)
                finally:
                    for handle in hooks:
                        handle.remove()
        return self._probes[key]

    def resolve_layer(self, layer: str | nn.Module | None, images: Tensor) -> str:
        """Name of the layer to explain: the given one (name or module), or the probe's choice."""
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
        _check_layer_name(name, modules)
        calls = self.feature_probe(images).calls.get(name, 0)
        if calls == 0:
            raise ValueError(f"layer {name!r} did not run in a forward pass of the model")
        if calls > 1:
            raise ValueError(
                f"layer {name!r} runs {calls} times in one forward pass (a shared module), so it "
                "has no single output to explain; choose a layer that runs once"
            )
        return name

    def capture(self, name: str, call: int = 0) -> _Capture:
        """Register (for this call) a hook keeping the output of layer ``name``."""
        module = dict(self.model.named_modules())[name]
        cap = _Capture(name, call)
        cap.handle = self.add_hook(module.register_forward_hook(cap))
        return cap

    # -- validation -------------------------------------------------------------------------
    @staticmethod
    def _check_images(images: object) -> Tensor:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor (B, C, H, W), got {type(images)}")
        if images.dim() != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor, got dtype {images.dtype}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch (B = 0)")
        finite = torch.isfinite(images).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            raise ValueError(
                f"images {bad[:10]} (batch indices) hold NaN or infinite pixels; a map of such "
                "an image is NaN everywhere: pass finite pixels (e.g. torch.nan_to_num)"
            )
        return images.detach()

    @staticmethod
    def _check_target(target: object, images: Tensor) -> Tensor | None:
        batch = images.shape[0]
        if target is None:
            return None
        if isinstance(target, bool):
            raise TypeError("target must be None, an int or an integer tensor, got a bool")
        if isinstance(target, int):
            if target < 0:
                raise ValueError(f"target must be a class index >= 0, got {target}")
            return torch.full((batch,), target, dtype=torch.long, device=images.device)
        if isinstance(target, Tensor):
            if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
                raise TypeError(f"a target tensor must hold integer classes, got {target.dtype}")
            if target.dim() == 0:
                target = target.expand(batch)
            if target.dim() != 1 or target.shape[0] != batch:
                raise ValueError(
                    f"a target tensor must have shape ({batch},) (one class per image), "
                    f"got {tuple(target.shape)}"
                )
            if target.numel() and int(target.min()) < 0:
                raise ValueError("target classes must be >= 0")
            return target.to(device=images.device, dtype=torch.long)
        raise TypeError(
            f"target must be None, an int or an integer tensor, got {type(target).__name__}"
        )


def _check_layer_name(name: object, modules: dict[str, nn.Module]) -> None:
    if not isinstance(name, str) or not name or name not in modules:
        close = difflib.get_close_matches(str(name), [n for n in modules if n], n=5)
        hint = f"; did you mean one of {close}?" if close else ""
        raise ValueError(
            f"unknown layer {name!r}: give the name of a submodule as in "
            f"model.named_modules() (e.g. 'layer4'){hint}"
        )
