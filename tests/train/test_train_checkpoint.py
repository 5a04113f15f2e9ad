"""``AtomicCheckpoint`` (torchlap.train.checkpoint) on its own, with a stand-in trainer: when
it saves (every N optimizer steps, every epoch end), that it never saves weights that are not
finite on any process, what each process writes, and the digest it records.

The trainer is faked: only the calls the callback makes matter here (the strategy's boolean
reduction over the processes, ``save_checkpoint``, the barrier); the real Lightning files are
checked by the training tests (tests/train/test_train_run.py, test_train_errors.py)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from train_configs import fake_run_folder

from torchlap.train.checkpoint import AtomicCheckpoint


class _Strategy:
    """Two processes: this one and another whose weights are finite or not. Lightning's
    ``reduce_boolean_decision(decision, all=True)`` is True when every process says True,
    ``all=False`` when any does."""

    def __init__(self, other_finite: bool) -> None:
        self.other_finite = other_finite
        self.barriers: list[str | None] = []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        both = (decision, self.other_finite)
        return (both[0] and both[1]) if all else (both[0] or both[1])

    def barrier(self, name: str | None = None) -> None:
        self.barriers.append(name)


class _Trainer:
    """What the callback asks of a ``L.Trainer``; ``saves`` lists (path, weights_only, the
    barriers passed before the call); the process of rank 0 writes the file."""

    def __init__(self, step: int = 0, rank_zero: bool = True, other_finite: bool = True):
        self.global_step = step
        self.is_global_zero = rank_zero
        self.strategy = _Strategy(other_finite)
        self.saves: list[tuple[str, bool, int]] = []

    def save_checkpoint(self, path: str, weights_only: bool = False) -> None:
        self.saves.append((path, weights_only, len(self.strategy.barriers)))
        if self.is_global_zero:
            Path(path).write_bytes(f"checkpoint of step {self.global_step}".encode())


def _module(value: float = 1.0) -> nn.Module:
    module = nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.weight[1, 2] = value  # one weight of six
    return module


@pytest.mark.parametrize(
    ("every", "error"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError), ("3", TypeError)],
)
def test_a_save_interval_that_is_not_a_positive_int_is_refused(
    tmp_path: Path, every: Any, error: type[Exception]
) -> None:
    with pytest.raises(
        error, match=rf"every_n_train_steps must be None or an int >= 1, got {every!r}"
    ):
        AtomicCheckpoint(tmp_path, every_n_train_steps=every)


def test_the_file_and_the_state_key_are_named_after_the_phase_folder(tmp_path: Path) -> None:
    callback = AtomicCheckpoint(tmp_path / "checkpoints" / "phase2", every_n_train_steps=1)
    assert callback.last_path == tmp_path / "checkpoints" / "phase2" / "last.ckpt"
    assert callback.state_key == "AtomicCheckpoint[phase2]" and callback.run_dir is None


@pytest.mark.parametrize(
    ("every", "saved_at"), [(None, []), (1, [1, 2, 3, 4, 5, 6, 7]), (3, [3, 6])]
)
def test_mid_epoch_saves_come_every_n_optimizer_steps_never_at_step_zero(
    tmp_path: Path, every: int | None, saved_at: list[int]
) -> None:
    """After the batches of global steps 0 to 7 (step 0: a batch of an accumulation that has
    not stepped the optimizer yet, nothing to save)."""
    callback = AtomicCheckpoint(tmp_path / "phase1", every_n_train_steps=every)
    saved = []
    for step in range(8):
        trainer = _Trainer(step)
        callback.on_train_batch_end(trainer, _module(), None, None, 0)
        saved += [step] * len(trainer.saves)
    assert saved == saved_at


def test_every_epoch_end_saves_and_replaces_the_last_checkpoint(tmp_path: Path) -> None:
    """Into a phase folder whose parents do not exist yet, then again over the first file."""
    folder = tmp_path / "run" / "checkpoints" / "phase1"
    callback = AtomicCheckpoint(folder)
    for step in (4, 8):
        trainer = _Trainer(step)
        callback.on_train_epoch_end(trainer, _module())
        assert callback.last_path.read_bytes() == f"checkpoint of step {step}".encode()
        ((path, weights_only, barriers_before),) = trainer.saves
        # written to a temporary file renamed onto last.ckpt, never in place, with the
        # optimizer state --resume needs; the barrier comes after the (collective) save
        assert Path(path).parent == folder and path != str(callback.last_path)
        assert weights_only is False and barriers_before == 0
        assert trainer.strategy.barriers == ["AtomicCheckpoint.save"]
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize(
    ("value", "other_finite"), [(float("nan"), True), (float("inf"), True), (1.0, False)]
)
def test_weights_not_finite_on_any_process_are_never_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: float, other_finite: bool
) -> None:
    """One weight of six that is NaN or infinite here, or weights that are not finite on the
    other process: no process saves, the last good checkpoint stays, a warning names it."""
    folder = tmp_path / "phase1"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"the last good one")
    callback = AtomicCheckpoint(folder, every_n_train_steps=1)
    trainer = _Trainer(step=5, other_finite=other_finite)
    with caplog.at_level(logging.WARNING, logger="torchlap.train.checkpoint"):
        callback.on_train_batch_end(trainer, _module(value), None, None, 0)
    assert trainer.saves == [] and trainer.strategy.barriers == []
    assert (folder / "last.ckpt").read_bytes() == b"the last good one"
    assert (
        f"not saving a checkpoint at step 5: some weights are not finite; the last good "
        f"checkpoint stays in {folder / 'last.ckpt'}"
    ) in caplog.text


def test_a_process_other_than_rank_zero_joins_the_save_and_writes_nothing(tmp_path: Path):
    """``save_checkpoint`` is collective: every process calls it with the same options (only
    rank 0 writes); no other process makes the folder or records a digest."""
    run_dir = fake_run_folder(tmp_path / "run")
    before = (run_dir / "config.json").read_bytes()
    folder = run_dir / "checkpoints" / "phase1"
    callback = AtomicCheckpoint(folder, run_dir=run_dir)
    trainer = _Trainer(step=4, rank_zero=False)
    callback.on_train_epoch_end(trainer, _module())
    assert trainer.saves == [(str(folder / "last.ckpt"), False, 0)]
    assert trainer.strategy.barriers == ["AtomicCheckpoint.save"]
    assert not folder.exists() and (run_dir / "config.json").read_bytes() == before


def test_each_save_records_the_checkpoints_digest_and_the_previous_one(tmp_path: Path) -> None:
    run_dir = fake_run_folder(tmp_path / "run")
    callback = AtomicCheckpoint(run_dir / "checkpoints" / "phase1", run_dir=run_dir)
    digests = []
    for step in (4, 8):
        callback.on_train_epoch_end(_Trainer(step), _module())
        digests.append(hashlib.sha256(f"checkpoint of step {step}".encode()).hexdigest())
    record = json.loads((run_dir / "config.json").read_text())["integrity"]
    assert record == {
        "checkpoints/phase1/last.ckpt": {"sha256": digests[1], "previous": digests[0]}
    }
