"""``AtomicCheckpoint``: the resume checkpoints of a run (``checkpoints/phaseN/last.ckpt``).

Lightning's ``ModelCheckpoint`` writes the file in place, so a run killed while saving can leave
a truncated ``last.ckpt``; it also cannot save both every N steps and at every epoch end. This
callback does both and writes through a temporary file + ``os.replace``. It never saves weights
that are not finite, so after a NaN the folder keeps the last good checkpoint.

Checkpoints are Lightning's files: ``--resume`` loads them with ``weights_only=True``
(tensors and plain values; a checkpoint holding other objects is refused, never unpickled);
``torchlap.load_run`` reads the safetensors weights instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from torchlap._checks import is_int
from torchlap.runs import atomic_path, record_integrity, sha256_file

__all__ = ["AtomicCheckpoint"]

logger = logging.getLogger(__name__)


class AtomicCheckpoint(Checkpoint):
    """Save ``dirpath/last.ckpt`` at every epoch end and every ``every_n_train_steps`` steps.

    A checkpoint callback (subclass of Lightning's ``Checkpoint``) runs after the
    LightningModule's ``on_train_epoch_end``, so the epoch's metrics are in the saved history.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        every_n_train_steps: int | None = None,
        run_dir: str | os.PathLike[str] | None = None,
    ):
        """``run_dir``: the run folder whose config.json records each checkpoint's SHA-256."""
        super().__init__()
        if every_n_train_steps is not None:
            message = (
                f"every_n_train_steps must be None or an int >= 1, got {every_n_train_steps!r}"
            )
            if not is_int(every_n_train_steps):
                raise TypeError(message)
            if every_n_train_steps < 1:
                raise ValueError(message)
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self.run_dir = None if run_dir is None else Path(run_dir)

    @property
    def last_path(self) -> Path:
        """Where the checkpoint is written."""
        return self.dirpath / "last.ckpt"

    @property
    def state_key(self) -> str:
        """Lightning's key of this callback's state: one per run folder."""
        return f"AtomicCheckpoint[{self.dirpath.name}]"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        """Save every ``every_n_train_steps`` optimizer steps (mid-epoch checkpoints)."""
        n = self.every_n_train_steps
        if n and trainer.global_step > 0 and trainer.global_step % n == 0:
            self.save(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save at the end of every epoch."""
        self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the checkpoint atomically, unless some weight is NaN or infinite."""
        finite = all(bool(torch.isfinite(p).all()) for p in pl_module.parameters())
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            logger.warning(
                "not saving a checkpoint at step %d: some weights are not finite; the last good "
                "checkpoint stays in %s",
                trainer.global_step,
                self.last_path,
            )
            return
        if trainer.is_global_zero:  # (atomic_path makes the folder)
            with atomic_path(self.last_path) as tmp:
                trainer.save_checkpoint(str(tmp), weights_only=False)  # collective
                if self.run_dir is not None:  # digest recorded before the rename
                    record_integrity(self.run_dir, self.last_path, sha256_file(tmp))
        else:
            trainer.save_checkpoint(str(self.last_path), weights_only=False)  # rank 0 writes
        trainer.strategy.barrier("AtomicCheckpoint.save")
