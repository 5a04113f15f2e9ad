"""Ante-hoc weight network: task-agnostic interpretation maps (paper 004, Guna et al.).

A CNN is extended by a weight network ``W`` (section 2): soft attention maps ``SAM_n`` of
``eta`` selected convolutional layers of the backbone, resized to the input size, go through an
autoencoder whose ``eta`` output maps, after a pixel-wise softmax across the ``eta`` channels,
are the weight maps ``WM_n``; the interpretation map is (Eq. 1)

    I_map = sum_{n=1..eta} WM_n * SAM_n.

Training alternates two passes (section 2.1): pass one trains the CNN with the task loss on the
image (Eq. 2, ``L_task = L(Y_first, Y_GT)``); pass two feeds the energy map
``I_second = I_first * I_map`` and trains only the weight network with
``L_interpret = MSE(Y_first, Y_second)`` (Eq. 3). The task loss is pluggable: cross-entropy for
classification, MSE for regression (e.g. landmark detection), or any callable.

Choices where the paper is silent:

- **Layers.** ``eta`` (default 8) of the backbone's ``nn.Conv2d`` modules, in registration order,
  at fixed intervals with the first and the last included: indices
  ``round(i * (L - 1) / (eta - 1))`` for ``i = 0..eta-1`` of the ``L`` convolutions (``eta = 1``:
  the last one). ``layer_names`` picks any modules with a (B, C, h, w) output instead.
- **SAM of a layer** (the paper writes ``SAM_i = Softmax(F_{0..i}(.))``): the selected
  module's output ``A`` (B, C, h, w): for the default layers an ``nn.Conv2d``'s raw output,
  before its batch norm and ReLU (in a residual block the branch alone, before the skip
  addition: a ResNet18's last SAM reads ``layer4.1.conv2``, not the pooled ``layer4``; pick
  others with ``layer_names``), taken detached (the SAMs are inputs of ``W``, not a path for
  the CNN's gradient), averaged over channels ``a = mean_c A``, a softmax over the ``h*w``
  positions, divided by its maximum (so ``SAM = exp(a - max a)`` lies in (0, 1] with peak 1:
  a plain softmax scales like ``1 / (h*w)`` and maps of layers of different resolution would not
  be comparable), then resized to the input's H x W (bilinear, ``align_corners=False``).
- **Autoencoder.** ``len(autoencoder_channels)`` stride-2 3x3 convolutions with ReLU down,
  the same number of (bilinear x2 upsampling, 3x3 convolution) steps up, resized to H x W
  when the size is not a multiple of ``2 ** depth``. The last convolution starts at zero, so
  the weight maps start uniform (``1 / eta``) and ``I_map`` starts as the mean of the SAMs.
- **Energy maps.** ``energy_map(x) = x * I_map`` (the map broadcast over the image channels);
  ``binarized_energy_map(x, 0.8) = x * 1[I_norm >= 0.8]`` with ``I_norm`` the interpretation
  map min-max normalised per image to [0, 1] (the paper binarises "using a high threshold of
  0.8 since it retains only highly important regions", section 3.3). The mask is
  :func:`torchlap.metrics.binarize_map`, the one definition the Drop/Inc/Win metric and the
  ``antehoc`` explainer share; ``normalization="max"`` divides by the maximum instead.
- **Pass two** runs the backbone with its parameters detached (no gradient reaches the CNN,
  only the weight network learns) and on copies of its buffers (BatchNorm running statistics
  are not disturbed by energy maps). ``Y_first`` is recomputed there, without graph, by the CNN
  as it is when pass two runs, so both predictions come from the same CNN in the same mode:
  :meth:`AnteHocModel.two_pass_step` runs it after pass one's optimizer step (the paper's
  order); ``torchlap train`` (``AnteHocObjective``) adds Eq. 2 and Eq. 3 in one step, so its
  pass two sees the CNN before that step's update (the parameters pass one used). By default
  the backbone keeps its own train/eval flags (while training, BatchNorm uses batch
  statistics, which works from the first step; an untrained network's running statistics
  would make eval-mode predictions meaningless); ``backbone_mode="eval"`` uses running
  statistics and no dropout, for an already trained backbone (batch statistics undo a
  uniform dimming: see :func:`antehoc_pass_two_loss`). The MSE is over the raw outputs
  (logits for classification; the paper: "Y_first is the prediction made by the CNN").
- **Hooks.** The SAM hooks are registered at the start of each forward pass and removed at its
  end in ``try/finally``: no hook outlives a call (also on error), and the model can be
  deep-copied or pickled. ``close()`` (and the context manager) frees the cached maps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap._checks import check_feature_input, check_model_inputs
from torchlap._hooks import Hooks, kept_training_flags
from torchlap.layers._state import KeepsLastMaps
from torchlap.metrics import binarize_map
from torchlap.metrics._common import check_binarize_options
from torchlap.models.antehoc_maps import (
    interpretation_from_maps,
    select_conv_layers,
    soft_attention_map,
)
from torchlap.models.records import model_record, set_model_record

__all__ = [
    "TASK_LOSSES",
    "AnteHocMaps",
    "AnteHocModel",
    "WeightNetwork",
    "antehoc_parameter_groups",
    "antehoc_pass_one_loss",
    "antehoc_pass_two_loss",
    "interpretation_from_maps",
    "select_conv_layers",
    "soft_attention_map",
]

logger = logging.getLogger(__name__)

TASK_LOSSES = ("cross_entropy", "mse")
TaskLoss = str | Callable[[Tensor, Tensor], Tensor]


@dataclass
class AnteHocMaps:
    """The maps of the last forward pass, all at the input resolution H x W.

    ``sams``: the soft attention maps (B, eta, H, W), in (0, 1].
    ``weight_maps``: the weight maps (B, eta, H, W), summing to 1 over ``eta`` at every pixel.
    ``interpretation``: the interpretation map of Eq. 1 (B, 1, H, W).
    """

    sams: Tensor
    weight_maps: Tensor
    interpretation: Tensor

    def detach(self) -> AnteHocMaps:
        """A copy whose tensors are cut from the autograd graph."""
        return AnteHocMaps(
            self.sams.detach(), self.weight_maps.detach(), self.interpretation.detach()
        )


class WeightNetwork(nn.Module):
    """The weight network ``W`` (paper 004, section 2): an autoencoder over the ``eta`` soft
    attention maps followed by a pixel-wise softmax across its ``eta`` outputs (weight maps).
    """

    def __init__(
        self,
        eta: int,
        channels: Sequence[int] = (16, 32),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(eta, bool) or not isinstance(eta, int) or eta < 1:
            raise ValueError(f"eta must be an int >= 1, got {eta!r}")
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise TypeError(
                f"autoencoder_channels must be a non-empty list of ints >= 1, got {channels!r}"
            )
        channels = list(channels)
        if not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels
        ):
            raise ValueError(
                f"autoencoder_channels must be a non-empty list of ints >= 1, got {channels!r}"
            )
        factory = {"device": device, "dtype": dtype}
        self.eta = eta
        self.channels = tuple(channels)
        down: list[nn.Module] = []
        previous = eta
        for width in channels:
            down += [nn.Conv2d(previous, width, 3, stride=2, padding=1, **factory), nn.ReLU()]
            previous = width
        up: list[nn.Module] = []
        for width in [*reversed(channels[:-1]), eta]:
            up += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(previous, width, 3, padding=1, **factory),
                nn.ReLU(),
            ]
            previous = width
        up.pop()  # no ReLU on the scores
        self.encoder = nn.Sequential(*down)
        self.decoder = nn.Sequential(*up)
        last = self.decoder[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def scores(self, sams: Tensor) -> Tensor:
        """The autoencoder's output (B, eta, H, W), before the pixel-wise softmax.

        ``sams``: (B, ``eta``, H, W), floating point of the parameters' dtype and on their
        device (``TypeError``/``ValueError`` saying which, before any work)."""
        encoder = self._modules["encoder"]
        check_feature_input(self, sams, self.eta, encoder._modules["0"]._parameters["weight"])
        out = self.decoder(encoder(sams))
        if out.shape[-2:] != sams.shape[-2:]:
            out = F.interpolate(out, size=sams.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def forward(self, sams: Tensor) -> Tensor:
        """Weight maps ``WM`` (B, eta, H, W): pixel-wise softmax across the ``eta`` outputs."""
        return torch.softmax(self.scores(sams), dim=1)


class _SamCapture:
    """Forward hook: the SAM of one layer's first output in a pass."""

    def __init__(self, name: str, size: tuple[int, int]) -> None:
        self.name = name
        self.size = size
        self.sam: Tensor | None = None
        self.calls = 0

    def __call__(self, _module: nn.Module, _args: tuple, output: object) -> None:
        self.calls += 1
        if self.calls > 1:
            return
        if not isinstance(output, Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"layer {self.name!r} outputs {shape}; a soft attention map needs a "
                "(B, C, h, w) activation"
            )
        self.sam = soft_attention_map(output.detach(), self.size)


