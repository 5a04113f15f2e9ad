"""The run folder: its file names, its format version, its integrity, and the one atomic writer.

A run folder (written by ``torchlap train``)::

    RUN_DIR/config.json         what the run is (architecture, classes, normalization, losses,
                                the full TrainConfig) and ``integrity``: the SHA-256 of
                                model.safetensors and of every resume checkpoint
    RUN_DIR/metrics.json        per-epoch train/val metrics, final test metrics
    RUN_DIR/model.safetensors   the weights of the NormalizedClassifier (written at the end)
    RUN_DIR/checkpoints/phaseN/last.ckpt   Lightning checkpoints, for --resume only

Every file torchlap writes goes through :func:`torchlap.io.atomic_write` (re-exported here):
a temporary file next to the target, fsync, the usual mode, then a rename.

:func:`load_run` reads ``config.json`` + ``model.safetensors`` (no pickle), refuses a
``format_version`` newer than this code and weights whose SHA-256 differs from the recorded one,
raising :class:`RunError` (a ``ValueError``) or :class:`RunFileNotFoundError` (a
``FileNotFoundError``) naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from torchlap._checks import is_int, is_number
from torchlap.data import builtin_names
from torchlap.data.transforms import MAX_IMAGE_SIDE
from torchlap.io import (
    as_path,
    atomic_folder,
    atomic_path,
    atomic_write,
    atomic_write_json,
    clean_stale_temps,
    not_a_file,
    sha256_file,
)
from torchlap.losses import ConceptSets
from torchlap.models.build import check_lapify_calls
from torchlap.models.published import check_running_variances, check_state_tensors
from torchlap.models.recipes import rebuild_model

__all__ = [
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "LAST_CHECKPOINT",
    "METRICS_FILE",
    "RUN_FILES",
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "WEIGHTS_FILE",
    "LoadedRun",
    "RunError",
    "RunFileNotFoundError",
    "RunFolderError",
    "atomic_folder",
    "atomic_path",
    "atomic_write",
    "atomic_write_json",
    "check_integrity",
    "checked_integrity_record",
    "clean_stale_temps",
    "is_run_config",
    "load_run",
    "pretrained_weights",
    "read_run_config",
    "record_integrity",
    "resolve_run_data",
    "sha256_file",
]

logger = logging.getLogger(__name__)

RUN_FORMAT = "torchlap-run"
RUN_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, CHECKPOINTS_DIR)


class RunError(ValueError):
    """A run folder that cannot be used: not a run, unfinished, damaged or from newer code."""


class RunFolderError(RunError):
    """The output folder cannot take this run (it holds another run, or nothing to resume)."""


class RunFileNotFoundError(RunError, FileNotFoundError):
    """A file of a run folder is missing (not a run folder, or the run has not finished);
    both a :class:`RunError` and a ``FileNotFoundError``."""


# ------------------------------------------------------------------------------------------
# integrity
def _relative(run_dir: Path, path: Path) -> str:
    """``path``'s name in the integrity record: relative to ``run_dir``, symlinks followed;
    :class:`RunError` when it leads out of the run folder."""
    resolved, folder = Path(path).resolve(), Path(run_dir).resolve()
    if not resolved.is_relative_to(folder):
        raise RunError(
            f"{path} must be a file inside the run folder {run_dir}, but it leads to "
            f"{resolved} (a symlink leading out of the run folder is refused): copy the file "
            "into the run folder"
        )
    return resolved.relative_to(folder).as_posix()


#: what ``config.json``'s ``integrity`` holds (in the messages refusing another one)
_INTEGRITY_FORMAT = (
    'a dict of file name (relative to the run folder) -> {"sha256": hex digest, "previous": '
    "hex digest or null}"
)


def checked_integrity_record(config_path: Path, record: Any) -> dict[str, dict[str, Any]]:
    """``config.json``'s ``integrity`` (``None``: an empty record), checked to be
    :data:`_INTEGRITY_FORMAT`; :class:`RunError` naming the bad entry otherwise."""
    if record is None:
        return {}
    if not isinstance(record, dict):
        raise RunError(
            f"{config_path}: 'integrity' must be {_INTEGRITY_FORMAT}, got {record!r} (was "
            "config.json edited?)"
        )
    for name, entry in record.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("previous"), (str, type(None)))
        ):
            raise RunError(
                f"{config_path}: 'integrity' entry {name!r} is {entry!r}; 'integrity' must be "
                f"{_INTEGRITY_FORMAT} (was config.json edited?)"
            )
    return record


def record_integrity(
    run_dir: str | os.PathLike[str], path: str | os.PathLike[str], digest: str | None = None
) -> None:
    """Record ``path``'s SHA-256 in ``run_dir/config.json``'s ``integrity`` (keeping the
    previous digest as ``previous``, so a process killed between recording and renaming the
    new file still finds the old file valid)."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    config = read_run_config(run_dir)
    digest = digest or sha256_file(path)
    key = _relative(run_dir, Path(path))
    integrity = dict(checked_integrity_record(config_path, config.get("integrity")))
    old = integrity.get(key) or {}
    integrity[key] = {"sha256": digest, "previous": old.get("sha256")}
    config["integrity"] = integrity
    atomic_write_json(config_path, config)


