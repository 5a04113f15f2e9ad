"""Build a LAP classifier from a torchvision architecture name, and rebuild it from its config.

``build_model`` = ``torchvision.models.get_model`` + first convolution adapted to the input
channels + classifier for ``num_classes`` + :func:`torchlap.lapify`, with everything needed to
rebuild the same module tree recorded, JSON-serialisable, in ``model.torchlap_config``.
:func:`model_from_config` rebuilds it (then load the saved weights).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.hub
from torch import nn

from torchlap._checks import check_has_values, check_keyword_dict, check_positive_int
from torchlap.io import PinnedPath, read_file
from torchlap.layers import LapBase
from torchlap.models.lapify import _options as lap_options
from torchlap.models.lapify import lapify
from torchlap.models.lapify_sites import _set_child
from torchlap.models.presets import PRESETS
from torchlap.models.published import (
    AUX_ARCHITECTURES,
    check_state_tensors,
    load_published,
    weights_kwargs,
)
from torchlap.models.records import model_record, set_model_record
from torchlap.models.wrapping import unwrap_normalized_state

__all__ = [
    "LAPIFY_KEYS",
    "adapt_input_weight",
    "apply_lapify_config",
    "build_model",
    "check_lapify_calls",
    "check_pretrained_name",
    "model_from_config",
    "modules_after",
]

logger = logging.getLogger(__name__)


def _classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _check_arch(arch: str) -> None:
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a torchvision model name (str), got {type(arch).__name__}")
    known = _classification_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"arch (--arch): unknown architecture {arch!r}.{hint} Known torchvision classifiers "
            "include "
            "resnet18, resnet50, resnext50_32x4d, wide_resnet50_2, vgg11, densenet121, "
            "mobilenet_v2, mobilenet_v3_small, efficientnet_b0, regnet_y_400mf, convnext_tiny, "
            f"inception_v3 ({len(known)} in all: torchvision.models.list_models())"
        )


def _is_path(pretrained: str) -> bool:
    return (
        pretrained.endswith(".safetensors")
        or os.sep in pretrained
        or "/" in pretrained
        or Path(pretrained).is_dir()
    )


def load_pretrained_file(
    model: nn.Module, pretrained: str | os.PathLike[str], in_channels: int
) -> Path:
    """Load a ``.safetensors`` file into ``model`` (a torchlap run's weights file too).

    Keys of LAP layers may be missing; a LAP run's discriminative scorers (weak supervision)
    are added to the LAP layers that lack them and loaded; a classifier of another size is left
    fresh; RGB first-convolution weights are adapted to ``in_channels``. Any other key that
    does not fit refuses the file (``ValueError``). Returns the file read. A run
    folder is resolved to its weights file by the caller (:func:`torchlap.runs.pretrained_weights`).
    """
    path = _weights_file(pretrained)
    _load_safetensors(model, path, in_channels)
    return Path(path)


def _weights_file(pretrained: str | os.PathLike[str]) -> Path | PinnedPath:
    """``pretrained``, checked to be a file (the run folders' layout is :mod:`torchlap.runs`'s,
    so a folder is refused here: its caller resolves a run folder to its weights file); a
    :class:`~torchlap.io.PinnedPath` stays pinned, so the file is loaded only if its bytes are
    the ones checked."""
    path = Path(pretrained)
    if path.is_dir():
        raise ValueError(
            f"pretrained {str(path)!r} is a folder: pass a .safetensors file; for a torchlap run "
            "folder pass torchlap.runs.pretrained_weights(folder), its weights file "
            "(`torchlap train --pretrained` takes the folder itself)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    return pretrained if isinstance(pretrained, PinnedPath) else path


def _weights(arch: str, name: str) -> Any:
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    if name == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[name]
    except KeyError:
        available = [w.name for w in enum]
        raise ValueError(
            f"pretrained (--pretrained): unknown weights {name!r} for {arch}: expected one of "
            f"{available}, 'DEFAULT', or the path of a local .safetensors file (torchlap train "
            "also takes a run folder)"
        ) from None


def check_pretrained_name(arch: str, pretrained: object) -> None:
    """Refuse ``pretrained`` if it is a torchvision weights name that ``arch`` (a torchvision
    classifier) does not have, naming ``--pretrained`` and the names ``arch`` has; checked with
    ``torchvision.models.get_model_weights`` (no model built, nothing downloaded).

    Left to the model builder, as before: ``None``, a path (a ``.safetensors`` file, a value
    with a path separator, an existing folder such as a run folder) and an ``arch`` that is not
    a torchvision classifier (torchlap's small CNNs, timm or B-cos models).
    """
    if not isinstance(pretrained, str) or _is_path(pretrained):
        return
    if not isinstance(arch, str) or arch not in _classification_models():
        return
    _weights(arch, pretrained)


def _first_conv_name(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError(f"{type(model).__name__} has no Conv2d: cannot adapt its input channels")


def _classifier_name(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classifier to resize to num_classes"
        )
    return names[-1]


def modules_after(model: nn.Module, name: str) -> list[str]:
    """The modules that follow the submodule ``name`` (a classifier's head after its global
    pool): on each level of its path, the children registered after it that hold parameters
    (torchvision, timm and torchlap's networks register their modules in forward order)."""
    after, module, prefix = [], model, ""
    for part in name.split("."):
        names = [child for child, _ in module.named_children()]
        for child in names[names.index(part) + 1 :]:
            if any(True for _ in module.get_submodule(child).parameters()):
                after.append(prefix + child)
        module, prefix = module.get_submodule(part), f"{prefix}{part}."
    return after


def adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-convolution weights for ``in_channels`` inputs from RGB ones.

    One channel: the sum of the RGB filters (a gray image ``g`` gives the response the RGB
    model gives to ``(g, g, g)``). Otherwise the RGB filters repeated cyclically and scaled by
    ``3 / in_channels`` (timm's rule): the response to a constant image is kept exactly when
    ``in_channels`` is a multiple of 3, and in expectation otherwise.

    ``weight``: a floating (out, C, kh, kw) tensor; ``in_channels``: an int >= 1.
    """
    check_positive_int(in_channels, "in_channels")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or not weight.is_floating_point():
        got = (
            f"shape {tuple(weight.shape)} and dtype {weight.dtype}"
            if isinstance(weight, torch.Tensor)
            else type(weight).__name__
        )
        raise TypeError(f"weight must be a floating tensor (out, C, kh, kw), got {got}")
    if not bool(torch.isfinite(check_has_values(weight, "weight")).all()):
        raise ValueError("weight holds NaN or infinite values; only finite weights are adapted")
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // weight.shape[1])
    tiled = weight.repeat(1, repeats, 1, 1)[:, :in_channels]
    return tiled * (weight.shape[1] / in_channels)


def _set_input_channels(model: nn.Module, in_channels: int, keep_weights: bool) -> None:
    name = _first_conv_name(model)
    conv = model.get_submodule(name)
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ValueError(f"the first convolution {name} is grouped: cannot change its inputs")
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, 1, conv.bias is not None, conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(adapt_input_weight(conv.weight, in_channels))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    _set_child(model, name, new)
    if hasattr(model, "transform_input") and in_channels != 3:
        model.transform_input = False  # Inception's RGB re-normalisation needs 3 channels


def _set_num_classes(model: nn.Module, num_classes: int) -> None:
    name = _classifier_name(model)
    linear = model.get_submodule(name)
    if linear.out_features == num_classes:
        return
    new = nn.Linear(
        linear.in_features, num_classes, bias=linear.bias is not None,
        device=linear.weight.device, dtype=linear.weight.dtype,
    )  # fmt: skip
    _set_child(model, name, new)


def _base_model(
    arch: str, num_classes: int, in_channels: int, weights: Any, arch_kwargs: dict[str, Any]
) -> nn.Module:
    import torchvision

    kwargs = dict(arch_kwargs)
    if arch in AUX_ARCHITECTURES:
        kwargs.setdefault("aux_logits", False)
        if weights is None:
            kwargs.setdefault("init_weights", True)
    if weights is None:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    else:
        # never get_model(weights=...): torchvision unpickles the file with weights_only=False
        kwargs = weights_kwargs(arch, weights, kwargs)
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
        load_published(model, arch, weights)
        _set_num_classes(model, num_classes)
    _set_input_channels(model, in_channels, keep_weights=weights is not None)
    return model


def _check_lap_args(
    lap: object,
    n_concepts: int,
    hidden_channels: int,
    aggregation: Any,
    alpha: float,
    eps: float,
    head_hidden: str = "shared",
) -> None:
    """``lap`` and the LAP options of :func:`build_model`, checked before any weights are
    downloaded or read (they were checked by lapify, after the download)."""
    if lap is not None and not isinstance(lap, (str, Sequence)):
        raise TypeError(f"lap must be a str, a list of module names or None, got {lap!r}")
    if isinstance(lap, str) and lap not in ("auto", "global", "none", *PRESETS):
        raise ValueError(
            f"unknown lap={lap!r}: expected 'auto', 'global', 'none', None, a list of module "
            f"names or a preset {sorted(PRESETS)}"
        )
    if lap is None or lap == "none":
        return
    if not isinstance(lap, str) and not all(isinstance(name, str) for name in lap):
        raise TypeError(f"lap must be a str, a list of module names or None, got {list(lap)!r}")
    lap_options(n_concepts, hidden_channels, aggregation, alpha, eps, head_hidden)


def lapify_lap(model: nn.Module, where: Any, lap: object, **options: Any) -> None:
    """:func:`lapify` at ``where``, the sites of the caller's ``lap`` (``--lap``): its refusal
    of a module list (``"where: the model has no module ..."``) names ``lap`` and its value."""
    try:
        lapify(model, where=where, **options)
    except ValueError as error:
        if not str(error).startswith("where: "):
            raise
        raise ValueError(f"lap (--lap) {lap!r}: {str(error).removeprefix('where: ')}") from None


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    lap: str | Sequence[str] | None = "auto",
    n_concepts: int = 1,
    hidden_channels: int = 8,
    aggregation: str = "max",
    alpha: float = 1.0,
    eps: float = 1e-6,
    pretrained: str | None = None,
    input_size: int | Sequence[int] | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    head_hidden: str = "shared",
) -> nn.Module:
    """A torchvision classifier with LAP layers (paper 000, III.C), ready to train.

    ``arch``: a torchvision classification model name (``torchvision.models.get_model``).
    ``lap``: ``"auto"``, ``"global"``, a preset name, a list of module names, or ``None``/``"none"``
    for the plain model. ``pretrained``: a torchvision weights name (``"IMAGENET1K_V1"``,
    ``"DEFAULT"``; downloaded to torch's hub cache, whose file must have the published SHA-256,
    and unpickled with ``weights_only=True``; offline, an ``OSError`` names the URL), the path
    of a ``.safetensors`` state dict of
    the same architecture (a torchlap run's weights file too, e.g. a trained vanilla run as
    BLA-PH's frozen backbone: :func:`torchlap.runs.pretrained_weights` gives a run folder's),
    plain or made LAP (keys of LAP layers may be missing; a LAP run's discriminative scorers
    are added to the LAP layers and loaded; a classifier of another size is left fresh;
    first-convolution RGB weights are adapted to ``in_channels``: summed for one channel).
    Weights of a dtype other than the model's, or holding NaN/inf, are refused
    (:func:`check_state_tensors`). Inception v3 / GoogLeNet are built without auxiliary
    classifiers. The LAP options (``n_concepts``, ``hidden_channels``, ``aggregation``,
    ``alpha``, ``eps``, ``head_hidden``) are :func:`lapify`'s.
    """
    _check_arch(arch)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_channels, "in_channels")
    arch_kwargs = check_keyword_dict(
        arch_kwargs, "arch_kwargs", f"of torchvision's {arch!r} constructor"
    )
    try:
        json.dumps(arch_kwargs)
    except TypeError as error:
        raise TypeError(f"arch_kwargs must be JSON-serialisable: {error}") from None
    _check_lap_args(lap, n_concepts, hidden_channels, aggregation, alpha, eps, head_hidden)
    weights, path = None, None
    if pretrained is not None:
        if not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(f"pretrained must be a str or a path, got {pretrained!r}")
        pretrained = os.fspath(pretrained)
        if _is_path(pretrained):
            path = _weights_file(pretrained)
        else:
            weights = _weights(arch, pretrained)
    model = _base_model(arch, num_classes, in_channels, weights, arch_kwargs)
    if lap is not None and lap != "none":
        lapify_lap(
            model, lap if isinstance(lap, str) else list(lap), lap, n_concepts=n_concepts,
            hidden_channels=hidden_channels, aggregation=aggregation, alpha=alpha, eps=eps,
            input_size=input_size, head_hidden=head_hidden,
        )  # fmt: skip
    if path is not None:
        _load_safetensors(model, path, in_channels)
    lapify_calls = model_record(model).get("lapify", [])
    set_model_record(
        model,
        {
            "arch": arch,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "arch_kwargs": arch_kwargs,
            "lap": lap if lap is None or isinstance(lap, str) else list(lap),
            "pretrained": pretrained,
            "lapify": lapify_calls,
        },
    )
    return model


def _load_safetensors(model: nn.Module, path: Path | PinnedPath, in_channels: int) -> None:
    """Load the ``.safetensors`` file ``path`` into ``model``. The file is read once, and the
    tensors are loaded from those bytes (a :class:`~torchlap.io.PinnedPath` is checked on them):
    for a moment the bytes and the tensors are both in memory, twice the weights' size."""
    from safetensors.torch import load

    data = read_file(path, "the pretrained weights (--pretrained)")
    try:
        state = dict(sorted(load(data).items()))  # (by name, as load_file gives them)
    except Exception as error:
        raise ValueError(
            f"pretrained (--pretrained): cannot read {path} as a safetensors file: {error}"
        ) from error
    # a torchlap run's weights: NormalizedClassifier keeps the network under "net." next to
    # its input normalisation, which the new run records afresh from its own data
    network = unwrap_normalized_state(state)
    if network is not None:
        state = network
    _enable_stored_scorers(model, state, path)
    own = model.state_dict()
    conv_key = f"{_first_conv_name(model)}.weight"
    stored = state.get(conv_key)
    if stored is not None and stored.dim() == 4 and stored.shape[1] == 3 != in_channels:
        state[conv_key] = adapt_input_weight(stored, in_channels)
    classifier = _classifier_name(model)
    weight, bias = f"{classifier}.weight", f"{classifier}.bias"
    stored, fresh = state.get(weight), own.get(weight)
    # a classifier for another number of classes on the same features is left fresh; other
    # features (another architecture's weights) are a shape mismatch, reported below
    if (
        stored is not None
        and fresh is not None
        and stored.shape[1:] == fresh.shape[1:]
        and stored.shape[0] != fresh.shape[0]
    ):
        logger.warning(
            "%s: %s is a classifier for %d classes, this model has %d: left fresh",
            path, classifier, stored.shape[0], fresh.shape[0],
        )  # fmt: skip
        del state[weight]
        state.pop(bias, None)
    if getattr(model, "AuxLogits", None) is None:
        for key in [k for k in state if k.startswith("AuxLogits.")]:
            del state[key]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    lap_prefixes = [f"{n}." for n, m in model.named_modules() if isinstance(m, LapBase)]
    dropped_classifier = {f"{classifier}.weight", f"{classifier}.bias"}
    missing = [
        k
        for k in own
        if k not in state
        and not any(k.startswith(p) for p in lap_prefixes)
        and k not in dropped_classifier
    ]
    if unexpected or mismatched or missing:
        raise ValueError(
            f"{path} does not hold weights of this architecture: "
            f"unexpected keys {unexpected[:8]}, shape mismatches {mismatched[:8]}, "
            f"missing keys {missing[:8]}"
        )
    check_state_tensors(state, own, str(path))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        logger.info("%s: %d LAP/classifier tensors start fresh", path, len(result.missing_keys))


def _enable_stored_scorers(model: nn.Module, state: dict[str, Any], path: Path) -> list[str]:
    """Add the discriminative scorer (section III.B.1) to each LAP layer of ``model`` whose
    scorer ``state`` holds: a LAP run trained with weak supervision saved it, and a LAP layer
    only has one once :meth:`~torchlap.layers.LapBase.enable_discriminative_scorer` made it.
    Returns the layers' names (keys of layers that ``model`` lacks stay unexpected)."""
    enabled = []
    for name, module in model.named_modules():
        if not isinstance(module, LapBase) or module.discriminative_scorer is not None:
            continue
        prefix = f"{name}.discriminative_scorer." if name else "discriminative_scorer."
        if any(key.startswith(prefix) for key in state):
            module.enable_discriminative_scorer()
            enabled.append(name)
    if enabled:
        logger.info("%s: loading the discriminative scorers of %s", path, ", ".join(enabled))
    return enabled


#: the keys of a recorded ``lapify`` call (``model.torchlap_config["lapify"][i]``) that
#: :func:`apply_lapify_config` replays (``input_size`` may be missing, and ``head_hidden``,
#: which records written before it existed lack: ``"shared"``)
LAPIFY_KEYS = ("sites", "n_concepts", "hidden_channels", "aggregation", "alpha", "eps")


def check_lapify_calls(calls: Any, name: str = "model.lapify") -> list[dict[str, Any]]:
    """``calls`` if it is a recorded ``lapify`` list: a list of dicts, each with the keys
    :data:`LAPIFY_KEYS` and ``sites`` a non-empty list of module names (strings); else
    ``TypeError``/``ValueError`` naming ``name[i]`` (default ``model.lapify``, the key of a
    run's ``config.json``) and what is accepted. The values themselves are :func:`lapify`'s to
    check."""
    accepted = f"a dict with the keys {list(LAPIFY_KEYS)} (what lapify records)"
    if not isinstance(calls, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of recorded lapify calls (each {accepted}), got {calls!r}"
        )
    for index, call in enumerate(calls):
        if not isinstance(call, dict):
            raise TypeError(f"{name}[{index}] must be {accepted}, got {call!r}")
        missing = [key for key in LAPIFY_KEYS if key not in call]
        if missing:
            raise ValueError(f"{name}[{index}] lacks the key(s) {missing}: it must be {accepted}")
        sites = call["sites"]
        if (
            not isinstance(sites, list)
            or not sites
            or not all(isinstance(site, str) and site for site in sites)
        ):
            raise ValueError(
                f"{name}[{index}]['sites'] must be a non-empty list of module names, got {sites!r}"
            )
        if call["aggregation"] == "module":
            raise ValueError(
                f"{name}[{index}] used an nn.Module aggregation, which a config cannot "
                "rebuild: call lapify with the same module instead"
            )
    return calls


def apply_lapify_config(
    model: nn.Module, calls: Sequence[dict[str, Any]], name: str = "model.lapify"
) -> nn.Module:
    """Replay recorded ``lapify`` calls (``model.torchlap_config["lapify"]``) on a fresh model.

    ``calls`` is checked first (:func:`check_lapify_calls`; ``name`` names it in the
    messages, which also prefix ``name[i]`` to the errors of the replayed call)."""
    for index, call in enumerate(check_lapify_calls(calls, name)):
        try:
            lapify(
                model, where=list(call["sites"]), n_concepts=call["n_concepts"],
                hidden_channels=call["hidden_channels"], aggregation=call["aggregation"],
                alpha=call["alpha"], eps=call["eps"], input_size=call.get("input_size"),
                head_hidden=call.get("head_hidden", "shared"),
            )  # fmt: skip
        except (TypeError, ValueError) as error:
            kind = TypeError if isinstance(error, TypeError) else ValueError
            raise kind(f"{name}[{index}]: {error}") from None
    return model


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild the module tree described by ``model.torchlap_config`` (weights not loaded)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    missing = [k for k in ("arch", "num_classes") if k not in config]
    if missing:
        raise ValueError(f"config lacks {missing}: it was not written by build_model")
    model = build_model(
        config["arch"], config["num_classes"], config.get("in_channels", 3), lap=None,
        arch_kwargs=config.get("arch_kwargs"),
    )  # fmt: skip
    apply_lapify_config(model, config.get("lapify", []))
    set_model_record(model, {**config, "pretrained": config.get("pretrained")})
    return model
