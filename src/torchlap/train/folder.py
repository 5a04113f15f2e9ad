"""The run folder as training sees it: may this run be written there, and writing its weights.

The folder's format (file names, integrity record, atomic writer) is :mod:`torchlap.runs`'s;
this module decides whether ``--out`` may take a run (new, resumed or overwritten) and saves
the final weights.

``--overwrite`` removes the old run's files, each named in the log: ``config.json``,
``metrics.json``, ``model.safetensors`` and the checkpoints its integrity record lists whose
SHA-256 matches the record (anything else under ``checkpoints/`` is kept, and named in the
log). A run from before torchlap recorded digests (no record, or an empty one) or those of its
checkpoints (a record without any) cannot tell its checkpoints apart: there every
``checkpoints/phase<N>/last.ckpt`` is removed, torchlap's own naming, and nothing else. A
checkpoint of that naming the record does not vouch for (not listed, another SHA-256, or a
damaged record: not a dict of digests) is refused before anything is removed: kept, the new
run would replace it, and a ``--resume`` of the new run (whose record starts empty) would trust
it on the archive's checks alone. The old run's log ``train.log`` goes with it (a file: a link
or a folder of that name is refused), and ``config.json`` goes last, so that a removal failing
half-way leaves a folder ``--overwrite`` still recognises as torchlap's. The ``torchlap
train`` log file waits for the new run's ``config.json`` (:func:`run_config_written`), so it
never opens the old run's log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save

from torchlap.io import check_folder_path, is_stale_temp, not_a_file
from torchlap.logs import process_rank
from torchlap.runs import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    RUN_FILES,
    WEIGHTS_FILE,
    RunError,
    RunFolderError,
    atomic_write,
    check_integrity,
    checked_integrity_record,
    clean_stale_temps,
    is_run_config,
    read_run_config,
    record_integrity,
    sha256_file,
)
from torchlap.train.config import TrainConfig

__all__ = [
    "LOG_FILE",
    "check_finished_run",
    "integrity_record",
    "is_global_zero",
    "prepare_folder",
    "run_config_written",
    "save_weights",
]

logger = logging.getLogger(__name__)
# the checkpoint folders torchlap writes, one per training phase (phase1, phase2, ...)
_PHASE = re.compile(r"phase\d+")
# the log of the run that `torchlap train` keeps in the run folder (torchlap.logs.log_file)
LOG_FILE = "train.log"
# the run folders into which the fit running in this process has written its config.json
_WRITTEN: set[Path] = set()


def run_config_written(out: Path | str) -> bool:
    """Whether the fit running in this process has written its ``config.json`` into ``out``:
    from then on the folder holds the new run (under ``--overwrite``, the old run is gone)."""
    return Path(out).resolve() in _WRITTEN


def mark_run_config(out: Path | str | None) -> None:
    """Record that this process's fit wrote ``out``'s config.json; ``None``: forget them all
    (a fit starts: a mark is kept after it returns or raises, as its log may open then)."""
    if out is None:
        _WRITTEN.clear()
    else:
        _WRITTEN.add(Path(out).resolve())


def is_global_zero() -> bool:
    """Rank zero before any Trainer exists (by the launchers' variables, read as the logs read
    them: :func:`torchlap.logs.process_rank`)."""
    return process_rank() == 0


def integrity_record(out: Path | str) -> dict:
    """The SHA-256 record of the run in ``out`` (``config.json``'s ``integrity``, a copy); an
    empty dict for a run without one, or with an empty one: a run from before torchlap
    recorded digests, whose files are not checked (:func:`torchlap.runs.check_integrity`).
    :class:`~torchlap.runs.RunError` naming ``config.json`` for a damaged record (not a dict
    of digests): it is not "no record" (read so, ``--overwrite`` removed every checkpoint as a
    pre-record run's, and ``--resume`` wrote the run's config.json without any record)."""
    try:
        config = read_run_config(out)
    except (OSError, ValueError):
        return {}
    return dict(checked_integrity_record(Path(out) / CONFIG_FILE, config.get("integrity")))


def save_weights(
    path: Path, state: dict[str, torch.Tensor], meta: dict, run_dir: Path | None = None
) -> str:
    """Write the weights atomically; returns their SHA-256. With ``run_dir``, the digest is
    recorded in its config.json first (a kill in between leaves the old weights valid)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    data = _in_fixed_order(save(tensors, metadata={k: str(v) for k, v in meta.items()}))
    digest = hashlib.sha256(data).hexdigest()
    if run_dir is not None:
        record_integrity(run_dir, path, digest)
    atomic_write(path, data)
    return digest


def _in_fixed_order(data: bytes) -> bytes:
    """safetensors bytes with the header's entries in a fixed order: safetensors writes the
    metadata from a hash map whose order changes from process to process, so two identical runs
    wrote different bytes (and SHA-256s). The metadata's keys are sorted, the tensors' entries
    follow their data; the data, the 8-byte alignment and what a reader reads are unchanged."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    meta = header.pop("__metadata__", None)
    entries = dict(sorted(header.items(), key=lambda item: item[1]["data_offsets"]))
    if meta is not None:
        entries = {"__metadata__": dict(sorted(meta.items())), **entries}
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header with spaces to 8 bytes
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def prepare_folder(out: Path, config: TrainConfig, apply: bool) -> None:
    """Refuse a folder holding another run (unless overwrite); with ``apply``, clear the old
    run's files for an overwrite (other files in the folder are left alone)."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} exists and is not a folder; pass a folder path")
    try:
        check_folder_path(out)  # mkdir said only "[Errno 20] Not a directory"
    except ValueError as error:
        raise RunFolderError(str(error)) from None
    config_path = out / CONFIG_FILE
    ours = config_path.is_file() and is_run_config(config_path)
    if config_path.is_file() and not ours:
        raise RunFolderError(
            f"--out {out} holds a {CONFIG_FILE} that torchlap train did not write; torchlap "
            "never replaces files it did not write: choose another (empty or new) folder"
        )
    if config.resume:
        _check_resume(out, config, apply)
        return
    if not out.exists():
        return
    if apply:
        clean_stale_temps(out)
    # a link to nothing too (exists() is False for it): the run would replace the user's link
    present = [n for n in RUN_FILES if (out / n).exists() or (out / n).is_symlink()]
    # (a killed torchlap's temp files are removed when applying: the dry check skips them too)
    others = [p.name for p in out.iterdir() if p.name not in RUN_FILES and not is_stale_temp(p)]
    _refuse_odd_kinds(out, present)
    _refuse_checkpoints_leading_out(out)
    if present and not ours:
        # metrics.json, model.safetensors or checkpoints/ without torchlap's config.json:
        # not a run torchlap can vouch for, so not torchlap's to replace
        raise RunFolderError(
            f"--out {out} holds {sorted(present)} but no {CONFIG_FILE} written by torchlap "
            "train, so torchlap did not write them and will not replace them; choose another "
            "(empty or new) folder"
        )
    if config.overwrite and (ours or not others):
        _refuse_odd_log(out)
        record = _vouching_record(out) if ours else {}
        _clear_run(out, present, record, apply)
    elif ours:
        _check_same_run(out, config, apply)
    elif present or others:
        hint = " (--overwrite replaces a run torchlap wrote, not a folder of other files)"
        raise RunFolderError(
            f"--out {out} is not empty and holds no torchlap run (found "
            f"{sorted(present + others)[:5]}); choose an empty or new folder"
            + (hint if config.overwrite else "")
        )


def _refuse_odd_kinds(out: Path, present: list[str]) -> None:
    """A run's files are files and its ``checkpoints`` a folder: an entry of the other kind
    is not torchlap's, and ``--overwrite`` would have deleted it (a whole folder) too."""
    odd = [n for n in present if (out / n).is_dir() != (n == CHECKPOINTS_DIR)]
    if odd:
        kinds = ", ".join(f"{n} is a {'folder' if (out / n).is_dir() else 'file'}" for n in odd)
        raise RunFolderError(
            f"--out {out}: {kinds} (torchlap train writes {CONFIG_FILE}, {METRICS_FILE} and "
            f"{WEIGHTS_FILE} as files, {CHECKPOINTS_DIR} as a folder), so torchlap did not "
            "write it and will not replace it, --overwrite or not: move it, or choose another "
            "folder"
        )


def _refuse_odd_log(out: Path) -> None:
    """``--overwrite`` removes the old run's ``train.log``, a file torchlap wrote: a link or a
    folder of that name is not, and is refused before anything is removed."""
    log = out / LOG_FILE
    if log.is_symlink() or (log.exists() and not log.is_file()):
        kind = "a link" if log.is_symlink() else "not a file"
        raise RunFolderError(
            f"--out {out}: {LOG_FILE} is {kind}; torchlap train writes the run's log there as a "
            "file and --overwrite removes it with the old run, so torchlap did not write this "
            "one and will not remove it: move it, or choose another folder"
        )


def _refuse_checkpoints_leading_out(out: Path) -> None:
    """``checkpoints`` a link to a folder outside ``out``: a run's checkpoints are recorded by
    their path inside the run folder, and one leading out is refused when the first is
    recorded (after an epoch; under ``--overwrite`` after the old run was deleted)."""
    link = out / CHECKPOINTS_DIR
    if link.is_symlink() and not link.resolve().is_relative_to(out.resolve()):
        raise RunFolderError(
            f"--out {out}: {CHECKPOINTS_DIR} is a link to {link.resolve()}, outside the run "
            "folder; torchlap keeps a run's checkpoints inside its folder (their SHA-256 is "
            "recorded by their path there): remove the link, or choose another folder"
        )


def _stored_identity(out: Path) -> dict:
    """The recorded run's identity (a relative data folder of an older run resolved as a new
    run records it, so that resuming it from the same directory compares equal).
    :class:`RunFolderError` naming ``config.json`` when its ``train`` record (the options the
    run was trained with: a dict that :meth:`TrainConfig.from_dict` reads) is missing or
    damaged."""
    path = out / CONFIG_FILE
    config = read_run_config(out)
    recorded = config.get("train")
    if not isinstance(recorded, dict):
        got = f"got {recorded!r}" if "train" in config else "it has none"
        raise RunFolderError(
            f"{path}: 'train' must be a dict (the options torchlap train ran with), {got} "
            "(was config.json edited?); pass --overwrite to replace that run or choose another "
            "folder"
        )
    try:
        return TrainConfig.from_dict(recorded).with_resolved_data().identity()
    except (TypeError, ValueError, KeyError) as error:
        raise RunFolderError(
            f"{path}: 'train' is not a record torchlap train wrote ({error}) (was config.json "
            "edited?); pass --overwrite to replace that run or choose another folder"
        ) from None


def check_finished_run(out: Path, config: TrainConfig) -> None:
    """A finished run in ``out`` that a caller reuses instead of training ``config`` (the
    demo, resumed): it must be that run, and its weights intact. :class:`RunFolderError`
    naming the differing settings, :class:`RunError` naming a damaged ``config.json`` or
    weights (their SHA-256 differs from the recorded one); nothing is written."""
    old, new = _stored_identity(out), config.with_resolved_data().identity()
    if old != new:
        diff = sorted(k for k in new if old.get(k) != new.get(k))
        raise RunFolderError(
            f"{out} holds a finished run made with other settings (differing: {diff}), which "
            "this run would reuse: pass --overwrite to train it again, or another --out"
        )
    check_integrity(out, out / WEIGHTS_FILE)


def _check_resume(out: Path, config: TrainConfig, apply: bool) -> None:
    """``--resume``: the folder holds this run; its latest checkpoint is intact."""
    if not (out / CONFIG_FILE).is_file():
        raise RunFolderError(f"--resume: {out} holds no run (no config.json) to resume")
    old = _stored_identity(out)
    new = config.identity()
    if old != new:
        diff = sorted(k for k in new if old.get(k) != new.get(k))
        hint = ""
        if "balanced_batches" in diff and not old["balanced_batches"]:
            hint = " (it trains with random batches: add --no-balanced-batches)"
        if "freeze_features" in diff:
            held = bool(old["freeze_features"])
            hint += (f" (its feature extractor is {'held fixed' if held else 'trained'}: add "
                     f"--freeze-features {str(held).lower()})")  # fmt: skip
        raise RunFolderError(
            f"--resume: the run in {out} was made with other settings (differing: {diff}); "
            f"resume it with its own settings{hint}"
        )
    if apply:
        clean_stale_temps(out)
    # a checkpoint's name taken by a folder or a broken link: resuming would skip it and
    # start over (then fail to save there after the first epoch)
    for phase in sorted((out / CHECKPOINTS_DIR).glob("phase*")):
        entry = phase / LAST_CHECKPOINT
        if _PHASE.fullmatch(phase.name) and phase.is_dir() and (odd := not_a_file(entry)):
            raise RunFolderError(
                f"--resume: {entry} is {odd}; torchlap writes its checkpoints as files: remove "
                "it to resume from the phase before, or train the run again with --overwrite"
            )
    # a damaged checkpoint is named now, before anything is written or loaded: by its SHA-256,
    # or, in a run from before torchlap recorded digests (no record or an empty one), by the
    # archive's own checks
    checkpoints = sorted(
        (c for c in (out / CHECKPOINTS_DIR).glob(f"phase*/{LAST_CHECKPOINT}")
         if _PHASE.fullmatch(c.parent.name)),
        key=lambda p: int(p.parent.name[5:]),
    )  # fmt: skip
    # a damaged record (not a dict of digests) is not "no record": refused even without a
    # checkpoint (the resumed run kept no record, then trusted every file of the folder)
    recorded = bool(integrity_record(out))
    for checkpoint in checkpoints[-1:]:
        if recorded:
            check_integrity(out, checkpoint)
        else:
            _check_whole_archive(checkpoint)


def _check_whole_archive(checkpoint: Path) -> None:
    """A checkpoint of a run without a digest record: PyTorch writes checkpoints as zip
    archives, so a truncated or overwritten one fails zip's own checks (its directory, every
    member's CRC-32), read without unpickling anything."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        bad = f"{type(error).__name__}: {error}"
    if bad is not None:
        raise RunFolderError(
            f"--resume: {checkpoint} is damaged (not a whole checkpoint archive: {bad}); the run "
            "records no SHA-256 to restore it by: remove the file to resume from the phase "
            "before, or train the run again with --overwrite"
        )


def _phase_checkpoints(folder: Path) -> list[Path]:
    """``folder``'s entries at the names torchlap writes its checkpoints (``phase<N>/
    last.ckpt``), whatever they are."""
    phases = [p for p in folder.glob("phase*") if p.is_dir() and _PHASE.fullmatch(p.name)]
    found = [p / LAST_CHECKPOINT for p in phases]
    return sorted(c for c in found if c.exists() or c.is_symlink())


def _vouching_record(out: Path) -> dict:
    """The old run's integrity record for ``--overwrite``; :class:`RunFolderError` (before
    anything is removed) when a checkpoint at torchlap's naming is one it does not vouch for,
    or when the record is damaged and there is any, or when ``model.safetensors`` is not the
    file whose SHA-256 it records: torchlap cannot tell it wrote them."""
    try:
        record, damaged = integrity_record(out), None
    except RunError as error:
        record, damaged = None, str(error)
    folder = out / CHECKPOINTS_DIR
    found = _phase_checkpoints(folder) if folder.is_dir() else []
    alien = [
        c for c in found
        if record is None or not (c.is_file() and _written_by_the_run(c, folder, record))
    ]  # fmt: skip
    weights = out / WEIGHTS_FILE
    if record and weights.is_file() and not _recorded_digest(weights, record.get(WEIGHTS_FILE)):
        alien.insert(0, weights)  # changed since the run wrote it: someone else's weights now
    if alien:
        why = damaged or (
            "the run's integrity record does not vouch for them: not listed, or another SHA-256"
        )
        raise RunFolderError(
            f"--overwrite: {', '.join(map(str, alien))}: torchlap cannot tell it wrote "
            f"{'it' if len(alien) == 1 else 'them'} ({why}), so it will not delete "
            f"{'it' if len(alien) == 1 else 'them'}; left where the new run writes and resumes "
            "its checkpoints, the new run would replace or trust a file it did not write: move "
            "it out of the run folder, or choose another folder"
        )
    return record or {}


def _clear_run(out: Path, present: list[str], record: dict, apply: bool) -> None:
    """``--overwrite``: remove the old run's files (with ``apply``), each named in the log: its
    ``train.log`` too, and ``config.json`` last (a failure half-way leaves a run folder
    ``--overwrite`` can clear). ``record``: the integrity record, every checkpoint at
    torchlap's naming vouched for by it (:func:`_vouching_record`)."""
    if not apply:
        return
    if (out / LOG_FILE).is_file():
        present = [*present, LOG_FILE]
    folder = out / CHECKPOINTS_DIR
    removed = [n for n in sorted(present) if n != CHECKPOINTS_DIR]
    if CHECKPOINTS_DIR in present and folder.is_dir():
        removed += [c.relative_to(out).as_posix() for c in _phase_checkpoints(folder)]
    if removed:
        logger.warning("--overwrite: replacing the run in %s (removing %s)", out,
                       ", ".join(removed))  # fmt: skip
    evaluations = sorted(p.parent.name + "/" for p in out.glob("*/results.json") if p.is_file())
    if evaluations:  # not torchlap train's to remove, but no longer of this run's model
        logger.warning(
            "--overwrite: left %s in place: evaluations of the replaced run's model, not of the "
            "new one; evaluate the new run again (torchlap evaluate --force) or remove them",
            ", ".join(evaluations),
        )
    for name in sorted(present, key=lambda n: n == CONFIG_FILE):
        target = out / name
        if name == CHECKPOINTS_DIR and target.is_dir():
            kept = _clear_checkpoints(target, record)
            if kept:
                logger.warning(
                    "--overwrite: left %s in place (torchlap did not write them)",
                    ", ".join(str(p) for p in kept),
                )
        else:  # a file: a folder of a run file's name was refused (_refuse_odd_kinds)
            target.unlink()


