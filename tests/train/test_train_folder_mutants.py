"""The run folder's refusals and removals at their boundaries (torchlap.train.folder), on run
folders crafted by hand (no training): each test was written for a mutant of folder.py that
the other tests let through, a change that would delete, overwrite or trust a file wrongly.

The contract: torchlap never overwrites or deletes a file it did not write unless the user
asked with an explicit flag (and then it says which); files are written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from train_configs import fake_run_folder, tiny_config

from torchlap.runs import RunError
from torchlap.train import RunFolderError
from torchlap.train.folder import check_finished_run, prepare_folder, save_weights

#: the temp file of a writer killed mid-write (a process id above Linux's maximum: gone)
STALE = ".model.safetensors.4194305.0123abcd.torchlap-tmp"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: ``"folder"``, ``"link"`` or the file's SHA-256."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            kind = "link"
        elif path.is_dir():
            kind = "folder"
        else:
            kind = _sha(path.read_bytes())
        listing[path.relative_to(folder).as_posix()] = kind
    return listing


_run_folder = fake_run_folder


def _checkpoint(out: Path, phase: str, data: bytes) -> Path:
    path = out / "checkpoints" / phase / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------ what --out is
@pytest.mark.parametrize("apply", [False, True])
def test_an_out_that_is_a_file_is_refused_naming_it(tmp_path: Path, apply: bool) -> None:
    out = tmp_path / "run"
    out.write_text("my notes")
    for changes in ({}, {"overwrite": True}):
        with pytest.raises(RunFolderError, match=r"run exists and is not a folder; pass a"):
            prepare_folder(out, tiny_config(out, **changes), apply=apply)
    assert out.read_text() == "my notes"


def test_an_out_inside_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("mine")
    out = tmp_path / "notes" / "run"
    with pytest.raises(RunFolderError, match=r"run is inside .*notes, which is not a folder"):
        prepare_folder(out, tiny_config(out), apply=True)
    assert (tmp_path / "notes").read_text() == "mine"


@pytest.mark.parametrize(
    "content", ['{"format": "other"}', '{"train": {}}', "[1, 2]", "not json", ""]
)
@pytest.mark.parametrize("flag", ["", "overwrite", "resume"])
def test_a_config_json_torchlap_did_not_write_is_never_replaced(
    tmp_path: Path, content: str, flag: str
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(content)
    (out / "model.safetensors").write_bytes(b"mine")
    before = _listing(out)
    config = tiny_config(out, **({flag: True} if flag else {}))
    for apply in (False, True):
        with pytest.raises(RunFolderError, match=r"config\.json that torchlap train did not wri"):
            prepare_folder(out, config, apply=apply)
    assert _listing(out) == before


# ------------------------------------------------------------------- stale temporary files
@pytest.mark.parametrize("flag", ["", "overwrite", "resume"])
def test_stale_temps_are_removed_only_when_applying(tmp_path: Path, flag: str) -> None:
    """A dry check (apply=False) changes nothing; the run itself removes the temp files a
    killed torchlap left in its run folder (its own names only)."""
    out = _run_folder(tmp_path / "run")
    if flag == "":  # this run, not started yet: it may start there again
        for name in ("metrics.json", "model.safetensors"):
            (out / name).unlink()
    (out / STALE).write_bytes(b"half")
    (out / "notes.torchlap-tmp").write_text("mine")  # not torchlap's temp name
    config = tiny_config(out, **({flag: True} if flag else {}))
    prepare_folder(out, config, apply=False)
    assert (out / STALE).read_bytes() == b"half"
    prepare_folder(out, config, apply=True)
    assert not (out / STALE).exists() and (out / "notes.torchlap-tmp").read_text() == "mine"


# --------------------------------------------------------------------- --out without a flag
@pytest.mark.parametrize("started", ["metrics.json", "model.safetensors", "checkpoints"])
def test_a_started_run_is_not_started_again_without_a_flag(tmp_path: Path, started: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    record = {"format": "torchlap-run", "train": tiny_config(out).to_dict()}
    (out / "config.json").write_text(json.dumps(record))
    if started == "checkpoints":
        _checkpoint(out, "phase1", b"ckpt")
    else:
        (out / started).write_bytes(b"x")
    before = _listing(out)
    with pytest.raises(RunFolderError, match=r"already holds this run; pass --resume"):
        prepare_folder(out, tiny_config(out), apply=True)
    assert _listing(out) == before


def test_a_run_not_started_yet_starts_again_and_another_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    record = {"format": "torchlap-run", "train": tiny_config(out, seed=3).to_dict()}
    (out / "config.json").write_text(json.dumps(record))
    (out / "train.log").write_text("old log\n")
    before = _listing(out)
    prepare_folder(out, tiny_config(out, seed=3), apply=True)  # nothing to resume or lose
    assert _listing(out) == before
    with pytest.raises(RunFolderError, match=r"holds a different run \(differing settings: \["):
        prepare_folder(out, tiny_config(out, seed=4), apply=True)
    assert _listing(out) == before


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("absent", r"'train' must be a dict .*, it has none \(was config\.json edited\?\)"),
        (5, r"'train' must be a dict .*, got 5 \(was config\.json edited\?\)"),
        ({"no such option": 1}, r"'train' is not a record torchlap train wrote \(unknown"),
    ],
)
@pytest.mark.parametrize("flag", ["", "resume"])
def test_a_damaged_train_record_is_named_and_nothing_changes(
    tmp_path: Path, train: object, message: str, flag: str
) -> None:
    out = _run_folder(tmp_path / "run")
    _checkpoint(out, "phase1", b"ckpt")
    config = json.loads((out / "config.json").read_text())
    if train == "absent":
        del config["train"]
    else:
        config["train"] = train
    (out / "config.json").write_text(json.dumps(config))
    before = _listing(out)
    with pytest.raises(RunFolderError, match=r"config\.json: " + message):
        prepare_folder(out, tiny_config(out, **({flag: True} if flag else {})), apply=True)
    assert _listing(out) == before


def test_a_config_json_of_a_newer_format_is_named_not_replaced(tmp_path: Path) -> None:
    out = _run_folder(tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    before = _listing(out)
    with pytest.raises(RunFolderError, match=r"its config\.json cannot be read \(.*newer"):
        prepare_folder(out, tiny_config(out), apply=True)
    assert _listing(out) == before


# -------------------------------------------------------------------------------- --resume
def _zip_bytes(text: str) -> bytes:
    """A whole zip archive (PyTorch writes its checkpoints as zip archives)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", text)
    return buffer.getvalue()


