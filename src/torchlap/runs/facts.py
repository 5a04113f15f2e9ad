"""What a finished run is, read from its ``config.json`` without building its model:
:func:`read_run_facts` checks every key a command needs before any work (the classes, the
input channels, size and normalization, the concept sets, the recorded lapify calls) and that
the weights file is there. :func:`~torchlap.runs.load_run` builds the model from these facts;
``evaluate``, ``compare``, ``explain`` and ``export`` check their data against them first, so
bad data is refused before a model is built."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlap._checks import is_int, is_number
from torchlap.data import builtin_names
from torchlap.data.transforms import MAX_IMAGE_SIDE
from torchlap.losses import ConceptSets
from torchlap.models.build import check_lapify_calls
from torchlap.runs._folder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    RunError,
    RunFileNotFoundError,
    present_weights,
    read_run_config,
)

__all__ = ["RunFacts", "image_side", "read_run_facts", "resolve_run_data"]

logger = logging.getLogger(__name__)


@dataclass
class RunFacts:
    """A finished run's checked facts (:func:`read_run_facts`): everything but its model.

    ``config`` is ``config.json`` as read (a relative ``train.data`` of an older run resolved,
    see :func:`resolve_run_data`); ``weights`` is its ``model.safetensors`` (present, its
    digest checked when the model is built)."""

    config: dict[str, Any]
    classes: list[str]
    mean: list[float]
    std: list[float]
    image_size: int
    in_channels: int
    concept_sets: ConceptSets | None
    run_dir: Path
    weights: Path


def read_run_facts(run_dir: str | os.PathLike[str]) -> RunFacts:
    """``run_dir``'s ``config.json`` read once and checked, without building the model.

    Raises :class:`RunFileNotFoundError` when the folder is not a run or the run has not
    finished (its weights are written at its end), :class:`RunError` when ``config.json`` is
    from a newer torchlap or a key has the wrong type (see :func:`~torchlap.runs.load_run`,
    which checks the rest against the model). Each message names the file and the key."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = run_dir / CONFIG_FILE
    facts = _checked_facts(path, config)
    _check_lapify_record(path, config["model"])
    weights = present_weights(
        run_dir,
        f"{run_dir / WEIGHTS_FILE} does not exist: the run has not finished (resume it with "
        "`torchlap train ... --resume`)",
    )
    _resolve_legacy_data(run_dir, config)
    return RunFacts(config=config, run_dir=run_dir, weights=weights, **facts)


# ------------------------------------------------------------------------------------------
# config.json's keys, checked when a run is read
_NEEDED_KEYS = ("model", "classes", "mean", "std", "in_channels", "image_size")


def _bad(path: Path, key: str, accepted: str, value: Any) -> RunError:
    return RunError(f"{path}: {key!r} must be {accepted}, got {value!r} (was config.json edited?)")