class AnteHocModel(KeepsLastMaps, nn.Module):
    """A CNN with the ante-hoc weight network of paper 004 (section 2).

    ``forward(x)`` returns the backbone's output unchanged and caches, in ``self.maps``
    (:class:`AnteHocMaps`), the SAMs of the selected layers, the weight maps and the
    interpretation map of Eq. 1. ``eta`` layers are chosen by :func:`select_conv_layers`
    (default 8) unless ``layer_names`` lists them. See the module docstring for the SAM, the
    autoencoder and the two-pass training.
    """

    maps: AnteHocMaps | None

    def __init__(
        self,
        backbone: nn.Module,
        eta: int | None = None,
        layer_names: Sequence[str] | None = None,
        autoencoder_channels: Sequence[int] = (16, 32),
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if layer_names is None:
            names = select_conv_layers(backbone, 8 if eta is None else eta)
        else:
            if isinstance(layer_names, str) or not all(isinstance(n, str) for n in layer_names):
                raise TypeError("layer_names must be a list of module names")
            names = list(layer_names)
            if not names:
                raise ValueError("layer_names is empty")
            if eta is not None and eta != len(names):
                raise ValueError(f"eta={eta} but {len(names)} layer_names were given")
            if len(set(names)) != len(names):
                raise ValueError(f"layer_names lists a module twice: {names}")
            modules = dict(backbone.named_modules())
            missing = [n for n in names if n not in modules or not n]
            if missing:
                raise ValueError(f"the backbone has no module {missing}")
        reference = next((p for p in backbone.parameters() if p.is_floating_point()), None)
        factory: dict[str, Any] = {}
        if reference is not None:
            factory = {"device": reference.device, "dtype": reference.dtype}
        self.backbone = backbone
        self.layer_names = names
        self.weight_network = WeightNetwork(len(names), autoencoder_channels, **factory)
        self.maps = None
        entry = {
            "layer_names": list(names),
            "eta": len(names),
            "autoencoder_channels": list(self.weight_network.channels),
        }
        set_model_record(self, {**model_record(backbone), "antehoc": entry})

    @property
    def eta(self) -> int:
        """Number of soft attention maps."""
        return len(self.layer_names)

    # -- the backbone with SAM capture ------------------------------------------------------
    def _check_images(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"images must be a float (B, C, H, W) tensor, got {shape}")
        check_model_inputs(self, x)  # the parameters' device and dtype (outside autocast)

    def backbone_with_sams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run the backbone on ``x``: ``(output, SAMs (B, eta, H, W))``. The hooks live only
        during this call (removed in ``finally``)."""
        return self._backbone_with_sams(x, None)

    def _backbone_with_sams(
        self, x: Tensor, state: dict[str, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        """``backbone_with_sams``; with ``state``, the backbone runs on those parameters and
        buffers (``torch.func.functional_call``; the hooks fire all the same)."""
        self._check_images(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        modules = dict(self.backbone.named_modules())
        captures = [_SamCapture(name, size) for name in self.layer_names]
        hooks = Hooks()
        try:
            for capture in captures:
                hooks.forward(modules[capture.name], capture)
            if state is None:
                output = self.backbone(x)
            else:
                output = torch.func.functional_call(self.backbone, state, (x,))
        finally:
            hooks.remove()
        if not isinstance(output, Tensor):
            raise TypeError(
                f"the backbone returned {type(output).__name__}; AnteHocModel needs a model "
                "returning one tensor of predictions (B, ...)"
            )
        not_run = [c.name for c in captures if c.sam is None]
        if not_run:
            raise ValueError(f"the layers {not_run} did not run in the backbone's forward pass")
        repeated = [c.name for c in captures if c.calls > 1]
        if repeated:
            raise ValueError(
                f"the layers {repeated} ran more than once in one forward pass: a soft attention "
                "map needs a layer that runs once; choose other layer_names"
            )
        return output, torch.cat([c.sam for c in captures], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """The backbone's output for ``x``; the maps of Eq. 1 are cached in ``self.maps``."""
        output, sams = self.backbone_with_sams(x)
        weight_maps = self.weight_network(sams)
        self.maps = AnteHocMaps(sams, weight_maps, interpretation_from_maps(sams, weight_maps))
        return output

    # -- explanations -------------------------------------------------------------------------
    def _explain_maps(self, x: Tensor) -> AnteHocMaps:
        with kept_training_flags(self), torch.no_grad():
            self.eval()
            self(x)
        return self.maps.detach()  # type: ignore[union-attr]

    def interpretation_map(self, x: Tensor) -> Tensor:
        """Eq. 1's interpretation map (B, 1, H, W) for images ``x`` (eval mode, no grad,
        train/eval flags restored)."""
        return self._explain_maps(x).interpretation

    def energy_map(self, x: Tensor) -> Tensor:
        """The energy map ``x * I_map`` (B, C, H, W): the image weighted by Eq. 1's map."""
        return x * self.interpretation_map(x)

    def binarized_energy_map(
        self, x: Tensor, threshold: float = 0.8, *, normalization: str = "min_max"
    ) -> Tensor:
        """``x * 1[I_norm >= threshold]`` (B, C, H, W): the image kept where the per-image
        normalised interpretation map reaches ``threshold`` (0.8 in the paper); see
        :meth:`interpretation_mask`."""
        return x * self.interpretation_mask(x, threshold, normalization=normalization).to(x.dtype)

    def interpretation_mask(
        self, x: Tensor, threshold: float = 0.8, *, normalization: str = "min_max"
    ) -> Tensor:
        """The binary mask ``I_norm >= threshold`` (B, 1, H, W) of the binarized energy map:
        :func:`torchlap.metrics.binarize_map` of the interpretation map. ``threshold``: a
        number in [0, 1]; ``normalization``: ``"min_max"`` (default), ``"max"`` or ``"none"``
        (checked before the forward pass)."""
        check_binarize_options(threshold, normalization)
        interpretation = self.interpretation_map(x)[:, 0]
        return binarize_map(interpretation, threshold, normalization=normalization).unsqueeze(1)

    def close(self) -> None:
        """Free the cached maps (no hook outlives a forward pass, so nothing else to release)."""
        self.maps = None

    def __enter__(self) -> AnteHocModel:
        return self

    def __exit__(self, *exc_info: object) -> bool:
        self.close()
        return False

    # -- training -----------------------------------------------------------------------------
    def two_pass_step(
        self,
        images: Tensor,
        targets: Tensor,
        task_loss: TaskLoss,
        optimizer_cnn: torch.optim.Optimizer,
        optimizer_weights: torch.optim.Optimizer,
    ) -> dict[str, float]:
        """One step of the two-pass training (paper 004, section 2.1).

        Pass one: ``optimizer_cnn`` steps on Eq. 2's task loss; pass two: ``optimizer_weights``
        steps on Eq. 3's interpretation loss. ``optimizer_cnn`` must hold only backbone
        parameters and ``optimizer_weights`` only weight-network parameters
        (:func:`antehoc_parameter_groups`). Returns ``{"task_loss", "interpret_loss"}``.
        """
        groups = antehoc_parameter_groups(self)
        _check_optimizer(optimizer_cnn, groups["cnn"], groups["weights"], "optimizer_cnn", "CNN")
        _check_optimizer(
            optimizer_weights, groups["weights"], groups["cnn"], "optimizer_weights", "weight"
        )
        optimizer_cnn.zero_grad(set_to_none=True)
        loss_task = antehoc_pass_one_loss(self, images, targets, task_loss)
        loss_task.backward()
        optimizer_cnn.step()
        optimizer_weights.zero_grad(set_to_none=True)
        loss_interpret = antehoc_pass_two_loss(self, images)
        loss_interpret.backward()
        optimizer_weights.step()
        return {
            "task_loss": float(loss_task.detach()),
            "interpret_loss": float(loss_interpret.detach()),
        }


def _check_optimizer(
    optimizer: torch.optim.Optimizer,
    own: list[nn.Parameter],
    other: list[nn.Parameter],
    label: str,
    kind: str,
) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{label} must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if held & {id(p) for p in other}:
        raise ValueError(
            f"{label} holds parameters of the other network: it must hold only the {kind} "
            "parameters (see antehoc_parameter_groups)"
        )
    if not held & {id(p) for p in own}:
        raise ValueError(f"{label} holds none of the {kind} parameters")


def antehoc_parameter_groups(model: AnteHocModel) -> dict[str, list[nn.Parameter]]:
    """``{"cnn": backbone parameters (pass one), "weights": weight-network parameters (pass
    two)}``."""
    if not isinstance(model, AnteHocModel):
        raise TypeError(f"model must be an AnteHocModel, got {type(model).__name__}")
    return {
        "cnn": list(model.backbone.parameters()),
        "weights": list(model.weight_network.parameters()),
    }


def _task_loss(task_loss: TaskLoss, output: Tensor, targets: Tensor) -> Tensor:
    """``task_loss`` (checked by :func:`antehoc_pass_one_loss`) of ``output`` and ``targets``."""
    if callable(task_loss):
        loss = task_loss(output, targets)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("a task_loss callable must return a scalar tensor")
        return loss.reshape(())
    if task_loss == "mse":
        if not targets.is_floating_point():
            raise ValueError(
                "task_loss='mse' is a regression loss and needs float targets shaped like the "
                f"predictions {tuple(output.shape)}; got {targets.dtype} targets of shape "
                f"{tuple(targets.shape)} (class labels?): use task_loss='cross_entropy' for "
                "classification"
            )
        if targets.shape != output.shape:
            raise ValueError(
                f"task_loss='mse': targets of shape {tuple(targets.shape)} do not match the "
                f"predictions {tuple(output.shape)}"
            )
        return F.mse_loss(output, targets)
    # "cross_entropy"
    if output.dim() != 2:
        raise ValueError(
            f"task_loss='cross_entropy' needs (B, num_classes) outputs, got {tuple(output.shape)}"
        )
    if targets.is_floating_point():
        if targets.shape != output.shape:
            raise ValueError(
                "task_loss='cross_entropy' takes class indices (B,) or class "
                f"probabilities {tuple(output.shape)}; got float targets of shape "
                f"{tuple(targets.shape)} (regression targets? use task_loss='mse')"
            )
    else:
        if targets.dtype == torch.bool or targets.is_complex():
            raise TypeError(
                "task_loss='cross_entropy' takes integer class indices or float class "
                f"probabilities, got dtype {targets.dtype}"
            )
        if targets.shape != output.shape[:1]:
            raise ValueError(
                f"task_loss='cross_entropy': class indices must be ({output.shape[0]},), "
                f"got shape {tuple(targets.shape)}"
            )
        if targets.numel() and (targets.min() < 0 or targets.max() >= output.shape[1]):
            raise ValueError(
                f"class indices must lie in [0, {output.shape[1]}), got "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
    return F.cross_entropy(output, targets)


def antehoc_pass_one_loss(
    model: AnteHocModel, images: Tensor, targets: Tensor, task_loss: TaskLoss = "cross_entropy"
) -> Tensor:
    """Eq. 2, ``L_task = L(Y_first, Y_GT)``: the task loss of the CNN on the images.

    Trains the CNN (``antehoc_parameter_groups(model)["cnn"]``); no gradient reaches the weight
    network. ``task_loss``: ``"cross_entropy"`` (class indices or probabilities), ``"mse"``
    (float targets shaped like the predictions) or a callable ``(predictions, targets) ->
    scalar``. Runs the backbone alone, in its current mode (pass two recomputes the maps).
    """
    if not isinstance(model, AnteHocModel):
        raise TypeError(f"model must be an AnteHocModel, got {type(model).__name__}")
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a tensor, got {type(targets).__name__}")
    if not (callable(task_loss) or task_loss in TASK_LOSSES):
        raise ValueError(
            f"unknown task_loss {task_loss!r}; expected one of {TASK_LOSSES} or a callable"
        )
    model._check_images(images)
    if targets.dim() == 0 or targets.shape[0] != images.shape[0]:
        got = f"{targets.shape[0]} targets" if targets.dim() else "a 0-d target (no batch dim)"
        raise ValueError(f"{got} for {images.shape[0]} images; give one row per image")
    output = model.backbone(images)  # the weight network plays no part in Eq. 2
    if not isinstance(output, Tensor):
        raise TypeError(f"the backbone returned {type(output).__name__}, expected a tensor")
    return _task_loss(task_loss, output, targets.to(output.device))


def antehoc_pass_two_loss(
    model: AnteHocModel, images: Tensor, backbone_mode: str = "current"
) -> Tensor:
    """Eq. 3, ``L_interpret = MSE(Y_first, Y_second)`` with ``Y_second = CNN(images * I_map)``.

    Trains only the weight network: the backbone runs with detached parameters and on copies
    of its buffers (no gradient reaches the CNN, BatchNorm running statistics are not disturbed
    by energy maps); ``Y_first`` and the SAMs come from a no-grad pass on ``images`` by the same
    CNN in the same mode. ``backbone_mode``: ``"current"`` (default; the backbone's own
    train/eval flags: BatchNorm normalises with batch statistics while training, which works
    from the first step on) or ``"eval"`` (running statistics, no dropout; for a backbone that
    is already trained; flags restored afterwards).

    Consequence of ``"current"`` on a training backbone: the first batch norm re-normalises
    the energy maps ``images * I_map`` with their own batch statistics, which undoes a uniform
    dimming, so a flat map ``I_map = c`` leaves ``Y_second`` almost equal to ``Y_first`` and
    Eq. 3 cannot tell it from a map that keeps the evidence. Measured on a trained ante-hoc
    ResNet18 (``lesions``, 64 px, 32 images): ``L_interpret`` 6e-7 for the constant map 0.3
    and 5e-3 for the learned map in train mode, against 1.2 and 0.067 with ``"eval"``.
    Retraining its weight network for 150 steps each way left the maps' floor and their top-k
    IoU with the lesions unchanged within noise, so ``torchlap train`` keeps ``"current"``
    (which also works from scratch); prefer ``"eval"`` when the backbone is already trained.
    """
    if not isinstance(model, AnteHocModel):
        raise TypeError(f"model must be an AnteHocModel, got {type(model).__name__}")
    if backbone_mode not in ("current", "eval"):
        raise ValueError(f"backbone_mode must be 'current' or 'eval', got {backbone_mode!r}")
    backbone = model.backbone
    with kept_training_flags(backbone):
        if backbone_mode == "eval":
            backbone.eval()
        with torch.no_grad():
            first, sams = _stateless(model, images, with_sams=True)
        weight_maps = model.weight_network(sams)
        interpretation = interpretation_from_maps(sams, weight_maps)
        second = _stateless(model, images * interpretation, with_sams=False)
    model.maps = AnteHocMaps(sams, weight_maps, interpretation)
    return F.mse_loss(second, first)


def _stateless(model: AnteHocModel, x: Tensor, with_sams: bool) -> Any:
    """The backbone on ``x`` with detached parameters and cloned buffers (the model's own
    tensors are neither differentiated nor updated)."""
    backbone = model.backbone
    state = {name: p.detach() for name, p in backbone.named_parameters()}
    state.update({name: b.clone() for name, b in backbone.named_buffers()})
    if with_sams:
        return model._backbone_with_sams(x, state)
    return torch.func.functional_call(backbone, state, (x,))
