"""B-cos networks (Böhle et al., CVPR 2022 / TPAMI 2024) as a torchlap model family.

The networks come from the PyPI package ``bcos`` (optional extra ``torchlap[bcos]``): its
model definitions (``bcos.models``: B-cos ResNets, ResNeXts, VGGs, DenseNets; B-cos
convolutions with ``B = 2``, bias-free position norms, no ReLU, the logit bias
``-log(K - 1)``) and its input encoding ``[r, g, b, 1 - r, 1 - g, 1 - b]``
(``bcos.data.transforms.AddInverse``), which makes every colour a direction of equal norm.

:class:`BcosClassifier` puts the encoding in front of the network, so it takes images in
[0, 1] like every torchlap model (a B-cos run records mean 0 and std 1: the encoding replaces
the mean/std normalisation, as in the package's recipe). ``torchlap train --model bcos`` also
takes the package's loss, binary cross-entropy on one-hot targets; see the README for the rest
of the recipe.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from torch import Tensor, nn

__all__ = ["BcosClassifier", "bcos_architectures", "bcos_available", "build_bcos", "find_bcos"]

_FAMILIES = ("resnet", "vgg", "densenet")
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


class BcosClassifier(nn.Module):
    """``net([x, 1 - x])``: a ``bcos`` network behind its input encoding (images in [0, 1]).

    ``encode`` is the package's ``AddInverse``; ``net`` the package's model with
    ``2 * in_channels`` inputs. ``torchlap_config`` records how to rebuild it.
    """

    torchlap_bcos = True

    def __init__(self, arch: str, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if num_classes < 2:
            raise ValueError("a B-cos classifier needs at least 2 classes (logit bias -log(K-1))")
        constructor = _constructor(arch)
        from bcos.data.transforms import AddInverse

        self.encode = AddInverse(dim=1)
        self.net = constructor(num_classes=num_classes, in_chans=2 * in_channels)
        self.torchlap_config = {
            "arch": arch,
            "num_classes": num_classes,
            "in_channels": in_channels,
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


def build_bcos(arch: str, num_classes: int, in_channels: int = 3) -> BcosClassifier:
    """A fresh :class:`BcosClassifier` (raises ``ImportError`` naming the extra without it)."""
    _require_bcos()
    return BcosClassifier(arch, num_classes, in_channels)


def find_bcos(model: nn.Module) -> BcosClassifier | None:
    """The :class:`BcosClassifier` inside ``model`` (or the model itself), if any."""
    for module in model.modules():
        if isinstance(module, BcosClassifier):
            return module
    return None
