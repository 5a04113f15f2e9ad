"""Settings `torchlap train` used to accept and then fail on, hang on or ignore: device ids
Lightning refuses, several nodes without a launcher, ``--lr``/``--optimizer`` no phase uses, an
epoch count without bound. Each is refused before the run folder exists (no training here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_train_config_flags import built_configs
from train_configs import tiny_config
from typer.testing import CliRunner

from torchlap.cli import app
from torchlap.train import TrainConfig, fit, parse_phase
from torchlap.train.config import MAX_EPOCHS

# what torchrun, SLURM and the manual multi-node launch set (Lightning's detection)
LAUNCHER_VARIABLES = ("MASTER_ADDR", "NODE_RANK", "RANK", "GROUP_RANK", "LOCAL_RANK",
                      "LOCAL_WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_NAME")  # fmt: skip


def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------------- --devices ids
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"devices": "-1"}, r"--devices '-1' names a device twice or a negative id"),
        ({"devices": "1,1"}, r"--devices '1,1' names a device twice or a negative id"),
        ({"devices": "0,-1"}, r"names a device twice or a negative id; pass 'auto', a count"),
        (
            {"devices": "0,1", "accelerator": "cpu"},
            r"--devices '0,1' lists device ids, which the CPU does not have \(CUDA, MPS and TPU "
            r"do\); with --accelerator cpu on the CPU pass a process count such as --devices 2",
        ),
        (
            {"devices": "0", "accelerator": "cpu"},
            r"--devices '0' selects no process; pass 'auto', a count",
        ),
    ],
)
def test_device_ids_lightning_would_refuse_are_refused_before_the_folder(
    tmp_path: Path, changes: dict, message: str
) -> None:
    # they passed torchlap's checks; Lightning refused them after config.json was written
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        fit(tiny_config(out, **changes))
    assert not out.exists()


def test_the_cli_refuses_a_negative_device_id_without_writing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "lesions", "--out", str(out), "--devices", "-1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "names a device twice or a negative id" in result.output
    assert not out.exists()  # no config.json, no train.log


# ----------------------------------------------------------------------------- --num-nodes
def test_several_nodes_without_a_launcher_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it waited forever for the other node after writing the run folder
    _no_launcher(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--num-nodes 2 needs a launcher .* none was detected"):
        fit(tiny_config(out, num_nodes=2))
    assert not out.exists()
    result = CliRunner().invoke(
        app, ["train", "--data", "lesions", "--out", str(out), "--num-nodes", "3"]
    )
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert re.search(
        r"--num-nodes 3 needs a launcher .*`torchrun --nnodes 3 .*`srun torchlap train", said
    )
    assert not out.exists()


def test_several_nodes_under_a_manual_launch_pass_the_launcher_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_launcher(monkeypatch)
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    monkeypatch.setenv("NODE_RANK", "0")
    out = tmp_path / "run"
    # the next check (2 processes) answers: the launcher one let the run through
    with pytest.raises(ValueError, match=r"--batch-size 15 cannot be split over 2 processes"):
        fit(tiny_config(out, num_nodes=2, batch_size=15))
    assert not out.exists()


# ------------------------------------------------------------------ --lr/--optimizer unused
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--phase", "lap:1:1e-4", "--lr", "5"],
            r"--lr 5.0 is used by no phase: every --phase sets its own LR \(phase 1 "
            r"\('lap:1:1e-4'\)\); leave --lr out, or leave LR out of a phase \(TRAIN:EPOCHS\)",
        ),
        (
            ["--phase", "lap:1:1e-4:adam", "--phase", "fc:1:1e-3:sgd", "--optimizer", "sgd"],
            r"--optimizer 'sgd' is used by no phase: every --phase sets its own OPTIMIZER "
            r"\(phase 1 \('lap:1:1e-4:adam'\), 2 \('fc:1:1e-3:sgd'\)\)",
        ),
        # given on the command line, even at its default value: it is still unused
        (["--phase", "lap:1:1e-4", "--lr", "0.001"], r"--lr 0.001 is used by no phase"),
        # every phase sets its own EPOCHS: --epochs with a --phase is never used
        (
            ["--phase", "lap:1", "--epochs", "7"],
            r"--epochs 7 is used by no phase: every --phase sets its own EPOCHS "
            r"\(TRAIN:EPOCHS\[:LR\[:OPTIMIZER\]\]\); leave --epochs out",
        ),
    ],
)
def test_lr_or_optimizer_no_phase_uses_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], message: str
) -> None:
    # they trained at the phase's LR and with its optimizer, exit 0
    seen = built_configs(monkeypatch)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", "lesions", "--out", str(out), *options])
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert seen == [] and not out.exists()


@pytest.mark.parametrize(
    "options",
    [
        ["--phase", "lap:1:1e-4:adam", "--phase", "fc:1:1e-3:sgd"],  # neither flag given
        ["--phase", "lap:1:1e-4", "--phase", "fc:1", "--lr", "5"],  # phase 2 takes --lr
        ["--phase", "lap:1:1e-4", "--optimizer", "sgd"],  # the phase takes --optimizer
        ["--lr", "0.01", "--optimizer", "sgd"],  # no --phase: the one default phase
        # a run made before the refusal resumes with the command that made it
        ["--phase", "lap:1:1e-4", "--lr", "5", "--resume"],
    ],
)
def test_lr_and_optimizer_a_phase_uses_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    seen = built_configs(monkeypatch)
    CliRunner().invoke(app, ["train", "--data", "lesions", "--out", str(tmp_path), *options])
    assert len(seen) == 1


# -------------------------------------------------------------------------------- epochs
def test_epochs_have_an_upper_bound() -> None:
    assert MAX_EPOCHS == 100_000
    assert parse_phase(f"lap:{MAX_EPOCHS}").epochs == MAX_EPOCHS
    with pytest.raises(
        ValueError, match=r"phase epochs must be an int from 1 to 100000, got 9{20}"
    ):
        parse_phase("lap:" + "9" * 20)
    with pytest.raises(ValueError, match=r"epochs \(--epochs\) must be an int from 1 to 100000"):
        TrainConfig(data="lesions", out="runs/x", epochs=MAX_EPOCHS + 1).validate()
    TrainConfig(data="lesions", out="runs/x", epochs=MAX_EPOCHS).validate()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--phase", "lap:99999999999999999999"], r"phase epochs must be an int from 1 to 100000"),
        (["--epochs", "100001"], r"epochs \(--epochs\) must be an int from 1 to 100000"),
    ],
)
def test_the_cli_refuses_epochs_beyond_the_bound(
    tmp_path: Path, options: list[str], message: str
) -> None:
    # `--phase lap:99999999999999999999` started a run that would never end
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", "lesions", "--out", str(out), *options])
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output), result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("variables", "zero"),
    [
        ({}, True),
        ({"RANK": "0", "WORLD_SIZE": "2"}, True),
        ({"RANK": "1", "WORLD_SIZE": "2"}, False),
        ({"LOCAL_RANK": "1"}, False),
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}, False),
        ({"RANK": "x", "LOCAL_RANK": "0"}, True),  # int('x') was a ValueError in train only
        # a rank variable left in a shell, no launch of several processes: rank 0 (it was
        # taken for a worker: no console warnings, no log file)
        ({"RANK": "1"}, True),
        ({"RANK": "1", "WORLD_SIZE": "1"}, True),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "1"}, True),
        ({"OMPI_COMM_WORLD_RANK": "2"}, True),
    ],
)
def test_train_reads_the_rank_as_the_logs_do(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], zero: bool
) -> None:
    """One reader of the launchers' rank variables (torchlap.logs.process_rank): train's own
    copy raised on a value the logs ignore."""
    from torchlap.logs import process_rank
    from torchlap.train.folder import is_global_zero

    counts = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
    for name in (*LAUNCHER_VARIABLES, *counts, "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert is_global_zero() is zero and (process_rank() == 0) is zero