def _clear_checkpoints(folder: Path, record: dict | None = None) -> list[Path]:
    """Remove the checkpoints torchlap wrote (``phase<N>/last.ckpt``) from ``folder`` and the
    folders left empty; return what else is there, which is not torchlap's to delete.

    ``record``: the run's integrity record (keys relative to the run folder, ``folder``'s
    parent): a checkpoint it does not list, or whose SHA-256 is neither its recorded digest
    nor the previous one, is kept. Empty, ``None`` or without checkpoints (a run from before the
    record, or before it listed checkpoints): every ``phase<N>/last.ckpt`` is removed."""
    # only torchlap's own phase folders (phase1, phase2, ...): a user's "phase1-keep/" is not
    phases = [p for p in folder.glob("phase*") if p.is_dir() and _PHASE.fullmatch(p.name)]
    for phase in phases:
        checkpoint = phase / LAST_CHECKPOINT
        if checkpoint.is_file() and _written_by_the_run(checkpoint, folder, record):
            checkpoint.unlink()
        if not any(phase.iterdir()):
            phase.rmdir()
    if not any(folder.iterdir()):
        if not folder.is_symlink():  # a link (checkpoints kept on another disk) is the user's:
            folder.rmdir()  # it stays, and rmdir refused it after the old run was deleted
        return []
    return sorted(path for path in folder.rglob("*") if not path.is_dir())