def _resume(out: Path) -> None:
    prepare_folder(out, tiny_config(out, resume=True), apply=True)


def test_resume_checks_the_latest_checkpoint_by_its_phase_number(tmp_path: Path) -> None:
    """phase10 is later than phase2 (resuming starts from the highest phase); an earlier
    checkpoint is not what the run resumes from."""
    ok, bad = _zip_bytes("ok"), b"damaged"
    record = {
        "checkpoints/phase2/last.ckpt": {"sha256": _sha(ok), "previous": None},
        "checkpoints/phase10/last.ckpt": {"sha256": _sha(ok), "previous": None},
    }
    out = _run_folder(tmp_path / "run", record)
    _checkpoint(out, "phase2", bad)
    _checkpoint(out, "phase10", ok)
    _resume(out)  # phase2 is not the latest
    _checkpoint(out, "phase2", ok)
    _checkpoint(out, "phase10", bad)
    with pytest.raises(ValueError, match=r"phase10/last\.ckpt is damaged or was changed"):
        _resume(out)


@pytest.mark.parametrize("integrity", ["unset", {}])
def test_resume_of_a_run_without_a_record_checks_the_latest_archive(
    tmp_path: Path, integrity: object
) -> None:
    out = _run_folder(tmp_path / "run", integrity)
    _checkpoint(out, "phase1", b"not an archive")  # not the latest: not checked
    _checkpoint(out, "phase2", _zip_bytes("whole"))
    _resume(out)
    _checkpoint(out, "phase2", _zip_bytes("whole")[:-10])  # truncated
    with pytest.raises(RunFolderError, match=r"phase2/last\.ckpt is damaged \(not a whole"):
        _resume(out)