def _checked_facts(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The keys :func:`load_run` reads, type-checked (before the model is built)."""
    missing = [key for key in _NEEDED_KEYS if key not in config]
    if missing:
        raise RunError(
            f"{path} lacks the key(s) {missing} that every run records (was config.json edited?)"
        )
    if not isinstance(config["model"], dict):
        raise _bad(path, "model", "a dict (the model record torchlap train wrote)", config["model"])
    classes = config["classes"]
    if (
        not isinstance(classes, list)
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise _bad(path, "classes", "a list of distinct class names (non-empty strings)", classes)
    in_channels = config["in_channels"]
    if not is_int(in_channels) or not 1 <= in_channels < 2**63:
        raise _bad(path, "in_channels", "an int >= 1 that fits in 64 bits", in_channels)
    for key in ("mean", "std"):
        values = config[key]
        if (
            not isinstance(values, list)
            or len(values) != in_channels
            or not all(is_number(v) and math.isfinite(v) for v in values)
            or (key == "std" and not all(v > 0 for v in values))
        ):
            each = ", each > 0" if key == "std" else ""
            accepted = f"a list of {in_channels} finite number(s), one per input channel{each}"
            raise _bad(path, key, accepted, values)
    scorers = config.get("discriminative_scorers", False)
    if not isinstance(scorers, bool):
        raise _bad(path, "discriminative_scorers", "true or false", scorers)
    if "train" in config and not isinstance(config["train"], dict):  # evaluate, explain, export
        raise _bad(path, "train", "a dict (the options torchlap train ran with)", config["train"])
    concept_sets = _concept_sets(path, config.get("concept_sets"), config.get("lap_layers"))
    _check_classes(path, config["model"].get("num_classes"), classes, concept_sets)
    recorded = config["model"].get("in_channels")
    if is_int(recorded) and recorded != in_channels:  # (read from config.json alone)
        raise RunError(
            f"{path}: 'model.in_channels' is {recorded} but 'in_channels' is {in_channels}; "
            "they must agree (was config.json edited?)"
        )
    return {
        "classes": list(classes),
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "image_size": _image_size(path, config["image_size"]),
        "in_channels": in_channels,
        "concept_sets": concept_sets,
    }


def _check_classes(
    path: Path, outputs: Any, classes: list[str], concept_sets: ConceptSets | None
) -> None:
    """One class name per output of the recorded model (``model.num_classes``), and concept
    sets (if any) of as many classes: checked from config.json alone, before the data is read
    against the classes (an edited ``classes`` is named as such, not as data of other
    classes)."""
    if is_int(outputs) and outputs != len(classes):
        raise RunError(
            f"{path}: 'classes' names {len(classes)} class(es) ({classes}) but the model has "
            f"{outputs} outputs (model.num_classes); give one name per output (was "
            "config.json edited?)"
        )
    if concept_sets is not None and concept_sets.num_classes != len(classes):
        raise RunError(
            f"{path}: 'concept_sets' maps {concept_sets.num_classes} classes but 'classes' "
            f"names {len(classes)} ({classes}); they must agree (was config.json edited?)"
        )


def _check_lapify_record(path: Path, record: dict[str, Any]) -> None:
    """``model.lapify`` (the recorded lapify calls, if any): a list of dicts with the keys
    :data:`torchlap.models.build.LAPIFY_KEYS`, checked before the model is built."""
    calls = record.get("lapify")
    if calls is None:
        return
    try:
        check_lapify_calls(calls, "model.lapify")
    except (TypeError, ValueError) as error:
        raise RunError(f"{path}: {error} (was config.json edited?)") from None


def image_side(value: object) -> object:
    """A recorded ``image_size`` as the side its images are read at: a square pair ``[n, n]``
    of ints is ``n`` (``[7, 7.0]`` is no such pair); any other value is returned as it is,
    for the caller to check. The one reading of the pair: run facts, loading, provenance."""
    square = isinstance(value, list) and len(value) == 2 and value[0] == value[1]
    return value[0] if square and all(map(is_int, value)) else value


def _image_size(path: Path, value: Any) -> int:
    """``image_size``: an int from 1 to ``MAX_IMAGE_SIDE`` (8192, what training accepts), or a
    square pair ``[n, n]`` (read as ``n``)."""
    size = image_side(value)
    if not is_int(size) or not 1 <= size <= MAX_IMAGE_SIDE:
        accepted = f"an int from 1 to {MAX_IMAGE_SIDE} (or a square pair [n, n])"
        raise _bad(path, "image_size", accepted, value)
    return size


def _concept_sets(path: Path, value: Any, lap_layers: Any) -> ConceptSets | None:
    """``concept_sets``: what ``ConceptSets.to_dict()`` writes; ``None`` only in a run without
    LAP layers (train records a LAP run's sets, and its LAP maps are read by them)."""
    if value is None and not lap_layers:
        return None
    try:
        return ConceptSets.from_dict(value)
    except (TypeError, ValueError) as error:
        null = f", in a run with LAP layers ({lap_layers}), " if lap_layers else " null or "
        raise RunError(
            f"{path}: 'concept_sets' must be{null}what ConceptSets.to_dict() writes "
            f"({error}) (was config.json edited?)"
        ) from None


# ------------------------------------------------------------------------------------------
# the data a run was trained on
def _training_folder(run_dir: Path, out: Any) -> Path | None:
    """The folder ``torchlap train`` ran in, when the recorded ``--out`` (relative) is the
    end of ``run_dir``'s path; else ``None``."""
    if not isinstance(out, str) or not out or Path(out).is_absolute():
        return None
    parts = Path(out).parts
    if ".." in parts:
        return None
    resolved = run_dir.resolve()
    if len(resolved.parts) <= len(parts) or resolved.parts[-len(parts) :] != parts:
        return None
    return resolved.parents[len(parts) - 1]


def resolve_run_data(
    run_dir: str | os.PathLike[str],
    config: dict[str, Any],
    advice: str = "pass the data with --data",
) -> str:
    """The data ``config.json``'s ``train.data`` names: a built-in name or an absolute path as
    recorded; a relative folder path (runs saved before torchlap recorded absolute paths)
    resolved against the current directory, else the folder training ran in (found from the
    recorded ``--out``), else the run folder's parent. Raises :class:`RunFileNotFoundError`
    naming every place tried when none holds it, ending with ``advice`` (what the calling
    command accepts instead; the default is evaluate's and compare's)."""
    data = (config.get("train") or {}).get("data")
    if not isinstance(data, str) or not data:
        raise RunError(f"{Path(run_dir) / CONFIG_FILE}: 'train.data' names no dataset: {advice}")
    if data in builtin_names() or Path(data).is_absolute():
        return data
    run_dir = Path(run_dir)
    places = {"the current directory": Path.cwd()}
    trained_in = _training_folder(run_dir, config["train"].get("out"))
    if trained_in is not None:
        places["the folder training ran in"] = trained_in
    places["the run folder's parent"] = run_dir.resolve().parent
    for base in places.values():
        if (base / data).exists():
            return str((base / data).resolve())
    tried = "; ".join(f"{base / data} ({where})" for where, base in places.items())
    raise RunFileNotFoundError(
        f"{run_dir / CONFIG_FILE} records the data folder {data!r} as a relative path, and no "
        f"folder of that name exists at {tried}: {advice}"
    )


def _resolve_legacy_data(run_dir: Path, config: dict[str, Any]) -> None:
    """``config["train"]["data"]`` as an absolute path for a run saved with a relative one (a
    warning naming the places tried when none holds it: only commands reading the run's own
    data need it)."""
    train = config.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("data"), str):
        return
    try:
        resolved = resolve_run_data(
            run_dir, config, "the commands that read the run's data will name what to do"
        )
    except RunError as error:
        logger.warning("%s", error)
        return
    if resolved != train["data"]:
        logger.info("%s: the run's data %r is %s", run_dir, train["data"], resolved)
        train["data"] = resolved
