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
:func:`build_bcos` keeps the constructors' default; ``torchlap train --model bcos`` builds
new runs with :data:`DEFAULT_TRAIN_NORM` unless ``--bcos-norm`` says otherwise (with the
position norm the networks collapse to chance on the built-in datasets), and records the norm
in ``config.json``'s model record (a record without it was built with ``"position"``).
"""

from __future__ import annotations

import difflib
import importlib
import math
from typing import Any

from torch import Tensor, nn

__all__ = [
    "BCOS_NORMS",
    "DEFAULT_TRAIN_NORM",
    "BcosClassifier",
    "BcosSmallCNN",
    "bcos_architectures",
    "bcos_available",
    "build_bcos",
    "find_bcos",
]

_FAMILIES = ("resnet", "vgg", "densenet")
# torchlap's own B-cos architectures, built from the package's modules (BcosSmallCNN)
_OWN_ARCHS = ("smallcnn",)
# normalisation layers a B-cos network can be built with (see the module docstring)
BCOS_NORMS = ("position", "batch-uncentered")
#: the norm of new ``torchlap train --model bcos`` runs (``--bcos-norm``): with the position norm
#: the networks collapse to chance on the built-in datasets (see the README)
DEFAULT_TRAIN_NORM = "batch-uncentered"
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
    """The model names of ``bcos.models`` (ResNet, VGG and DenseNet families) torchlap builds,
    and torchlap's own ``smallcnn`` (:class:`BcosSmallCNN`)."""
    _require_bcos()
    names = list(_OWN_ARCHS)
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
    if arch == "smallcnn":
        return BcosSmallCNN
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


class BcosSmallCNN(nn.Module):
    """A B-cos version of torchlap's SmallCNN (``--model bcos --arch smallcnn``).

    Three stages of a 3x3 ``BcosConv2d`` (B = 2, ``max_out`` 2 as in the package's CIFAR-10
    ResNets), a bias-free norm (``norm_layer``, default the package constructors' position
    norm) and a 2x2 average pool (linear, so ``W(x)^T x`` stays exact), named ``layer1`` ...
    like :class:`torchlap.models.wrapping.SmallCNN`; then, as in the package's ResNets, a 1x1
    ``BcosConv2d`` ``fc`` giving per-position logits, ``avgpool`` and the ``LogitLayer`` with
    the bias ``-log(K - 1)``. ``in_chans`` counts the encoded channels (``[x, 1 - x]``).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int,
        norm_layer: Any = None,
        width: int = 8,
        max_out: int = 2,
    ) -> None:
        super().__init__()
        from bcos.modules import BcosConv2d, LogitLayer, norms

        make_norm = norm_layer or norms.NoBias(norms.DetachablePositionNorm2d)
        channels = [in_chans, width, 2 * width, 4 * width]
        for index in range(3):
            stage = nn.Sequential()
            stage.add_module(
                "conv",
                BcosConv2d(channels[index], channels[index + 1], 3, padding=1, max_out=max_out),
            )
            stage.add_module("bn", make_norm(channels[index + 1]))
            stage.add_module("pool", nn.AvgPool2d(2))
            self.add_module(f"layer{index + 1}", stage)
        self.fc = BcosConv2d(channels[-1], num_classes, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.logit_layer = LogitLayer(logit_bias=-math.log(num_classes - 1))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, K)`` of encoded images ``x`` ``(B, in_chans, H, W)``."""
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.logit_layer(self.avgpool(self.fc(x)).flatten(1))


class BcosClassifier(nn.Module):
    """``net([x, 1 - x])``: a ``bcos`` network behind its input encoding (images in [0, 1]).

    ``encode`` is the package's ``AddInverse``; ``net`` the package's model with
    ``2 * in_channels`` inputs. ``torchlap_config`` records how to rebuild it.
    """

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
