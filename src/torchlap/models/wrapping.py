"""The saved model's front end: input normalization inside the model.

A trained torchlap model takes images in [0, 1] and normalizes them itself (a
:class:`Normalize` module in front of the classifier, :class:`NormalizedClassifier`). So
explainers, perturbation metrics and masks all work in [0, 1] image space: a "removed" pixel is
0 (black) in image space, not in normalized space, and nobody has to remember the dataset's
mean and std. The mean and std are buffers (saved with the weights) and are also written to
``config.json``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from torchlap._checks import check_feature_input

__all__ = ["Normalize", "NormalizedClassifier", "SmallCNN", "unwrap_normalized_state"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for (B, C, H, W) images in [0, 1]."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        for name, values in (("mean", mean), ("std", std)):
            if (
                isinstance(values, (str, bytes))
                or not isinstance(values, Iterable)
                or not (
                    isinstance(values, Tensor)
                    or all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
                )
            ):
                raise TypeError(
                    f"{name} must be a list of per-channel numbers (not bools or texts), got "
                    f"{values!r:.80}"
                )
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.dim() != 1 or mean_t.numel() < 1 or mean_t.shape != std_t.shape:
            raise ValueError(
                f"mean and std must be equal-length lists of per-channel values, got "
                f"{list(mean)!r} and {list(std)!r}"
            )
        finite = bool(torch.isfinite(mean_t).all() & torch.isfinite(std_t).all())
        if not finite or not bool((std_t > 0).all()):
            raise ValueError(
                f"std must be > 0 and finite, and mean finite, got mean={mean!r}, std={std!r}"
            )
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` (B, C, H, W), a floating tensor of images in [0, 1]."""
        if not isinstance(x, Tensor):
            raise TypeError(f"images must be a torch.Tensor (B, C, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"images must be a floating tensor in [0, 1], got dtype {x.dtype} (for 0-255 "
                "uint8 images: images.float() / 255)"
            )
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"expected (B, {self.mean.shape[1]}, H, W) images, got shape {tuple(x.shape)}"
            )
        if x.device != self.mean.device:
            raise ValueError(
                f"images are on {x.device} but the normalisation's mean and std on "
                f"{self.mean.device}; move the images (or the model) to one device"
            )
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedClassifier(nn.Module):
    """``net(normalize(x))``: the model a training run saves (input: images in [0, 1]).

    ``net`` is the classifier (vanilla or LAP-extended); its LAP layers are reached as
    ``net.<name>`` (``torchlap.attention_maps`` works on the wrapper directly).
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be the classifier (an nn.Module), got {type(net).__name__}")
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, num_classes) of images ``x`` (B, C, H, W) in [0, 1]."""
        return self.net(self.normalize(x))


#: the keys a :class:`NormalizedClassifier` keeps next to its network's (``net.*``)
_NORMALIZER_KEYS = frozenset({"normalize.mean", "normalize.std"})
_NET_PREFIX = "net."


def unwrap_normalized_state(state: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """The network's tensors (``net.`` prefix removed) if ``state`` is the state dict of a
    :class:`NormalizedClassifier` (every key ``net.*`` or one of its normalizer's buffers, as in
    a training run's weights file), else ``None``."""
    keys = set(state)
    if not keys >= _NORMALIZER_KEYS:
        return None
    network = keys - _NORMALIZER_KEYS
    if not network or not all(key.startswith(_NET_PREFIX) for key in network):
        return None
    return {key[len(_NET_PREFIX) :]: value for key, value in state.items() if key in network}


class SmallCNN(nn.Module):
    """A tiny CNN for tests and quick experiments (``--arch smallcnn`` / ``smallcnn-gn``).

    Three conv-norm-ReLU stages, each ended by a 2x2 max pool (``layer1.pool`` ...), then
    ``avgpool`` (``nn.AdaptiveAvgPool2d(1)``) and ``fc``: the pooling layers LAP replaces,
    named like torchvision's ResNet so phase targets such as ``layer3,fc`` read the same.
    ``norm="batch"`` uses batch norm; ``norm="group"`` group norm, which does not depend on the
    batch, so a multi-process CPU run (where ``SyncBatchNorm`` is unavailable) computes what a
    single process does.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: int = 8, norm: str = "batch"
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an int >= 1, got {width!r}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        channels = [in_channels, width, 2 * width, 4 * width]
        for index in range(3):
            stage = nn.Sequential()
            stage.add_module("conv", nn.Conv2d(channels[index], channels[index + 1], 3, padding=1))
            out = channels[index + 1]
            stage.add_module(
                "bn", nn.BatchNorm2d(out) if norm == "batch" else nn.GroupNorm(min(4, out), out)
            )
            stage.add_module("relu", nn.ReLU())
            stage.add_module("pool", nn.MaxPool2d(2))
            self.add_module(f"layer{index + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, num_classes) of images (B, in_channels, H, W), H and W >= 8 (three
        halvings); the input is checked as a LAP layer checks its own (no value read)."""
        conv = self.layer1.conv
        check_feature_input(self, x, conv.in_channels, conv.weight, min_size=8)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