def test_resume_refuses_a_checkpoint_name_taken_by_a_folder_only_in_a_phase_folder(
    tmp_path: Path,
) -> None:
    out = _run_folder(tmp_path / "run")
    (out / "checkpoints" / "phase1-keep" / "last.ckpt").mkdir(parents=True)  # the user's
    (out / "checkpoints" / "phase_notes").write_text("mine")  # a file named phase*
    _resume(out)
    (out / "checkpoints" / "phase1" / "last.ckpt").mkdir(parents=True)
    with pytest.raises(RunFolderError, match=r"phase1/last\.ckpt is a folder; torchlap writes"):
        _resume(out)


# ----------------------------------------------------------------------------- --overwrite
def _overwrite(out: Path, apply: bool = True) -> None:
    prepare_folder(out, tiny_config(out, overwrite=True), apply=apply)


def test_overwrite_names_the_evaluations_it_leaves_of_the_replaced_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An evaluation in the run folder (``eval-test/``, evaluate's default output) describes the
    replaced model: left in place, not torchlap train's, but named (it was not)."""
    out = _run_folder(tmp_path / "run")
    (out / "eval-test").mkdir()
    (out / "eval-test" / "results.json").write_text("{}")
    (out / "notes").mkdir()  # a folder without results.json is not named
    with caplog.at_level(logging.WARNING, logger="torchlap.train.folder"):
        _overwrite(out)
    assert (out / "eval-test" / "results.json").is_file()
    left = [r.getMessage() for r in caplog.records if "left eval-test/ in place" in r.getMessage()]
    assert len(left) == 1 and "evaluations of the replaced run's model" in left[0]
    assert "notes/" not in left[0]


def test_a_dry_overwrite_check_removes_nothing(tmp_path: Path) -> None:
    out = _run_folder(tmp_path / "run")
    _checkpoint(out, "phase1", b"ckpt")
    before = _listing(out)
    _overwrite(out, apply=False)
    assert _listing(out) == before
    _overwrite(out)
    assert _listing(out) == {}


@pytest.mark.parametrize("kind", ["folder", "link to nothing", "link to a file"])
def test_overwrite_keeps_a_checkpoint_name_taken_by_what_torchlap_did_not_write(
    tmp_path: Path, kind: str
) -> None:
    """A folder or a dangling link at ``phase<N>/last.ckpt`` is not a checkpoint torchlap
    wrote, in a run without a record too; a link to a file outside the run is not either
    (the record names the run's own files)."""
    mine = tmp_path / "mine.ckpt"
    mine.write_bytes(b"mine")
    record = {"checkpoints/phase1/last.ckpt": {"sha256": _sha(b"ckpt"), "previous": None}}
    for integrity in ("unset", record):
        out = _run_folder(tmp_path / f"run{len(str(integrity))}", integrity)
        entry = out / "checkpoints" / "phase1" / "last.ckpt"
        entry.parent.mkdir(parents=True)
        if kind == "folder":
            entry.mkdir()
        elif kind == "link to nothing":
            entry.symlink_to(tmp_path / "nothing")
        else:
            entry.symlink_to(mine)
        before = _listing(out)
        if kind == "link to a file" and integrity == "unset":
            continue  # (a run before the record: torchlap's naming; the link goes, not mine)
        with pytest.raises(RunFolderError, match=r"phase1/last\.ckpt: torchlap cannot tell it"):
            _overwrite(out)
        assert _listing(out) == before
    assert mine.read_bytes() == b"mine"


def test_overwrite_says_it_or_them_as_many_as_it_keeps(tmp_path: Path) -> None:
    record = {"checkpoints/phase1/last.ckpt": {"sha256": _sha(b"other"), "previous": None}}
    out = _run_folder(tmp_path / "run", record)
    _checkpoint(out, "phase1", b"mine")
    with pytest.raises(RunFolderError, match=r"cannot tell it wrote it \(.*will not delete it;"):
        _overwrite(out)
    _checkpoint(out, "phase2", b"mine too")
    with pytest.raises(RunFolderError, match=r"tell it wrote them \(.*will not delete them;"):
        _overwrite(out)
    assert (out / "config.json").exists()


def test_overwrite_removes_a_checkpoint_at_its_recorded_or_previous_digest(tmp_path: Path):
    """A run killed between recording a checkpoint's digest and renaming it leaves the file of
    the previous digest: the run's own, removed; the user's files in checkpoints/ stay."""
    record = {
        "checkpoints/phase1/last.ckpt": {"sha256": _sha(b"one"), "previous": None},
        "checkpoints/phase2/last.ckpt": {"sha256": _sha(b"new"), "previous": _sha(b"two")},
    }
    out = _run_folder(tmp_path / "run", record)
    _checkpoint(out, "phase1", b"one")
    _checkpoint(out, "phase2", b"two")
    (out / "checkpoints" / "phase2" / "notes.txt").write_text("mine")
    _overwrite(out)
    assert _listing(out) == {
        "checkpoints": "folder",
        "checkpoints/phase2": "folder",
        "checkpoints/phase2/notes.txt": _sha(b"mine"),
    }


def test_overwrite_of_weights_the_record_does_not_list_removes_them(tmp_path: Path) -> None:
    """A run whose record lists only checkpoints (killed before the weights were written):
    model.safetensors is torchlap's by its name, as the record has nothing to say of it."""
    record = {"checkpoints/phase1/last.ckpt": {"sha256": _sha(b"one"), "previous": None}}
    out = _run_folder(tmp_path / "run", record)
    _checkpoint(out, "phase1", b"one")
    _overwrite(out)
    assert _listing(out) == {}


def test_an_overwrite_failing_half_way_removes_config_json_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.json goes last: a removal failing before it leaves a folder --overwrite still
    recognises as a run torchlap wrote (and clears on the next try)."""
    out = _run_folder(tmp_path / "run")
    real_unlink = Path.unlink

    def failing_unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == "model.safetensors":
            raise PermissionError(f"cannot remove {self}")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", failing_unlink)
    with pytest.raises(PermissionError):
        _overwrite(out)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    monkeypatch.setattr(Path, "unlink", real_unlink)
    _overwrite(out)
    assert _listing(out) == {}


def test_overwrite_keeps_a_checkpoints_link_and_what_is_not_torchlaps(tmp_path: Path) -> None:
    """checkpoints/ a link to a folder inside the run (kept on another disk, say): the
    checkpoints in it go, the link stays; a phase folder holding the user's file stays."""
    out = _run_folder(tmp_path / "run")
    target = out / "disk"
    (target / "phase1").mkdir(parents=True)
    (target / "phase1" / "last.ckpt").write_bytes(b"ckpt")
    (out / "checkpoints").symlink_to(target)
    _overwrite(out)
    assert _listing(out) == {"checkpoints": "link", "disk": "folder"}


# ---------------------------------------------- the temp file of a run killed writing config.json
@pytest.mark.parametrize("flag", ["", "overwrite"])
def test_a_folder_holding_only_a_killed_runs_temp_file_takes_the_run(
    tmp_path: Path, flag: str
) -> None:
    """A run killed while writing its first config.json leaves only torchlap's temp file:
    before, the dry check (``fit`` runs it before loading the data) refused the folder as
    "not empty and holds no torchlap run", naming torchlap's own leftover, while the real
    check removes it first. A temp file of a live process (one writing there now) is still
    refused, and so is a file of another name."""
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".config.json.4194305.0123abcd.torchlap-tmp"
    stale.write_text("{")
    config = tiny_config(out, **({flag: True} if flag else {}))
    prepare_folder(out, config, apply=False)
    assert stale.exists()
    prepare_folder(out, config, apply=True)
    assert list(out.iterdir()) == []
    live = out / f".config.json.{os.getpid()}.0123abcd.torchlap-tmp"
    live.write_text("{")
    for apply in (False, True):
        with pytest.raises(RunFolderError, match=r"not empty and holds no torchlap run"):
            prepare_folder(out, config, apply=apply)
    assert live.exists()


@pytest.mark.parametrize("flag", ["", "overwrite"])
def test_a_checkpoints_link_leading_out_of_the_run_is_refused_before_anything_goes(
    tmp_path: Path, flag: str
) -> None:
    """A run's checkpoints are recorded by their path inside its folder: ``checkpoints`` a
    link to a folder elsewhere is refused, by the dry check too, and nothing is removed on
    either side of the link (a link to a folder inside the run is kept: test above)."""
    out = _run_folder(tmp_path / "run")
    disk = tmp_path / "disk"
    (disk / "phase1").mkdir(parents=True)
    (disk / "phase1" / "last.ckpt").write_bytes(b"ckpt")
    (out / "checkpoints").symlink_to(disk)
    before, kept = _listing(out), _listing(disk)
    config = tiny_config(out, **({flag: True} if flag else {}))
    for apply in (False, True):
        with pytest.raises(RunFolderError, match=r"checkpoints is a link to .*disk, outside the"):
            prepare_folder(out, config, apply=apply)
    assert _listing(out) == before and _listing(disk) == kept


# ---------------------------------------------------------- a finished run reused, a resume
def test_a_finished_run_is_reused_only_with_its_settings_and_its_recorded_weights(
    tmp_path: Path,
) -> None:
    record = {"model.safetensors": {"sha256": _sha(b"weights"), "previous": None}}
    out = _run_folder(tmp_path / "run", record)
    before = _listing(out)
    check_finished_run(out, tiny_config(out))  # this run, its weights as recorded
    with pytest.raises(
        RunFolderError, match=r"holds a finished run made with other settings \(differing: \['seed'"
    ):
        check_finished_run(out, tiny_config(out, seed=7))
    assert _listing(out) == before
    (out / "model.safetensors").write_bytes(b"changed since")
    with pytest.raises(RunError, match=r"model\.safetensors"):
        check_finished_run(out, tiny_config(out))


@pytest.mark.parametrize(
    ("recorded", "given", "said"),
    [
        ({}, {"seed": 7}, r"\['seed'\]\); resume it with its own settings$"),
        (
            {"balanced_batches": False},
            {},
            r"\['balanced_batches'\]\); resume it with its own settings \(it trains with random "
            r"batches: add --no-balanced-batches\)$",
        ),
        (
            {"balanced_batches": False},
            {"balanced_batches": False, "seed": 7},
            r"\['seed'\]\); resume it with its own settings$",
        ),
        (
            {"seed": 7},
            {"balanced_batches": False},
            r"\['balanced_batches', 'seed'\]\); resume it with its own settings$",
        ),
    ],
)
def test_a_resume_with_other_settings_names_them_and_the_flag_to_add(
    tmp_path: Path, recorded: dict, given: dict, said: str
) -> None:
    out = _run_folder(tmp_path / "run", **recorded)
    with pytest.raises(
        RunFolderError, match=r"--resume: the run in .* settings \(differing: " + said
    ):
        prepare_folder(out, tiny_config(out, resume=True, **given), apply=False)


def test_resume_checks_only_the_checkpoint_it_resumes_from(tmp_path: Path) -> None:
    """Of three phase checkpoints, the latest is the one resumed: a damaged earlier one (not
    the first either) does not stop the resume."""
    ok = _zip_bytes("ok")
    record = {
        f"checkpoints/phase{n}/last.ckpt": {"sha256": _sha(ok), "previous": None} for n in (1, 2, 3)
    }
    out = _run_folder(tmp_path / "run", record)
    for n in (1, 3):
        _checkpoint(out, f"phase{n}", ok)
    _checkpoint(out, "phase2", b"damaged")
    _resume(out)


@pytest.mark.parametrize("integrity", ["unset", "recorded"])
def test_overwrite_removes_and_names_torchlaps_checkpoints_and_names_what_it_keeps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, integrity: str
) -> None:
    """``checkpoints/phase1-keep/last.ckpt`` is not at torchlap's naming (not a checkpoint the
    record must vouch for, not removed, not among the removed files), a phase folder without
    a checkpoint holds only the user's file: both stay, and the log names them, in a run with
    a record and in one from before it."""
    record = {"checkpoints/phase1/last.ckpt": {"sha256": _sha(b"one"), "previous": None}}
    out = _run_folder(tmp_path / "run", record if integrity == "recorded" else "unset")
    _checkpoint(out, "phase1", b"one")
    _checkpoint(out, "phase1-keep", b"mine")
    (out / "checkpoints" / "phase3").mkdir()
    (out / "checkpoints" / "phase3" / "notes.txt").write_text("mine")
    with caplog.at_level(logging.WARNING, logger="torchlap.train.folder"):
        _overwrite(out)
    assert _listing(out) == {
        "checkpoints": "folder",
        "checkpoints/phase1-keep": "folder",
        "checkpoints/phase1-keep/last.ckpt": _sha(b"mine"),
        "checkpoints/phase3": "folder",
        "checkpoints/phase3/notes.txt": _sha(b"mine"),
    }
    said = [r.getMessage() for r in caplog.records]
    (removal,) = [m for m in said if "replacing the run" in m]
    assert "checkpoints/phase1/last.ckpt" in removal and "phase1-keep" not in removal
    kept = [m for m in said if "in place" in m]
    folder = out / "checkpoints"
    assert kept == [
        f"--overwrite: left {folder / 'phase1-keep' / 'last.ckpt'}, "
        f"{folder / 'phase3' / 'notes.txt'} in place (torchlap did not write them)"
    ]


