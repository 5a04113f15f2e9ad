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

:func:`read_run_facts` reads ``config.json`` once and checks it without building the model
(the classes, channels, size, normalization and concept sets a command checks its data
against); :func:`load_run` builds the model from those facts and ``model.safetensors`` (no
pickle), refusing weights whose SHA-256 differs from the recorded one. Both raise
:class:`RunError` (a ``ValueError``) or :class:`RunFileNotFoundError` (a
``FileNotFoundError``) naming the file.

The parts, one idea each: :mod:`torchlap.runs._folder` (names, errors, ``config.json``),
:mod:`torchlap.runs.integrity` (the SHA-256 record), :mod:`torchlap.runs.facts` (the checked
facts, the run's data), :mod:`torchlap.runs.loading` (the model).
"""

from torchlap.io import (
    atomic_folder,
    atomic_path,
    atomic_write,
    atomic_write_json,
    clean_stale_temps,
    sha256_file,
)
from torchlap.runs._folder import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    RUN_FILES,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    WEIGHTS_FILE,
    RunError,
    RunFileNotFoundError,
    RunFolderError,
    is_run_config,
    read_run_config,
)
from torchlap.runs.facts import RunFacts, read_run_facts, resolve_run_data
from torchlap.runs.integrity import check_integrity, checked_integrity_record, record_integrity
from torchlap.runs.loading import LoadedRun, load_run, pretrained_weights

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
    "RunFacts",
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
    "read_run_facts",
    "record_integrity",
    "resolve_run_data",
    "sha256_file",
]
