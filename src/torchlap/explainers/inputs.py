"""What an explainer accepts: the checks of ``explainer(images, target)`` and of a layer name.

Every check runs before the first forward pass and raises an exception that says what was
wrong and what is accepted. :func:`check_model_inputs` compares the images with the model's
parameters (device, dtype); :func:`channel_mismatch` explains torch's error when the images
have the wrong number of channels, naming the user's batch rather than the one-image probe
that failed first (both live in :mod:`torchlap._checks`, which the metrics share).
"""

from __future__ import annotations

import difflib
import numbers

import numpy as np
import torch
from torch import Tensor, nn

from torchlap._checks import (
    channel_mismatch,
    check_has_values,
    check_model_inputs,
    is_integer_tensor,
    non_finite_samples,
)
from torchlap.layers.lap import LapBase
from torchlap.models.antehoc import WeightNetwork
from torchlap.models.bla_pools import FeatureSelectionPool

__all__ = [
    "autograd_copies",
    "channel_mismatch",
    "check_class_tensor",
    "check_images",
    "check_layer_name",
    "check_layer_option",
    "check_model_inputs",
    "check_target",
    "class_scores",
    "logits_error",
    "needs_autograd_copies",
    "non_finite_outputs",
]


def check_images(images: object) -> Tensor:
    """``images`` as a detached (B, C, H, W) floating-point tensor of finite pixels, B >= 1."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, C, H, W), got {type(images)}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch (B = 0)")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images must have H, W >= 1, got shape {tuple(images.shape)}")
    if images.device.type == "meta":  # no pixel values: every check and map would fail later
        raise ValueError(
            "images are on the meta device, which holds shapes but no pixel values; an "
            "explainer reads the pixels: pass images on the model's device (e.g. 'cpu')"
        )
    bad = non_finite_samples(images)
    if bad:
        raise ValueError(
            f"images {bad} (batch indices) hold NaN or infinite pixels; a map of such "
            "an image is NaN everywhere: pass finite pixels (e.g. torch.nan_to_num)"
        )
    return images.detach()


def check_target(target: object, images: Tensor) -> Tensor | None:
    """``target`` as None or a long tensor (B,) on the images' device: an int (or a numpy
    integer) for every image, or an integer tensor of one class per image (a 0-d tensor is
    repeated)."""
    batch = images.shape[0]
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be None, an int or an integer tensor, got a bool")
    if isinstance(target, numbers.Integral):  # an int, or a numpy integer
        target = int(target)
        if target < 0:
            raise ValueError(f"target must be a class index >= 0, got {target}")
        if target >= 2**63:  # no model has as many classes (and a long cannot hold it)
            raise ValueError(f"target must be a class index of the model, got {target}")
        return torch.full((batch,), target, dtype=torch.long, device=images.device)
    if isinstance(target, np.ndarray):
        raise TypeError(
            "target must be None, an int or an integer tensor, got a numpy array: pass "
            "torch.as_tensor(target)"
        )
    if isinstance(target, Tensor):
        if not is_integer_tensor(target):
            raise TypeError(f"a target tensor must hold integer classes, got {target.dtype}")
        if target.device.type == "meta":
            raise ValueError(
                "target is on the meta device, which holds no values; pass the classes on the "
                "images' device (or as an int)"
            )
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


def logits_error(output: object, batch: int) -> TypeError:
    """The error of a model output that is not logits ``(batch, num_classes)``, with the likely
    cause of a 1-D output: a batch dimension dropped (``.squeeze()`` on a batch of one image,
    which explainers run for their checks and probes) or one score per image without its
    class dimension."""
    if not isinstance(output, Tensor):
        got, hint = type(output).__name__, ""
    else:
        got, hint = str(tuple(output.shape)), ""
        if output.dim() == 1 and output.shape[0] == batch:
            hint = (
                f" for a batch of {batch} image(s): one score per image without its class "
                "dimension; return (B, 1) for a single-output model (logits.unsqueeze(1))"
            )
        elif output.dim() == 1 and batch == 1:
            hint = (
                " for a batch of 1 image: the model drops the batch dimension (e.g. "
                "logits.squeeze(), which explainers hit on the one-image batches they run); "
                "keep it (logits.flatten(1), or squeeze(-1) of a (B, C, 1) tensor)"
            )
    return TypeError(
        f"the model must return logits of shape (B, num_classes), got {got}{hint}; wrap "
        "models with other outputs in an nn.Module returning the class scores"
    )


def non_finite_outputs(
    method: str, finite: Tensor, images: Tensor | None = None, masked: bool = False
) -> ValueError:
    """The error of model outputs holding NaN/inf, naming ``method`` and the images.

    ``finite``: one bool per row; ``images``: the image index of each row (default: row ``i``
    is image ``i``); ``masked``: the rows are scores of masked copies of the images.
    """
    rows = (~finite.detach()).nonzero().flatten()
    index = rows if images is None else images.detach().flatten()[rows.to(images.device)]
    bad = sorted(set(index.tolist()))
    shown = f"{bad[:16]}{' ...' if len(bad) > 16 else ''}"
    what = (
        f"gives NaN or infinite class scores on masked copies of images {shown}"
        if masked
        else f"returns NaN or infinite logits for images {shown}"
    )
    return ValueError(
        f"{method}: the model {what} (batch indices), so their maps would be NaN, flat or "
        "explain the class of a NaN argmax; check the model (e.g. the weights of a diverged "
        "training run) and these images, or explain only the images with finite logits"
    )


def check_layer_name(name: object, modules: dict[str, nn.Module]) -> None:
    """ValueError unless ``name`` is the name of a submodule (with close matches offered)."""
    if not isinstance(name, str) or not name or name not in modules:
        names = [n for n in modules if n]
        # a run's model is wrapped (its layers are 'net.<layer>'): the names ending in the
        # given one come first, then the close matches
        nested = [n for n in names if n.endswith(f".{name}")][:5]
        close = nested or difflib.get_close_matches(str(name), names, n=5)
        hint = f"; did you mean one of {close}?" if close else ""
        raise ValueError(
            f"unknown layer {name!r}: give the name of a submodule as in "
            f"model.named_modules() ({_layer_examples(modules)}){hint}"
        )


#: the modules whose convolutions compute a model's own explanation (LAP's concept scorers,
#: BLA's attention, the ante-hoc weight network), not the features a Grad-CAM explains
_EXPLANATION_MODULES = (LapBase, FeatureSelectionPool, WeightNetwork)


def _layer_examples(modules: dict[str, nn.Module]) -> str:
    """Layer names to suggest, from the model's ``named_modules()``: its last convolution
    outside :data:`_EXPLANATION_MODULES` and the blocks holding it that do not hold every
    such convolution (on a run's ResNet18 ``'net.layer4'``, ``'net.layer4.1'``,
    ``'net.layer4.1.conv2'``; Grad-CAM's usual layer is the first); without a convolution,
    the last submodule."""
    own = tuple(f"{n}." for n, m in modules.items() if n and isinstance(m, _EXPLANATION_MODULES))
    convs = [
        n
        for n, m in modules.items()
        if n and isinstance(m, nn.modules.conv._ConvNd) and not n.startswith(own)
    ]
    if not convs:
        names = [n for n in modules if n]
        return f"e.g. {names[-1]!r}" if names else "this model has no submodule"
    last = convs[-1]
    parts = last.split(".")
    blocks = [".".join(parts[:i]) for i in range(1, len(parts))]
    blocks = [b for b in blocks if not all(c.startswith(f"{b}.") for c in convs)]
    shown = ", ".join(repr(n) for n in [*blocks[:2], last])
    return f"e.g. {shown}: the model's last convolution and the blocks holding it"


def check_layer_option(model: nn.Module, layer: object) -> str | nn.Module | None:
    """An explainer's ``layer`` option, checked when the explainer is built: None (the feature
    probe chooses), a submodule's name (which must exist) or a submodule of ``model``."""
    if layer is None:
        return None
    if isinstance(layer, str):
        check_layer_name(layer, dict(model.named_modules()))
        return layer
    if isinstance(layer, nn.Module):
        if not any(module is layer for module in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
        return layer
    raise TypeError(f"layer must be None, a module name or a module, got {layer!r}")


def check_class_tensor(target: object, accepted: str) -> Tensor:
    """``target`` if it is a tensor of an integer dtype (not bool), else ``TypeError``
    "target must be {accepted}, got ..." naming its dtype or type (no values read)."""
    if not is_integer_tensor(target):
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"target must be {accepted}, got {got}")
    return target


