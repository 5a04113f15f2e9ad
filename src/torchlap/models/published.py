"""torchvision's published weights, loaded without unpickling anything but tensors.

``torchvision.models.get_model(weights=...)`` reads its download with ``torch.load(...,
weights_only=False)``: a file planted in torch's hub cache would run its code. torchlap builds
the model with ``weights=None`` and what the builder would set for the weights
(:func:`weights_kwargs`), checks a cached file's SHA-256 against the digits in its name, loads
the state dict with ``weights_only=True`` and adapts it as torchvision's builders do
(:func:`load_published`). :func:`check_state_tensors` refuses dtypes other than the model's and
non-finite values in any state dict torchlap loads.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.hub
from torch import nn

__all__ = [
    "AUX_ARCHITECTURES",
    "check_running_variances",
    "check_state_tensors",
    "load_published",
    "weights_kwargs",
]

#: torchvision models with auxiliary classifiers (torchlap builds them without)
AUX_ARCHITECTURES = ("inception_v3", "googlenet")
#: the state-dict prefixes of their auxiliary classifiers (in the published weights)
_AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")
#: DenseNet's published weights name its layers 'norm.1' ... (torchvision's densenet.py)
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
#: torch.hub's rule: a published file is named NAME-<first hex digits of its SHA-256>.EXT
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def weights_kwargs(arch: str, weights: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus what torchvision's builder sets when it is given ``weights`` (their
    classes, ViT's image_size, MaxViT's input_size, Inception/GoogLeNet's transform_input and
    init_weights): the model the weights fit. A conflicting ``arch_kwargs`` entry is refused,
    as torchvision refuses it."""
    meta = weights.meta
    wanted: dict[str, Any] = {"num_classes": len(meta["categories"])}
    if arch.startswith("vit_"):
        wanted["image_size"] = meta["min_size"][0]
    elif arch.startswith("maxvit"):
        wanted["input_size"] = meta["min_size"]
    if arch in AUX_ARCHITECTURES:
        kwargs.setdefault("transform_input", True)
        wanted["init_weights"] = False
    for key, value in wanted.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(
                f"arch_kwargs {key}={kwargs[key]!r} does not fit the weights {weights}, which "
                f"need {key}={value!r}: leave {key} out"
            )
        kwargs[key] = value
    return kwargs


def load_published(model: nn.Module, arch: str, weights: Any) -> None:
    """torchvision's ``weights`` into ``model`` (built with :func:`_weights_kwargs`), as its
    builder loads them: DenseNet's old key names renamed, the auxiliary classifiers that
    ``model`` was built without dropped (torchvision removes them after loading)."""
    state = _published_state(arch, weights)
    own = model.state_dict()
    if arch.startswith("densenet"):
        for key in list(state):
            match = _DENSENET_OLD_KEY.match(key)
            if match:
                state[match.group(1) + match.group(2)] = state.pop(key)
    for key in [k for k in state if k.startswith(_AUX_PREFIXES) and k not in own]:
        del state[key]
    check_state_tensors(state, own, f"the {arch} weights {weights.name} ({weights.url})")
    model.load_state_dict(state)


def _published_state(arch: str, weights: Any) -> dict[str, Any]:
    """The state dict of torchvision's ``weights``, downloaded to (or read from) torch's hub
    cache and unpickled with ``weights_only=True`` (tensors only: a pickle that would run code
    is refused). A cached file whose SHA-256 does not start with the digits in its name (the
    file torchvision publishes) is refused before it is read."""
    url, what = weights.url, f"the {arch} weights {weights.name}"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    advice = (
        f"delete {cached} to download it again from {url}, or pass a local .safetensors file "
        f"of {arch} with --pretrained PATH"
    )
    match = _HASH_IN_NAME.search(cached.name)
    if match and cached.is_file() and not _sha256(cached).startswith(match.group(1)):
        raise ValueError(
            f"{cached} (torch's hub cache of {what}) is not the published file: its SHA-256 "
            f"does not start with {match.group(1)}; {advice}"
        )
    try:
        # the OrderedDict as loaded: its _metadata holds module versions (MNASNet needs them)
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{cached} ({what}) is not a plain state dict of tensors: refused to unpickle it "
            f"(weights_only=True: {first}); {advice}"
        ) from None
    except OSError as error:
        raise OSError(
            f"cannot download {what} from {url} ({error}); without network, pass a local "
            f".safetensors file of {arch} with --pretrained PATH (build_model(pretrained=PATH))"
        ) from error
    except RuntimeError as error:  # torch.hub's check_hash of a fresh download
        if "hash" not in str(error):
            raise
        raise ValueError(
            f"the download of {what} from {url} is damaged ({error}); {advice}"
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_state_tensors(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str
) -> None:
    """Refuse weights that would load silently but wrongly: ``ValueError`` naming the tensor of
    ``state`` whose dtype differs from its counterpart in ``own`` (a model's ``state_dict()``;
    both dtypes named), or a floating-point tensor holding NaN or infinity. Accepted: the
    model's dtypes, finite values. Keys ``own`` lacks are not looked at (the caller refuses or
    drops them). ``source`` names the file in the message. One ``isfinite`` reduction per
    floating tensor (at load time only)."""
    for key, tensor in state.items():
        if key in own and tensor.dtype != own[key].dtype:
            raise ValueError(
                f"{source}: tensor {key!r} is {tensor.dtype} in the file but {own[key].dtype} "
                "in the model; accepted: the dtypes of the model's state_dict() (save the "
                "weights of the same model, or convert them)"
            )
    for key, tensor in state.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(
            torch.isfinite(tensor).all()
        ):
            raise ValueError(
                f"{source}: tensor {key!r} holds NaN or infinite values; accepted: finite "
                "weights (the file is damaged, or comes from a training run that diverged)"
            )


def check_running_variances(state: Mapping[str, torch.Tensor], source: str) -> None:
    """``ValueError`` naming the batch-norm tensors of ``state`` whose ``running_var`` is
    negative (its square root divides the activations: a negative one makes the outputs NaN,
    though the value is finite); ``source`` names the file. Accepted: every variance >= 0. One
    reduction over all of them, the names looked up only on failure."""
    keys = [k for k in state if k.endswith("running_var") and state[k].numel()]
    if not keys or float(torch.cat([state[k].flatten().float() for k in keys]).min()) >= 0:
        return
    bad = [k for k in keys if bool((state[k] < 0).any())]
    raise ValueError(
        f"{source}: batch-norm tensor(s) {bad[:5]} must be >= 0 (a running variance; a "
        f"negative one makes the outputs NaN), got the minimum {float(state[bad[0]].min()):g}"
    )
