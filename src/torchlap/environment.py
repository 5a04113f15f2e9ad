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

``torchlap env`` (:func:`describe_environment`) prints the same facts for a bug report, with the
installed versions of every requirement and the ``TORCHLAP_*`` switches that are set.
"""

from __future__ import annotations

import json
import os
import platform
import re
from importlib import metadata
from typing import Any

import torch
import typer

from torchlap import __version__
from torchlap._ext import cache_dir, pooling_path

__all__ = ["describe_environment", "installed_requirements", "register_env", "run_environment"]

#: the environment variables that change what torchlap computes, how fast, or what it shows
#: (each read by the module that owns it; ``torchlap env`` lists those that are set)
SWITCHES = (
    "TORCHLAP_NO_EXT",  # _ext: the compiled kernels off
    "TORCHLAP_FUSED_LAYER",  # layers.fused: 0 turns the fused layer off
    "TORCHLAP_LAP_WINDOWS",  # _ext: the window-sum layout, phases or tiles
    "TORCHLAP_EXT_VECTOR_BYTES",  # _ext: 32 or 64-byte vectors
    "TORCHLAP_EXT_DIR",  # _ext: where the built kernels are cached
    "TORCHLAP_KEEP_FREED_MEMORY",  # allocator: 0 gives freed memory back to the system
    "TORCHLAP_DEBUG",  # cli: tracebacks instead of one-line errors
    "OMP_NUM_THREADS",  # PyTorch's and the kernels' CPU threads
    "CUDA_VISIBLE_DEVICES",
)


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


def installed_requirements() -> dict[str, str | None]:
    """Every package torchlap requires or offers as an extra (read from its installed package
    metadata, so pyproject.toml stays their one list) -> its installed version, or None when it
    is not installed; ``{}`` when torchlap itself was not installed with pip."""
    try:
        requirements = metadata.requires("torchlap") or []
    except metadata.PackageNotFoundError:
        return {}
    found: dict[str, str | None] = {}
    for requirement in requirements:
        name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
        if name in found:
            continue
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def describe_environment() -> dict[str, Any]:
    """What a bug report needs, as a JSON-ready dict: versions, platform and CPU threads, the
    accelerators PyTorch sees, the path LAP takes on the CPU and on a GPU (the compiled kernel is
    built here if it is not cached yet), the kernel cache, the :data:`SWITCHES` that are set and
    the installed versions of torchlap's requirements and extras."""
    cuda = torch.cuda.is_available()
    return {
        "torchlap": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "lap_pooling": {"cpu": pooling_path("cpu"), "cuda": pooling_path("cuda")},
        "kernel_cache": str(cache_dir()),
        "switches": {name: os.environ[name] for name in SWITCHES if name in os.environ},
        "packages": installed_requirements(),
    }


def _lines(facts: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in facts.items():
        if isinstance(value, dict):
            shown = {k: "not installed" if v is None else v for k, v in value.items()}
            lines.append(f"{key}:" if shown else f"{key}: none")
            lines += [f"  {k}: {v}" for k, v in shown.items()]
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(map(str, value)) or 'none'}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def register_env(app: typer.Typer) -> None:
    """Add ``torchlap env`` to the ``torchlap`` command."""

    @app.command("env")
    def env_command(
        as_json: bool = typer.Option(False, "--json", help="One JSON object instead of lines."),
    ) -> None:
        """Print versions, threads, accelerators and the path LAP takes: what a bug report needs.

        Lists the installed versions of torchlap's requirements and extras, the `TORCHLAP_*`
        switches that are set, and where the compiled CPU kernel is cached (it is built now if
        it is not).

        Example: `torchlap env --json > environment.json`

        Cost: 2-3 s on a 2-core CPU (importing PyTorch; building the kernel, about a second,
        happens once per machine and source).
        """
        facts = describe_environment()
        typer.echo(json.dumps(facts, indent=2) if as_json else "\n".join(_lines(facts)))