def check_integrity(run_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Raise :class:`RunError` naming ``path`` when its SHA-256 is not the one ``config.json``
    recorded. Runs written before integrity was recorded (no ``integrity`` key) pass.

    ``integrity`` must be a dict of file name (relative to the run folder) -> ``{"sha256":
    str, "previous": str or null}`` (or null), and ``path`` a file inside the run folder (not
    a symlink leading out of it); :class:`RunError` otherwise."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if "integrity" not in config:
        return
    record = checked_integrity_record(run_dir / CONFIG_FILE, config["integrity"])
    key = _relative(run_dir, Path(path))
    entry = record.get(key)
    if entry is None:
        raise RunError(
            f"{path}: config.json records no SHA-256 for this file, so the run did not finish "
            "writing it; resume the run with --resume (or train it again)"
        )
    actual = sha256_file(path)
    if actual not in {entry.get("sha256"), entry.get("previous")} - {None}:
        raise RunError(
            f"{path} is damaged or was changed: its SHA-256 is {actual[:16]}..., config.json "
            f"records {str(entry.get('sha256'))[:16]}...; restore the file or train the run again"
        )


# ------------------------------------------------------------------------------------------
# reading a run
def is_run_config(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``config.json`` written by torchlap train."""
    try:
        data = json.loads(as_path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == RUN_FORMAT


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run_dir/config.json``, checked to be a torchlap run of a format this code reads."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if run_dir.is_file():
        raise RunError(
            f"{run_dir} is a file; a run is the folder `torchlap train` wrote (pass "
            f"{run_dir.parent if run_dir.name == CONFIG_FILE else 'its folder'})"
        )
    if not run_dir.is_dir():
        raise RunFileNotFoundError(
            f"run folder {run_dir} does not exist; pass a folder written by `torchlap train`"
        )
    if not path.is_file():
        if odd := not_a_file(path):  # a folder, a dangling link, a link loop: not "missing"
            raise RunError(f"{path} is {odd}; torchlap train writes it as a file: restore it")
        raise RunFileNotFoundError(
            f"{run_dir} is not a torchlap run folder: no {CONFIG_FILE} in it; pass a folder "
            "written by `torchlap train`"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON ({error}); it is damaged") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise RunError(
            f"{path} was not written by torchlap train (its format is not {RUN_FORMAT!r}); "
            "pass a folder written by `torchlap train`"
        )
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunError(f"{path}: format_version is {version!r}, not an integer")
    if version > RUN_FORMAT_VERSION:
        raise RunError(
            f"{path} has format_version {version}, newer than this torchlap reads "
            f"({RUN_FORMAT_VERSION}); upgrade torchlap to load it"
        )
    if version < 1:
        raise RunError(
            f"{path}: format_version is {version}, which no torchlap wrote (known: "
            f"{', '.join(map(str, range(1, RUN_FORMAT_VERSION + 1)))}); was config.json edited?"
        )
    return data


def pretrained_weights(pretrained: str | os.PathLike[str]) -> str:
    """The file a ``--pretrained`` value loads: a run folder's weights file, else the value
    itself (a torchvision weights name or a ``.safetensors`` file, which the model builder
    checks).

    :func:`torchlap.models.build_model` takes files only (``models`` does not know a run's
    layout): pass it ``pretrained_weights(run_folder)``. Raises :class:`RunFileNotFoundError`
    for a folder without weights, :class:`RunError` for a run's weights whose SHA-256 is not
    the one its ``config.json`` records.
    """
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a str or a path, got {pretrained!r}")
    path = Path(pretrained)
    if not path.is_dir():
        return os.fspath(pretrained)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        if odd := not_a_file(weights):
            raise RunError(f"{weights} is {odd}; torchlap train writes a file: restore it")
        raise RunFileNotFoundError(
            f"pretrained folder {path} holds no {WEIGHTS_FILE}: pass a .safetensors file "
            "or a finished torchlap run folder"
        )
    if is_run_config(path / CONFIG_FILE):  # a torchlap run's: the weights it recorded
        check_integrity(path, weights)
    return str(weights)


@dataclass
class LoadedRun:
    """A trained run read back by :func:`load_run`.

    ``model`` takes images in [0, 1] (it normalizes them itself) and is in eval mode.
    """

    model: nn.Module
    config: dict[str, Any]
    classes: list[str]
    mean: list[float]
    std: list[float]
    image_size: int
    in_channels: int
    concept_sets: ConceptSets | None
    run_dir: Path


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
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
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = run_dir / CONFIG_FILE
    facts = _checked_facts(path, config)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        if odd := not_a_file(weights):
            raise RunError(f"{weights} is {odd}; torchlap train writes a file: restore it")
        raise RunFileNotFoundError(
            f"{weights} does not exist: the run has not finished (resume it with "
            "`torchlap train ... --resume`)"
        )
    check_integrity(run_dir, weights)
    _check_lapify_record(path, config["model"])
    try:
        model = rebuild_model(config)
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"{path} does not describe a model: {error}") from None
    _load_weights(model, weights, path)  # (a model.num_classes edited: the weights differ)
    _check_agrees_with_model(path, config, model, facts["image_size"])
    _check_outputs(path, config, facts, model)
    _resolve_legacy_data(run_dir, config)
    return LoadedRun(model=model, config=config, run_dir=run_dir, **facts)


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
    trained = (config.get("train") or {}).get("image_size")
    if isinstance(trained, list) and len(set(trained)) == 1:
        trained = trained[0]  # a square pair, as image_size may be written
    if trained is not None and trained != image_size:
        raise RunError(
            f"{path}: 'image_size' is {config['image_size']} but the run trained at {trained} "
            "(train.image_size; was config.json edited?)"
        )


def _load_weights(model: nn.Module, weights: Path, config_path: Path) -> None:
    """``weights`` into ``model`` (eval mode), refusing a file that does not fit it."""
    try:
        state = load_file(str(weights))
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


# ------------------------------------------------------------------------------------------
# config.json's keys, checked when a run is loaded
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
    if not is_int(in_channels) or in_channels < 1:
        raise _bad(path, "in_channels", "an int >= 1", in_channels)
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
    return {
        "classes": list(classes),
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "image_size": _image_size(path, config["image_size"]),
        "in_channels": in_channels,
        "concept_sets": _concept_sets(path, config.get("concept_sets"), config.get("lap_layers")),
    }


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


def _image_size(path: Path, value: Any) -> int:
    """``image_size``: an int from 1 to ``MAX_IMAGE_SIDE`` (8192, what training accepts), or a
    square pair ``[n, n]`` (read as ``n``)."""
    size = value
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        size = value[0]  # the side n, as explain, export and evaluate read it
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


def _check_outputs(
    path: Path, config: dict[str, Any], facts: dict[str, Any], model: nn.Module
) -> None:
    """One class name per output of the model ``config["model"]`` builds, and concept sets
    (if any) of as many classes, and of as many concepts as every LAP layer has heads."""
    from torchlap.layers import lap_modules  # (as above)

    classes = facts["classes"]
    outputs = config["model"].get("num_classes")
    if is_int(outputs) and outputs != len(classes):
        raise RunError(
            f"{path}: 'classes' names {len(classes)} class(es) ({classes}) but the model has "
            f"{outputs} outputs (model.num_classes); give one name per output (was "
            "config.json edited?)"
        )
    concept_sets = facts["concept_sets"]
    if concept_sets is not None and concept_sets.num_classes != len(classes):
        raise RunError(
            f"{path}: 'concept_sets' maps {concept_sets.num_classes} classes but 'classes' "
            f"names {len(classes)} ({classes}); they must agree (was config.json edited?)"
        )
    heads = {name: int(getattr(lap, "n_concepts", 1)) for name, lap in lap_modules(model).items()}
    if concept_sets is not None and set(heads.values()) - {concept_sets.n_concepts}:
        raise RunError(
            f"{path}: 'concept_sets' are for {concept_sets.n_concepts} concept(s), but the LAP "
            f"layers have {heads} heads; they must agree (was config.json edited?)"
        )


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
