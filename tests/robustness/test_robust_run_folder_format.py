"""The run folder's format read on folders made by hand (no training): ``read_run_config``'s
refusals at each boundary (a file for the folder, ``config.json`` that is not a file, not
UTF-8 JSON, not torchlap's, a ``format_version`` that is no int or out of 1..1),
``is_run_config`` and the integrity record (a digest recorded with its previous one, checked
on the caller's bytes, a file without a record, a link leading out of the run)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from torchlap.runs import (
    CONFIG_FILE,
    RUN_FORMAT,
    WEIGHTS_FILE,
    RunError,
    RunFileNotFoundError,
    check_integrity,
    is_run_config,
    read_run_config,
    record_integrity,
)
from torchlap.runs._folder import present_weights
from torchlap.runs.integrity import check_recorded_digest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(folder: Path, **config: object) -> Path:
    """A folder whose config.json is ``{"format": "torchlap-run", **config}``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": RUN_FORMAT, **config}))
    return folder


# ------------------------------------------------------------------------- read_run_config


def test_a_config_without_format_version_is_a_version_1_run(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", lr=0.1)
    assert read_run_config(run) == {"format": RUN_FORMAT, "lr": 0.1}
    assert read_run_config(_run(tmp_path / "v1", format_version=1))["format_version"] == 1


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (True, r"format_version is True, not an integer"),
        (1.0, r"format_version is 1\.0, not an integer"),
        (2, r"has format_version 2, newer than this torchlap reads \(1\); upgrade torchlap"),
        (0, r"format_version is 0, which no torchlap wrote \(known: 1\); was config\.json"),
    ],
)
def test_a_format_version_other_than_1_is_refused(
    tmp_path: Path, version: object, message: str
) -> None:
    run = _run(tmp_path / "run", format_version=version)
    with pytest.raises(RunError, match=message):
        read_run_config(run)


def test_the_config_file_given_for_its_folder_names_the_folder(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    with pytest.raises(RunError) as raised:
        read_run_config(run / CONFIG_FILE)
    assert str(raised.value) == (
        f"{run / CONFIG_FILE} is a file; a run is the folder `torchlap train` wrote (pass {run})"
    )
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(RunError, match=r"model\.pt is a file; .*\(pass its folder\)$"):
        read_run_config(tmp_path / "model.pt")


def test_a_missing_folder_or_config_is_missing_and_an_odd_config_is_named(
    tmp_path: Path,
) -> None:
    with pytest.raises(RunFileNotFoundError, match=r"run folder .*nowhere does not exist"):
        read_run_config(tmp_path / "nowhere")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunFileNotFoundError, match=r"not a torchlap run folder: no config\.json"):
        read_run_config(run)
    (run / CONFIG_FILE).mkdir()
    with pytest.raises(RunError, match=r"config\.json is a folder; torchlap train writes it as"):
        read_run_config(run)
    (run / CONFIG_FILE).rmdir()
    (run / CONFIG_FILE).symlink_to(tmp_path / "gone.json")
    with pytest.raises(RunError, match=r"config\.json is a link to nothing or a link loop"):
        read_run_config(run)


#: config.json content -> what read_run_config says of it
NOT_A_RUNS = {
    b"{ not json": r"config\.json is not valid JSON \(.*\); it is damaged",
    b'{"format": "torchlap-run", "x": "\xff"}': r"is not valid JSON .*utf-8",
    b'["torchlap-run"]': r"config\.json was not written by torchlap train",
    b'{"format": "torchlap-runs"}': r"its format is not 'torchlap-run'",
    b'{"lr": 0.1}': r"was not written by torchlap train",
}


@pytest.mark.parametrize(("content", "message"), NOT_A_RUNS.items())
def test_a_config_that_is_not_a_runs_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_bytes(content)
    with pytest.raises(RunError, match=message) as raised:
        read_run_config(run)
    assert not isinstance(raised.value, FileNotFoundError)  # it is there: damaged, not missing
    assert not is_run_config(run / CONFIG_FILE)


