"""What besides the configuration decides a run's numbers: the software and the CPU threads.

PyTorch's CPU kernels (convolutions, reductions) split their sums over the intra-op threads,
so the order of the additions, and with it the last bits of every gradient, depends on the
thread count. Training amplifies those bits: the same command and seed give identical runs
with the same thread count and different ones with another (measured on the built-in
``concepts`` data, one epoch of a weakly supervised LAP network: training loss 9.4607 with one
thread, twice, and 9.4385 with two). ``metrics.json`` therefore records this environment
next to the results, and ``torchlap train`` logs it, so that a run can be repeated bit for bit
(``OMP_NUM_THREADS`` or :func:`torch.set_num_threads`). An evaluation's ``results.json``
records it too, with the number of processes that shared its images.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from torchlap import __version__
from torchlap._ext import pooling_path

__all__ = ["run_environment"]


def run_environment(accelerator: str = "cpu", precision: str = "32-true") -> dict[str, Any]:
    """The software and threads a run trains or is evaluated with, as a JSON-ready dict:
    ``torchlap``, ``torch`` and ``python`` versions, ``threads`` (intra-op CPU threads of this
    process), ``accelerator`` and ``precision`` (Lightning's names, as the run resolved them),
    the path LAP's windowed pooling takes there (``lap_pooling``: the compiled CPU kernel or
    pure PyTorch) and ``deterministic_algorithms`` (:func:`torch.use_deterministic_algorithms`)."""
    for name, value in (("accelerator", accelerator), ("precision", precision)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string such as 'cpu', got {value!r}")
    return {
        "torchlap": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "accelerator": accelerator,
        "precision": precision,
        "lap_pooling": pooling_path(accelerator),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
