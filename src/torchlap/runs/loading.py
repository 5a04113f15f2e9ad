"""A trained run read back (:func:`load_run`: its model rebuilt from ``config.json`` and
``model.safetensors``, no pickle) and a run folder given as pretrained weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load
from torch import nn

from torchlap._checks import is_int
from torchlap.io import PinnedPath, read_file
from torchlap.models.published import check_running_variances, check_state_tensors
from torchlap.models.recipes import rebuild_model
from torchlap.runs._folder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    RunError,
    is_run_config,
    present_weights,
)
from torchlap.runs.facts import RunFacts, image_side, read_run_facts
from torchlap.runs.integrity import check_integrity, check_recorded_digest

__all__ = ["LoadedRun", "load_run", "pretrained_weights"]


def pretrained_weights(pretrained: str | os.PathLike[str]) -> str:
    """The file a ``--pretrained`` value loads: a run folder's weights file, else the value
    itself (a torchvision weights name or a ``.safetensors`` file, which the model builder
    checks).

    :func:`torchlap.models.build_model` takes files only (``models`` does not know a run's
    layout): pass it ``pretrained_weights(run_folder)``. Raises :class:`RunFileNotFoundError`
    for a folder without weights, :class:`RunError` for a run's weights whose SHA-256 is not
    the one its ``config.json`` records. A run's checked weights come back as a
    :class:`~torchlap.io.PinnedPath` (a ``str``) holding the digest checked: ``build_model``
    loads that file only if its bytes still have it (a file swapped after the check is refused
    with ``ValueError``).
    """
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a str or a path, got {pretrained!r}")
    path = Path(pretrained)
    if not path.is_dir():
        return os.fspath(pretrained)
    weights = present_weights(
        path,
        f"pretrained folder {path} holds no {WEIGHTS_FILE}: pass a .safetensors file or a "
        "finished torchlap run folder",
    )
    if is_run_config(path / CONFIG_FILE):  # a torchlap run's: the weights it recorded
        digest = check_integrity(path, weights)
        if digest is not None:  # the builder loads these bytes or nothing (read_file checks)
            return PinnedPath(weights, digest)
    return str(weights)


@dataclass
class LoadedRun(RunFacts):
    """A trained run read back by :func:`load_run`: its :class:`RunFacts` and ``model``.

    ``model`` takes images in [0, 1] (it normalizes them itself) and is in eval mode.
    ``weights_sha256``: the SHA-256 of the weights loaded, checked against the one
    ``config.json`` records (``None``: a run from before the record, its weights unchecked).
    """

    model: nn.Module
    weights_sha256: str | None = None


def load_run(run_dir: str | os.PathLike[str] | RunFacts) -> LoadedRun:
    """Rebuild a trained model from ``config.json`` + ``model.safetensors`` (no pickle).

    Raises :class:`RunFileNotFoundError` when the folder is not a run or the run has not
    finished (the weights are written at its end), :class:`RunError` when ``config.json`` is
    from a newer torchlap (``format_version``: an int from 1 to :data:`RUN_FORMAT_VERSION`), a
    key it needs has the wrong type (``classes``: a list of distinct class names, one per model
    output; ``mean``/``std``: one finite number per input channel, ``std`` > 0;
    ``in_channels``: an int >= 1; ``image_size``: an int from 1 to 8192 or a square pair
    ``[n, n]``; ``model`` and ``train`` (if present): dicts; ``concept_sets``: what
    ``ConceptSets.to_dict()`` writes (``null`` in a run whose ``lap_layers``, the model's LAP
    layers, are none); ``model.lapify``: a list of the dicts lapify records, each with the
    keys :data:`~torchlap.models.build.LAPIFY_KEYS`; ``integrity``: see
    :func:`check_integrity`), ``model.safetensors`` leads out of the run folder (a symlink),
    the weights' SHA-256 differs from the recorded one, or the weights do not fit the model
    ``config.json`` describes (a missing, unexpected or misshaped tensor, a dtype other than
    the model's, a NaN or infinite value, a negative batch-norm ``running_var``). Each
    message names ``config.json`` and the key (or the tensor).
    A run saved with a relative data folder (before torchlap recorded absolute paths) has it
    resolved, see :func:`resolve_run_data`.
    ``run_dir`` may be the run's :class:`RunFacts` (:func:`read_run_facts`, which checks
    ``config.json`` without building the model): its ``config.json`` is not read again.

    ``model.safetensors`` is read once: its SHA-256 is checked on the bytes read and the
    tensors are loaded from those same bytes (a file swapped after the check is not loaded).
    Memory: the file's bytes, the rebuilt model and the loaded tensors are alive together for
    a moment, about three times the weights' size (a ResNet-50's are about 100 MB). An
    unreadable ``config.json`` or ``model.safetensors`` raises the ``OSError`` of
    :func:`~torchlap.io.read_file` (``PermissionError``...), naming the file.
    """
    facts = run_dir if isinstance(run_dir, RunFacts) else read_run_facts(run_dir)
    config, path = facts.config, facts.run_dir / CONFIG_FILE
    content = read_file(facts.weights, "the run's weights")  # once: checked bytes are loaded
    digest = check_recorded_digest(facts.run_dir, config, facts.weights, content)
    try:
        model = rebuild_model(config)
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"{path} does not describe a model: {error}") from None
    # (a model.num_classes edited: the weights differ)
    _load_weights(model, content, facts.weights, path)
    del content  # (the file's bytes freed before the checks below)
    _check_agrees_with_model(path, config, model, facts.image_size)
    _check_outputs(path, config, facts, model)
    loaded = ("model", "weights_sha256")  # (a LoadedRun given as its facts: these are new)
    fields = {key: value for key, value in vars(facts).items() if key not in loaded}
    return LoadedRun(model=model, weights_sha256=digest, **fields)


def _check_agrees_with_model(
    path: Path, config: dict[str, Any], model: nn.Module, image_size: int
) -> None:
    """config.json's facts that the model also holds must be the model's: the normalization
    (the weights' ``normalize`` buffers are what runs), the LAP layers, the training size."""
    state = model.state_dict()
    for key in ("mean", "std"):
        held = [v for k, v in state.items() if k.endswith(f"normalize.{key}")]
        if held and not torch.allclose(
            held[0].flatten().double(), torch.tensor(config[key], dtype=torch.float64), atol=1e-6
        ):
            raise RunError(
                f"{path}: '{key}' is {config[key]} but the weights normalize with "
                f"{held[0].flatten().tolist()} (was config.json edited?)"
            )
    recorded = config.get("lap_layers")
    if "lap_layers" in config:  # (absent: a run saved before it was recorded)
        from torchlap.layers import lap_modules  # (the package's layers, loaded with models)

        # the record names them in the network; the loaded model wraps it as `net`
        present = sorted(name.removeprefix("net.") for name in lap_modules(model))
        if not isinstance(recorded, list) or sorted(map(str, recorded)) != present:
            raise RunError(f"{path}: 'lap_layers' is {recorded!r}, the model's are {present}")
    trained = image_side((config.get("train") or {}).get("image_size"))
    pair = isinstance(trained, list) and len(trained) == 2 and all(map(is_int, trained))
    if not (pair or trained is None or is_int(trained)):
        raise RunError(
            f"{path}: 'train.image_size' must be an int (or a pair of ints), as training "
            f"writes it, got {trained!r} (was config.json edited?)"
        )
    if trained is not None and trained != image_size:
        raise RunError(
            f"{path}: 'image_size' is {config['image_size']} but the run trained at {trained} "
            "(train.image_size; was config.json edited?)"
        )


def _load_weights(model: nn.Module, content: bytes, weights: Path, config_path: Path) -> None:
    """The tensors of ``content`` (the bytes of ``weights``) into ``model`` (eval mode),
    refusing a file that does not fit it."""
    try:
        state = load(content)
    except (SafetensorError, OSError, ValueError) as error:
        raise RunError(f"{weights} is not a readable safetensors file: {error}") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        raise RunError(
            f"{weights} does not match the model {config_path} describes (was "
            f"config.json edited?): missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatches {wrong[:5]}"
        )
    try:  # a dtype other than the model's, NaN or inf, a negative running variance
        check_state_tensors(state, expected, str(weights))
        check_running_variances(state, str(weights))
    except ValueError as error:
        raise RunError(f"{error} (was model.safetensors edited?)") from None
    for key in (k for k in state if k.endswith("normalize.std")):
        if not bool((state[key] > 0).all()):  # the input normalization divides by it
            raise RunError(
                f"{weights}: tensor {key!r} must be > 0 per channel (the input normalization "
                f"divides by it), got {state[key].flatten().tolist()} (was it edited?)"
            )
    model.load_state_dict(state, strict=True)
    model.eval()


def _check_outputs(path: Path, config: dict[str, Any], facts: RunFacts, model: nn.Module) -> None:
    """Concept sets (if any) of as many concepts as every LAP layer has heads (their classes,
    and one class name per output, are checked with the facts)."""
    from torchlap.layers import lap_modules  # (as above)

    concept_sets = facts.concept_sets
    heads = {name: int(getattr(lap, "n_concepts", 1)) for name, lap in lap_modules(model).items()}
    if concept_sets is not None and set(heads.values()) - {concept_sets.n_concepts}:
        raise RunError(
            f"{path}: 'concept_sets' are for {concept_sets.n_concepts} concept(s), but the LAP "
            f"layers have {heads} heads; they must agree (was config.json edited?)"
        )
