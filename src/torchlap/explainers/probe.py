"""The feature probe: one forward pass with a hook on every module, and the layers it implies.

The CAM methods explain the input of the model's global pool (:attr:`FeatureProbe.cam_layer`);
SISE reads the last layer of each block (:attr:`FeatureProbe.block_layers`). Both are found
from the shapes one forward pass produces, so that any convolutional model works without
naming its layers. :class:`Capture` keeps one layer's output during an explanation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from torchlap._hooks import Hooks, kept_training_flags
from torchlap.layers._state import kept_last_maps
from torchlap.layers.lap import LapBase

__all__ = ["Capture", "FeatureProbe", "probe_features"]


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
    forward order; a layer with no convolution since the previous one is left out (its "block"
    holds no convolution: a VGG's last pooled maps before its flatten). Of the modules
    returning the same tensor the outermost is named (``layer1``, not ``layer1.1.relu``);
    branches inside a reduction block are skipped for the block's input,
    except in a block ending with the reduction after a convolution of its own (a stage
    conv-BN-ReLU-pool: ``layer1.relu`` of SmallCNN), where the container (``layer2``, whose
    input is the previous stage's pooled output) is skipped instead. Layers that ran before the
    model's first convolution (a run's input ``normalize``: the image itself) are skipped.
    ``calls``: how often each module ran in the pass (a layer that runs more than once has no
    single output to explain: where the rules above choose one, e.g. a ReLU module applied
    after every convolution, its call's input layer is chosen instead, the convolution).
    ``shapes``: the shape of each module's tensor output (its first call; modules inside a LAP
    layer and modules returning no tensor are absent). ``order``: the position of each
    module's first call in forward order (when its output was computed; a container after its
    children; modules inside a LAP layer are absent). ``non_tensor``: the type of the output
    of each module returning no tensor (a tuple, a dict; its first call; inside a LAP layer
    too).
    """

    cam_layer: str | None
    block_layers: list[str]
    calls: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)
    non_tensor: dict[str, str] = field(default_factory=dict)

    def ran(self, name: str) -> int:
        """How often layer ``name`` ran in the probe's pass; ``ValueError`` when it did not run
        or returned no tensor (a tuple or a dict is no feature map to explain)."""
        calls = self.calls.get(name, 0)
        if calls == 0:
            raise ValueError(f"layer {name!r} did not run in a forward pass of the model")
        if name in self.non_tensor:
            raise ValueError(
                f"layer {name!r} returns a {self.non_tensor[name]}, not a tensor; choose a layer "
                "whose output is a (B, C, h, w) feature map (e.g. a submodule of it)"
            )
        return calls


def _is_spatial(t: object) -> bool:
    return isinstance(t, Tensor) and t.dim() == 4 and t.shape[-2] * t.shape[-1] > 1


def _pixels(t: Tensor) -> int:
    return t.shape[-2] * t.shape[-1]


def _record(
    model: nn.Module, sample: Tensor, hooks: list[RemovableHandle]
) -> tuple[list[_Event], dict[str, int], dict[str, str]]:
    """Every module call of one forward pass (modules inside a LAP layer are counted, not
    recorded: the concept scorer is no feature layer)."""
    inside_lap = set()
    for module in model.modules():
        if isinstance(module, LapBase):
            inside_lap.update(id(m) for m in module.modules() if m is not module)
    events: list[_Event] = []
    calls: dict[str, int] = {}
    non_tensor: dict[str, str] = {}

    def make_hook(name: str, record: bool) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if not isinstance(output, Tensor):  # inside a LAP layer too (its concept scorer)
                non_tensor.setdefault(name, type(output).__name__)
            if not record:
                return
            tensors = tuple(a for a in args if isinstance(a, Tensor))
            out = output if isinstance(output, Tensor) else None
            events.append(_Event(len(events), name, tensors, out))

        return hook

    # ``registered`` also removes a hook whose handle never reached ``hooks``
    with Hooks() as registered, kept_training_flags(model):
        try:
            for name, module in model.named_modules():
                if name:
                    record = id(module) not in inside_lap
                    hooks.append(registered.forward(module, make_hook(name, record)))
            for module in model.modules():  # eval: no batch-norm statistics, no dropout draws
                module.training = False
            with torch.no_grad(), kept_last_maps(model):
                model(sample)
        finally:  # also when the forward (or a KeyboardInterrupt) stops the probe midway
            while hooks:
                hooks.pop().remove()
    return events, calls, non_tensor


