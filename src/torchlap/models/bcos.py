"""B-cos networks (Böhle et al., CVPR 2022 / TPAMI 2024) as a torchlap model family.

The networks come from the PyPI package ``bcos`` (optional extra ``torchlap[bcos]``): its
model definitions (``bcos.models``: B-cos ResNets, ResNeXts, VGGs, DenseNets; B-cos
convolutions with ``B = 2``, bias-free norms, no ReLU, the logit bias
``-log(K - 1)``) and its input encoding ``[r, g, b, 1 - r, 1 - g, 1 - b]``
(``bcos.data.transforms.AddInverse``), which makes every colour a direction of equal norm.

:class:`BcosClassifier` puts the encoding in front of the network, so it takes images in
[0, 1] like every torchlap model (a B-cos run records mean 0 and std 1: the encoding replaces
the mean/std normalisation, as in the package's recipe). ``torchlap train --model bcos`` also
takes the package's loss, binary cross-entropy on one-hot targets; see the README for the rest
of the recipe.

``norm`` picks the normalisation layers (all bias-free, so ``W(x)^T x`` still sums to the logit
minus the logit bias): ``"position"``, the package constructors' default
(``NoBias(DetachablePositionNorm2d)``, a layer norm over the channels of each position), or
``"batch-uncentered"``, the norm of the package's ImageNet recipe
(``bcos/experiments/ImageNet/bcos_final``: ``NoBias(BatchNormUncentered2d)``, "bnu-linear").
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from torch import Tensor, nn

__all__ = [
    "BCOS_NORMS",
    "BcosClassifier",
    "bcos_architectures",
    "bcos_available",
    "build_bcos",
    "find_bcos",
]

_FAMILIES = ("resnet", "vgg", "densenet")
# normalisation layers a B-cos network can be built with (see the module docstring)
BCOS_NORMS = ("position", "batch-uncentered")
_INSTALL_HINT = "install the extra with `pip install 'torchlap[bcos]'` (the PyPI package `bcos`)"


def bcos_available() -> bool:
    """Whether the ``bcos`` package can be imported."""
    try:
        importlib.import_module("bcos.models.resnet")
    except ImportError:
        return False
    return True


def _require_bcos() -> None:
    if not bcos_available():
        raise ImportError(f"B-cos networks need the `bcos` package: {_INSTALL_HINT}")


def bcos_architectures() -> list[str]:
    """The model names of ``bcos.models`` (ResNet, VGG and DenseNet families) torchlap builds."""
    _require_bcos()
    names = []
    for family in _FAMILIES:
        module = importlib.import_module(f"bcos.models.{family}")
        names += [n for n in getattr(module, "__all__", []) if n[0].islower()]
    return sorted(names)


def _constructor(arch: str) -> Any:
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a B-cos model name (str), got {type(arch).__name__}")
    known = bcos_architectures()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown B-cos architecture {arch!r}.{hint} Known: {', '.join(known)}")
    for family in _FAMILIES:
        module = importlib.import_module(f"bcos.models.{family}")
        if arch in getattr(module, "__all__", []):
            return getattr(module, arch)
    raise ValueError(f"unknown B-cos architecture {arch!r}")  # unreachable: listed above


def _norm_layer(norm: str) -> Any:
    """The ``norm_layer`` argument of the package's constructors (None: their default)."""
    if norm not in BCOS_NORMS:
        raise ValueError(f"unknown B-cos norm {norm!r}; expected one of {', '.join(BCOS_NORMS)}")
    if norm == "position":
        return None
    from bcos.modules import norms

    return norms.NoBias(norms.BatchNormUncentered2d)


class BcosClassifier(nn.Module):
    """``net([x, 1 - x])``: a ``bcos`` network behind its input encoding (images in [0, 1]).

    ``encode`` is the package's ``AddInverse``; ``net`` the package's model with
    ``2 * in_channels`` inputs. ``torchlap_config`` records how to rebuild it.
    """

    torchlap_bcos = True

    def __init__(
        self, arch: str, num_classes: int, in_channels: int = 3, norm: str = "position"
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if num_classes < 2:
            raise ValueError("a B-cos classifier needs at least 2 classes (logit bias -log(K-1))")
        norm_layer = _norm_layer(norm)
        constructor = _constructor(arch)
        if norm_layer is not None and arch.startswith("vgg"):
            raise ValueError(
                f"norm={norm!r} is for the B-cos ResNets and DenseNets; the VGGs fix their own "
                "norm (vgg11_bnu is the package's VGG with uncentered batch norm)"
            )
        from bcos.data.transforms import AddInverse

        self.encode = AddInverse(dim=1)
        kwargs: dict[str, Any] = {} if norm_layer is None else {"norm_layer": norm_layer}
        self.net = constructor(num_classes=num_classes, in_chans=2 * in_channels, **kwargs)
        self.torchlap_config = {
            "arch": arch,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "norm": norm,
        }

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, K)`` of images ``x`` ``(B, C, H, W)`` in [0, 1]."""
        if x.dim() != 4 or x.shape[1] * 2 != self.encode_channels:
            raise ValueError(
                f"expected (B, {self.encode_channels // 2}, H, W) images in [0, 1], "
                f"got {tuple(x.shape)}"
            )
        return self.net(self.encode(x))

    @property
    def encode_channels(self) -> int:
        """Channels of the encoded input (twice the image channels)."""
        return 2 * int(self.torchlap_config["in_channels"])


def build_bcos(
    arch: str, num_classes: int, in_channels: int = 3, norm: str = "position"
) -> BcosClassifier:
    """A fresh :class:`BcosClassifier` (raises ``ImportError`` naming the extra without it).

    ``norm``: one of :data:`BCOS_NORMS` (default ``"position"``, the package constructors'
    default, which every run saved before this option was built with).
    """
    _require_bcos()
    return BcosClassifier(arch, num_classes, in_channels, norm)


def find_bcos(model: nn.Module) -> BcosClassifier | None:
    """The :class:`BcosClassifier` inside ``model`` (or the model itself), if any."""
    for module in model.modules():
        if isinstance(module, BcosClassifier):
            return module
    return None