def class_scores(logits: Tensor, target: Tensor, kind: str = "softmax") -> Tensor:
    """The score of class ``target[i]`` for every row ``i`` of ``logits`` ``(N, K)``.

    ``kind="softmax"``: the class probability (a single-output model uses the sigmoid of its
    logit); ``kind="logit"``: the raw logit. ``logits``: finite, floating. ``target``: an
    integer tensor of ``N`` class indices in ``[0, K)`` (both checked with one device sync;
    anything else raises, naming the range).
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(
            "logits must be a tensor (N, K) with K >= 1 classes, got "
            f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor (N, K), got dtype {logits.dtype}")
    count, num_classes = logits.shape
    accepted = f"an integer tensor of {count} class indices (one per row of logits)"
    check_class_tensor(target, accepted)
    if target.dim() != 1 or target.numel() != count:
        raise ValueError(f"target must be {accepted}, got shape {tuple(target.shape)}")
    check_has_values(logits, "logits")
    check_has_values(target, "target")
    if target.device != logits.device:
        raise ValueError(
            f"target is on {target.device} but logits are on {logits.device}; pass them on one "
            "device"
        )
    if kind not in ("softmax", "logit"):
        raise ValueError(f"unknown score kind {kind!r}; expected 'softmax' or 'logit'")
    if count:
        finite = torch.isfinite(logits).all().to(target.dtype)
        low, high, all_finite = torch.stack([*target.aminmax(), finite]).tolist()  # one sync
        if not all_finite:
            raise ValueError("logits hold NaN or infinite values; only finite logits are accepted")
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"target classes must lie in [0, {num_classes}) for these logits, got "
                f"{target.tolist() if target.numel() <= 16 else target}"
            )
    return _class_scores(logits, target.long(), kind)  # gather takes int64 (or int32) only


def _class_scores(logits: Tensor, target: Tensor, kind: str = "softmax") -> Tensor:
    """:func:`class_scores` without the checks of ``target`` (the explainers' loops, whose
    target :meth:`Explainer.resolve_target` checked once: no device sync per mask batch)."""
    if kind == "logit":
        probs = logits
    else:  # "softmax" (class_scores checked the kind; the explainers pass none)
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(dim=1)
    return probs.gather(1, target.view(-1, 1)).squeeze(1)


def needs_autograd_copies(images: object, target: object) -> bool:
    """Whether an explanation must run outside ``torch.inference_mode`` on copies of its inputs
    (:func:`autograd_copies`): inference mode is on, or an input is an inference tensor."""
    if torch.is_inference_mode_enabled():
        return True
    return any(isinstance(v, Tensor) and v.is_inference() for v in (images, target))


def autograd_copies(images: object, target: object) -> tuple[object, object]:
    """``images`` and ``target`` with each inference tensor cloned (under
    ``torch.inference_mode(False)``: a normal tensor, which autograd may save)."""
    return tuple(
        v.clone() if isinstance(v, Tensor) and v.is_inference() else v for v in (images, target)
    )  # type: ignore[return-value]