def _recorded_digest(path: Path, entry: object) -> bool:
    """Whether ``path``'s SHA-256 is the one its integrity entry records (or the previous one,
    which a run killed between recording and renaming leaves); no entry: nothing to check."""
    if entry is None:
        return True
    if not isinstance(entry, dict):
        return False
    return sha256_file(path) in {entry.get("sha256"), entry.get("previous")} - {None}


def _written_by_the_run(checkpoint: Path, folder: Path, record: dict | None) -> bool:
    """Whether the integrity record vouches for ``checkpoint`` (every phase checkpoint of a run
    without a record, or whose record lists no checkpoint: torchlap recorded the weights'
    digest before it recorded the checkpoints')."""
    if not record or not any(str(key).startswith(f"{folder.name}/") for key in record):
        return True
    entry = record.get(f"{folder.name}/{checkpoint.parent.name}/{checkpoint.name}")
    return entry is not None and _recorded_digest(checkpoint, entry)


def _check_same_run(out: Path, config: TrainConfig, apply: bool) -> None:
    """A folder holding a run: only this run, not started yet, may start again there."""
    try:
        old = _stored_identity(out)
    except RunFolderError:
        raise  # (names config.json and the way out)
    except (ValueError, TypeError, KeyError) as error:
        raise RunFolderError(
            f"--out {out}: its {CONFIG_FILE} cannot be read ({error}); pass --overwrite to "
            "replace that run or choose another folder"
        ) from None
    started = [n for n in (METRICS_FILE, WEIGHTS_FILE, CHECKPOINTS_DIR) if (out / n).exists()]
    if old == config.identity() and not started:
        # a run of these settings that stopped before its first epoch (e.g. a failed
        # multi-process start): nothing to resume, nothing lost by starting again
        if apply:
            logger.info("%s holds this run, not started yet: starting it", out)
        return
    if old == config.identity():
        raise RunFolderError(
            f"--out {out} already holds this run; pass --resume to continue it or "
            "--overwrite to start it again"
        )
    diff = sorted(k for k in config.identity() if old.get(k) != config.identity()[k])
    raise RunFolderError(
        f"--out {out} holds a different run (differing settings: {diff}); choose another "
        "folder or pass --overwrite to replace it"
    )