def test_is_run_config_says_whether_torchlap_train_wrote_it(tmp_path: Path) -> None:
    assert is_run_config(_run(tmp_path / "run") / CONFIG_FILE)
    assert not is_run_config(tmp_path / "run" / "missing.json")
    assert not is_run_config(tmp_path / "run")  # a folder
    (tmp_path / "other.json").write_text(json.dumps({"format": RUN_FORMAT + "x"}))
    assert not is_run_config(tmp_path / "other.json")


def test_present_weights_names_what_stands_in_place_of_the_weights(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    with pytest.raises(RunFileNotFoundError, match=r"^no weights here$"):
        present_weights(run, "no weights here")
    (run / WEIGHTS_FILE).mkdir()
    with pytest.raises(RunError, match=r"model\.safetensors is a folder; torchlap train writes"):
        present_weights(run, "no weights here")
    (run / WEIGHTS_FILE).rmdir()
    (run / WEIGHTS_FILE).write_bytes(b"w")
    assert present_weights(run, "no weights here") == run / WEIGHTS_FILE


# ------------------------------------------------------------------------------- integrity


def test_a_run_without_an_integrity_record_passes_unchecked(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    (run / WEIGHTS_FILE).write_bytes(b"anything")
    assert check_integrity(run, run / WEIGHTS_FILE) is None
    record_integrity(run, run / WEIGHTS_FILE)
    assert check_integrity(run, run / WEIGHTS_FILE) == _sha(b"anything")
    config = json.loads((run / CONFIG_FILE).read_text())  # the rest of config.json is kept
    assert config == {
        "format": RUN_FORMAT,
        "integrity": {WEIGHTS_FILE: {"sha256": _sha(b"anything"), "previous": None}},
    }


def test_the_digest_is_checked_on_the_callers_bytes(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    weights = run / WEIGHTS_FILE
    weights.write_bytes(b"checked")
    record_integrity(run, weights)
    config = read_run_config(run)
    weights.write_bytes(b"swapped")  # the file changed after the caller read it
    assert check_recorded_digest(run, config, weights, b"checked") == _sha(b"checked")
    with pytest.raises(RunError) as raised:
        check_recorded_digest(run, config, weights)  # read here: the swapped bytes
    assert str(raised.value) == (
        f"{weights} is damaged or was changed: its SHA-256 is {_sha(b'swapped')[:16]}..., "
        f"config.json records {_sha(b'checked')[:16]}...; restore the file or train the run "
        "again"
    )


def test_a_file_the_record_does_not_name_was_not_finished(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    (run / WEIGHTS_FILE).write_bytes(b"w")
    record_integrity(run, run / WEIGHTS_FILE)
    with pytest.raises(RunError, match=r"last\.ckpt: config\.json records no SHA-256 for this"):
        check_integrity(run, run / "checkpoints" / "last.ckpt")
    record_integrity(run, run / "checkpoints" / "last.ckpt")
    record = json.loads((run / CONFIG_FILE).read_text())["integrity"]
    assert sorted(record) == ["checkpoints/last.ckpt", WEIGHTS_FILE]


def test_a_link_inside_the_run_is_recorded_by_the_file_it_leads_to(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    (run / "checkpoints" / "phase1").mkdir(parents=True)
    (run / "checkpoints" / "phase1" / "last.ckpt").write_bytes(b"ckpt")
    os.symlink("phase1/last.ckpt", run / "checkpoints" / "last.ckpt")
    record_integrity(run, run / "checkpoints" / "last.ckpt")
    record = json.loads((run / CONFIG_FILE).read_text())["integrity"]
    assert list(record) == ["checkpoints/phase1/last.ckpt"]
    outside = tmp_path / "elsewhere.ckpt"
    outside.write_bytes(b"ckpt")
    os.symlink(outside, run / "out.ckpt")
    with pytest.raises(RunError, match=r"out\.ckpt must be a file inside the run folder"):
        record_integrity(run, run / "out.ckpt")
