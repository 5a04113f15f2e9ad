"""The caller's process state around a training run.

A run seeds the process for its own reproducibility: Lightning's ``seed_everything`` seeds
torch's, numpy's and Python's generators and sets ``PL_GLOBAL_SEED`` and ``PL_SEED_WORKERS``
in the environment, and every training batch re-seeds torch (``derive_seed``).
:func:`callers_random_state` hands all of it back as it was when :func:`~torchlap.train.fit`
returns or raises, so that a script calling ``fit`` draws the same numbers afterwards as
without it, and a Lightning run it starts later is not seeded by torchlap's environment.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["LIGHTNING_SEED_VARIABLES", "callers_random_state"]

#: the environment variables Lightning's ``seed_everything`` sets
LIGHTNING_SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextmanager
def callers_random_state() -> Iterator[None]:
    """Within the block the run may seed what it likes; afterwards (also on error, or on a
    KeyboardInterrupt) torch's CPU generator, numpy's and Python's global generators and the
    variables :data:`LIGHTNING_SEED_VARIABLES` are as they were. The CUDA generators are not
    read: reading them would open a context on every visible GPU, from every process of a
    distributed run."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    environment = {name: os.environ.get(name) for name in LIGHTNING_SEED_VARIABLES}
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
