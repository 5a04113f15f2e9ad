"""``--overwrite`` and ``--resume`` with a damaged integrity record (``config.json``'s
``integrity`` not a dict of digests), and the checkpoints ``--overwrite`` leaves.

Before: a damaged record was read as "no record" (a run from before torchlap recorded
digests): ``--overwrite`` removed every ``checkpoints/phase<N>/last.ckpt`` as a pre-record
run's, whether the run wrote it or not; ``--resume`` of a run without a checkpoint passed and
wrote the new ``config.json`` without any record, so every file of the folder (the old weights
too) was trusted unchecked from then on. And a checkpoint at torchlap's naming that the record
did not vouch for was left in place, where the new run (whose record starts empty, like a
pre-record run's) would replace it, or trust it on ``--resume`` on the archive's checks alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from train_configs import fake_run_folder, tiny_config

from torchlap.runs import RunError, sha256_file
from torchlap.train import RunFolderError
from torchlap.train.folder import prepare_folder

DAMAGED = {"text": "sha", "list": [], "number": 7, "bad entry": {"model.safetensors": "x"}}


_run_folder = fake_run_folder


def _listing(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): (
            "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("value", DAMAGED.values(), ids=DAMAGED.keys())
def test_overwrite_of_a_damaged_record_deletes_no_checkpoint(tmp_path: Path, value) -> None:
    out = _run_folder(tmp_path / "run", value, {"phase1": b"run", "phase2": b"mine"})
    before = _listing(out)
    for apply in (False, True):
        with pytest.raises(RunFolderError, match=r"'integrity' (must be|entry)") as refused:
            prepare_folder(out, tiny_config(out, overwrite=True), apply=apply)
        assert "phase1/last.ckpt" in str(refused.value) and "phase2/last.ckpt" in str(refused.value)
        assert _listing(out) == before


@pytest.mark.parametrize("value", DAMAGED.values(), ids=DAMAGED.keys())
def test_overwrite_of_a_damaged_record_without_checkpoints_names_what_it_removes(
    tmp_path: Path, value, caplog: pytest.LogCaptureFixture
) -> None:
    out = _run_folder(tmp_path / "run", value, {})
    (out / "notes.txt").write_text("mine")
    with caplog.at_level(logging.WARNING, logger="torchlap.train.folder"):
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert "(removing config.json, metrics.json, model.safetensors, train.log)" in caplog.text


@pytest.mark.parametrize("value", DAMAGED.values(), ids=DAMAGED.keys())
def test_resume_refuses_a_damaged_record_without_a_checkpoint(tmp_path: Path, value) -> None:
    out = _run_folder(tmp_path / "run", value, {})
    before = _listing(out)
    with pytest.raises(RunError, match=r"config\.json: 'integrity' (must be|entry)"):
        prepare_folder(out, tiny_config(out, resume=True), apply=True)
    assert _listing(out) == before


def test_overwrite_refuses_a_checkpoint_the_record_does_not_vouch_for(tmp_path: Path) -> None:
    record = {"checkpoints/phase1/last.ckpt": {"sha256": "0" * 64, "previous": None}}
    out = _run_folder(tmp_path / "run", record, {"phase1": b"changed"})
    before = _listing(out)
    with pytest.raises(RunFolderError, match=r"phase1/last\.ckpt: torchlap cannot tell it wrote"):
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert _listing(out) == before


def test_overwrite_names_every_file_it_removes(tmp_path, caplog) -> None:
    out = _run_folder(tmp_path / "run", "unset", {})
    (out / "checkpoints" / "phase1").mkdir(parents=True)
    (out / "checkpoints" / "phase1" / "last.ckpt").write_bytes(b"run")
    (out / "checkpoints" / "mine.ckpt").write_bytes(b"mine")
    digest = sha256_file(out / "checkpoints" / "phase1" / "last.ckpt")
    config = json.loads((out / "config.json").read_text())
    config["integrity"] = {"checkpoints/phase1/last.ckpt": {"sha256": digest, "previous": None}}
    (out / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="torchlap.train.folder"):
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert (
        "(removing config.json, metrics.json, model.safetensors, train.log, "
        "checkpoints/phase1/last.ckpt)" in caplog.text
    )
    assert _listing(out) == {"checkpoints": "folder", "checkpoints/mine.ckpt": _sha(b"mine")}


@pytest.mark.parametrize("integrity", ["unset", {}, {"model.safetensors": None}])
def test_a_record_of_no_checkpoint_removes_every_phase_checkpoint(tmp_path, integrity) -> None:
    """A run from before torchlap recorded digests, or the checkpoints' digests (its record
    lists the weights alone): its phase checkpoints are torchlap's by their names."""
    if isinstance(integrity, dict) and "model.safetensors" in integrity:
        integrity = {"model.safetensors": {"sha256": _sha(b"weights"), "previous": None}}
    out = _run_folder(tmp_path / "run", integrity, {"phase1": b"a", "phase2": b"b"})
    prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert not out.exists() or list(out.iterdir()) == []


def test_overwrite_refuses_weights_changed_since_the_run_wrote_them(tmp_path: Path) -> None:
    """model.safetensors whose SHA-256 is not the recorded one (the user's weights now, e.g.
    edited in place) is not deleted; the recorded file (or the previous one) is."""
    recorded = {"model.safetensors": {"sha256": _sha(b"other"), "previous": None}}
    out = _run_folder(tmp_path / "run", recorded, {})
    before = _listing(out)
    with pytest.raises(RunFolderError, match=r"model\.safetensors: torchlap cannot tell it wrote"):
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
    assert _listing(out) == before
    for entry in ({"sha256": _sha(b"weights"), "previous": None},
                  {"sha256": _sha(b"new"), "previous": _sha(b"weights")}):  # fmt: skip
        out = _run_folder(tmp_path / entry["sha256"][:8], {"model.safetensors": entry}, {})
        prepare_folder(out, tiny_config(out, overwrite=True), apply=True)
        assert not (out / "model.safetensors").exists()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