def _producers(events: list[_Event]) -> dict[int, _Event]:
    """The module that produced each tensor: of the modules returning the same tensor object,
    the outermost (a block returns its last child's tensor), then the first (an identity such
    as Dropout in eval mode returns its input)."""
    producer: dict[int, _Event] = {}
    for event in events:
        if event.output is not None:
            known = producer.get(id(event.output))
            if known is None or event.name.count(".") < known.name.count("."):
                producer[id(event.output)] = event
    return producer


def _downsampling(events: list[_Event], modules: dict[str, nn.Module]) -> list[_Event]:
    """Modules whose 4-D output has at most half the pixels of their 4-D input (a stride-2
    convolution or pool, an adaptive pool; not a "valid" 3x3 convolution). Not a module that
    only reorders its input (ConvNeXt's ``Permute`` to and from channels-last) or acts on its
    last dimension (``nn.Linear`` on a channels-last map): their last two dimensions are not
    the feature map's, so 40 layers of a ConvNeXt-T looked like down-samplings."""
    return [
        e
        for e in events
        if e.output is not None
        and e.output.dim() == 4
        and e.inputs
        and _is_spatial(e.inputs[0])
        and 2 * _pixels(e.output) <= _pixels(e.inputs[0])
        and not isinstance(modules.get(e.name), nn.Linear)
        and not _reordered(e.inputs[0], e.output)
    ]


def _reordered(x: Tensor, y: Tensor) -> bool:
    """Whether ``y`` has ``x``'s dimensions in another order (a permutation of the axes)."""
    return x.numel() == y.numel() and sorted(x.shape) == sorted(y.shape)


def _conv_inside(convs: list[_Event], block: str, before: int) -> bool:
    """Whether a convolution inside module ``block`` ran at or before event ``before``."""
    return any(c.index <= before and c.name.startswith(f"{block}.") for c in convs)


def _block_feeders(
    downsampling: list[_Event], producer: dict[int, _Event], convs: list[_Event]
) -> tuple[list[_Event], _Event | None]:
    """The layers feeding each down-sampling (block ends) and the global pool's input.

    ``convs``: the convolutions' calls. A layer that ran before the first of them (an input
    normalisation, e.g. a run's ``normalize``) holds the image, not a feature map: no block end.
    """
    # single reduction steps (at most ~3x per side), e.g. a ResNet block or Inception's
    # Mixed_6a, unlike a container holding several steps (VGG's ``features``)
    reducing = {e.name: e for e in downsampling if 10 * _pixels(e.output) > _pixels(e.inputs[0])}
    first_conv = min((c.index for c in convs), default=-1)

    def inside_reduction_block(feeder: _Event, event: _Event) -> bool:
        # a branch inside a reduction block (Inception's Mixed_6a, a Bottleneck's conv1,
        # ConvNeXt's norm before its strided convolution) at the block's input resolution: the
        # block's own input is the layer to take. Not when the block ends with this reduction
        # and a convolution of its own computed ``feeder`` (a VGG-like stage conv-BN-ReLU-pool,
        # SmallCNN's): the pool then joins two blocks and ``feeder`` ends the first.
        parts = feeder.name.split(".")
        size = tuple(feeder.output.shape[-2:])
        for k in range(1, len(parts)):
            block = reducing.get(".".join(parts[:k]))
            if block is None or tuple(block.inputs[0].shape[-2:]) != size:
                continue
            ends_here = block.output is event.output
            if not (ends_here and _conv_inside(convs, block.name, feeder.index)):
                return True
        return False

    # of the pools to 1x1, only the last is the model's global pool (earlier ones are e.g. the
    # squeeze-and-excitation gates of EfficientNet/MobileNetV3 blocks)
    global_pools = [e for e in downsampling if e.output.shape[-2] == e.output.shape[-1] == 1]
    block: list[_Event] = []
    global_pool_input: _Event | None = None
    # containers whose reduction a module inside them already placed (SmallCNN's ``layer2``
    # after ``layer2.pool``): their input is the previous stage's pooled output, no block end
    placed: set[str] = set()
    for event in downsampling:
        if event.name in placed or (global_pools and event in global_pools[:-1]):
            continue
        feeder = producer.get(id(event.inputs[0]))
        if (
            feeder is None
            or feeder.index >= event.index
            or feeder.index < first_conv
            or inside_reduction_block(feeder, event)
        ):
            continue  # the input image or its normalisation, a functional op, inside a block
        parts = event.name.split(".")
        placed.update(".".join(parts[:k]) for k in range(1, len(parts)))
        if all(feeder.name != b.name for b in block):
            block.append(feeder)
        if event.output.shape[-2] == event.output.shape[-1] == 1:
            global_pool_input = feeder
    return block, global_pool_input


