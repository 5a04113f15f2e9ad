"""``fit`` hands the caller's random state and environment back, on every exit path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from train_configs import tiny_config

import torchlap.train.module as module_file
from torchlap.train import fit
from torchlap.train.process import LIGHTNING_SEED_VARIABLES


def _state() -> tuple:
    return (
        torch.get_rng_state(),
        random.getstate(),
        np.random.get_state()[1].tolist(),
        {name: os.environ.get(name) for name in LIGHTNING_SEED_VARIABLES},
    )


def _assert_same(before: tuple, after: tuple) -> None:
    assert torch.equal(before[0], after[0]), "torch's global random state changed"
    assert before[1] == after[1], "Python's random state changed"
    assert before[2] == after[2], "numpy's random state changed"
    assert before[3] == after[3], "the environment changed"


@pytest.mark.parametrize("interrupt", [False, True])
def test_fit_gives_back_the_callers_random_state_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt: bool
) -> None:
    """Before: after fit, torch's, numpy's and Python's generators were seeded by the run (its
    last training batch's seed), and PL_GLOBAL_SEED / PL_SEED_WORKERS stayed in the
    environment, where they seeded the caller's own later Lightning runs."""
    monkeypatch.setenv("PL_SEED_WORKERS", "0")  # a caller's own value comes back
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    if interrupt:
        real = module_file.ClassifierModule.training_step

        def interrupted(self, batch, batch_idx):
            if batch_idx == 1:
                raise KeyboardInterrupt  # a Ctrl-C during the second batch
            return real(self, batch, batch_idx)

        monkeypatch.setattr(module_file.ClassifierModule, "training_step", interrupted)
    before = _state()
    config = tiny_config(tmp_path / "run", n_images=40, batch_size=8)
    if interrupt:
        # Lightning stops the run on a Ctrl-C and exits (SystemExit) from its trainer
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            fit(config)
    else:
        fit(config)
    _assert_same(before, _state())