def test_save_weights_records_their_sha256_in_the_run_they_are_written_to(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    out = _run_folder(tmp_path / "run", {})
    path = out / "model.safetensors"
    digest = save_weights(path, {"w": torch.ones(2)}, {"format": "torchlap-run"}, run_dir=out)
    assert digest == _sha(path.read_bytes()) and load_file(str(path))["w"].tolist() == [1.0, 1.0]
    integrity = json.loads((out / "config.json").read_text())["integrity"]
    assert integrity["model.safetensors"]["sha256"] == digest
    other = tmp_path / "other.safetensors"  # no run folder: written, recorded nowhere
    assert save_weights(other, {"w": torch.zeros(1)}, {}) == _sha(other.read_bytes())


def test_identical_weights_are_identical_files_in_every_process(tmp_path: Path) -> None:
    """safetensors writes its metadata from a hash map whose order changes per process: two
    identical runs wrote different bytes and SHA-256s. The header is now in a fixed order."""
    import subprocess
    import sys

    import torch
    from safetensors import safe_open

    code = (
        "import sys, torch\nfrom pathlib import Path\n"
        "from torchlap.train.folder import save_weights\n"
        "state = {'b': torch.ones(3), 'a': torch.arange(5, dtype=torch.float64)}\n"
        "meta = {'format': 'torchlap-run', 'arch': 'x', 'torchlap_version': '1', 'z': '2'}\n"
        "print(save_weights(Path(sys.argv[1]), state, meta))\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    digests = set()
    for i in range(4):
        path = tmp_path / f"w{i}.safetensors"
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            env={**os.environ, "PYTHONPATH": src},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        digests.add(done.stdout.strip())
        assert _sha(path.read_bytes()) == done.stdout.strip()
    assert len(digests) == 1
    with safe_open(str(tmp_path / "w0.safetensors"), "pt") as reader:
        assert reader.metadata() == {
            "format": "torchlap-run",
            "arch": "x",
            "torchlap_version": "1",
            "z": "2",
        }
        assert torch.equal(reader.get_tensor("a"), torch.arange(5, dtype=torch.float64))
        assert torch.equal(reader.get_tensor("b"), torch.ones(3))