def probe_features(model: nn.Module, sample: Tensor, hooks: list[RemovableHandle]) -> FeatureProbe:
    """Run ``model`` once on ``sample`` with forward hooks on every module and find its layers.

    Modules inside a LAP layer (the concept scorer) are not feature layers and are skipped; a LAP
    layer itself counts as a (down-sampling) pool. The forward runs in eval mode under
    ``torch.no_grad``; afterwards, also when it raises, every module has its own train/eval
    flag again, the LAP layers their last maps, and the probe's hooks are removed. Each hook's
    handle is appended to ``hooks`` as soon as it is registered (a caller may remove them
    itself too); ``hooks`` is empty again when the call ends.
    """
    events, calls, non_tensor = _record(model, sample, hooks)
    producer = _producers(events)
    spatial = [e for e in events if _is_spatial(e.output)]
    shapes: dict[str, tuple[int, ...]] = {}
    order: dict[str, int] = {}
    for event in events:
        order.setdefault(event.name, event.index)
        if event.output is not None:
            shapes.setdefault(event.name, tuple(event.output.shape))
    facts = {"calls": dict(calls), "shapes": shapes, "order": order, "non_tensor": non_tensor}
    if not spatial:
        return FeatureProbe(cam_layer=None, block_layers=[], **facts)
    modules = dict(model.named_modules())
    convs = [e for e in events if isinstance(modules.get(e.name), nn.modules.conv._ConvNd)]
    block, global_pool_input = _block_feeders(_downsampling(events, modules), producer, convs)
    cam = global_pool_input if global_pool_input is not None else spatial[-1]
    if global_pool_input is None:
        cam = producer.get(id(cam.output), cam)

    def used_once(event: _Event) -> _Event:
        # a module that runs several times (one ReLU applied after every convolution) has no
        # single output to explain: take the layer whose output its call read (the conv)
        while calls.get(event.name, 0) > 1 and event.inputs:
            feeder = producer.get(id(event.inputs[0]))
            if feeder is None or feeder.index >= event.index:
                break
            event = feeder
        return event

    cam = used_once(cam)
    block = [used_once(event) for event in block]
    block = [e for i, e in enumerate(block) if all(e.name != b.name for b in block[:i])]
    if all(cam.name != b.name for b in block):
        block.append(cam)
    block.sort(key=lambda e: e.index)
    # a block layer must come no later than the CAM layer (layers after it are the classifier)
    block = _convolutional([e for e in block if e.index <= cam.index], convs)
    return FeatureProbe(cam_layer=cam.name, block_layers=[e.name for e in block], **facts)


def _convolutional(block: list[_Event], convs: list[_Event]) -> list[_Event]:
    """The block ends (forward order) whose block holds a convolution: one ran after the
    previous block end and no later than this one. Paper 003 visualises B layers for B
    convolutional blocks; a pooled output that feeds only another pool or the classifier (a
    VGG's last max pool before its flatten, SmallCNN's last stage pooled before the global
    pool) ends none. Without recorded convolutions (functional ones) every end is kept."""
    if not convs:
        return block
    kept, previous = [], -1
    for event in block:
        if any(previous < c.index <= event.index for c in convs):
            kept.append(event)
        previous = event.index
    return kept


class Capture:
    """Forward hook keeping the output of one module's ``call``-th call in each forward pass.

    The model goes on with a copy of the kept output, so that a forward changing it in place
    afterwards (DenseNet's ``F.relu(features, inplace=True)``, ``x += y``) changes the copy,
    not the feature map the method reads; gradients flow through the copy to it."""

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

    def __call__(self, module: nn.Module, args: tuple, output: object) -> Tensor | None:
        if self.count == self.call:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"layer {self.name!r} returns {type(output).__name__}, not a tensor; "
                    "choose a layer whose output is a (B, C, h, w) feature map"
                )
            self.output = output
            self.version = output._version
            self.count += 1
            return output.clone()
        self.count += 1
        return None

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
