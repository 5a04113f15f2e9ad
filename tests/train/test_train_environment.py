"""metrics.json records what besides the configuration decides a run's numbers (threads,
versions, accelerator, precision, LAP's pooling path), and torchlap train logs it."""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import pytest
import torch
from train_configs import tiny_config

import torchlap
from torchlap.environment import run_environment
from torchlap.train import fit
from torchlap.train.run import _execution


@pytest.fixture
def two_threads():
    """torch's intra-op thread count set to 2 for the test, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield 2
    finally:
        torch.set_num_threads(before)


def test_metrics_json_records_the_environment(
    tmp_path: Path, two_threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="torchlap.train.run"):
        out = fit(tiny_config(tmp_path / "run", n_images=24))
    environment = json.loads((out / "metrics.json").read_text())["environment"]
    assert environment["threads"] == two_threads
    assert environment["torch"] == torch.__version__
    assert environment["torchlap"] == torchlap.__version__
    assert environment["python"] == platform.python_version()
    assert environment["accelerator"] == "cpu" and environment["precision"] == "32-true"
    assert environment["deterministic_algorithms"] is False
    assert environment["lap_pooling"].startswith(("compiled CPU kernel", "pure PyTorch"))
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("environment")]
    assert len(logged) == 1 and "'threads': 2" in logged[0]


def test_environment_follows_the_thread_count_and_the_deterministic_flag() -> None:
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        environment = run_environment()
        assert environment["threads"] == 1 and environment["deterministic_algorithms"] is True
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


def test_lap_pooling_path_off_the_cpu_is_pure_pytorch() -> None:
    assert run_environment("cuda", "16-mixed")["lap_pooling"].startswith("pure PyTorch")
    assert run_environment("cuda", "16-mixed")["precision"] == "16-mixed"


@pytest.mark.parametrize("bad", ["", None, 3])
def test_environment_refuses_a_name_that_is_no_string(bad: object) -> None:
    with pytest.raises(ValueError, match="accelerator must be a non-empty string"):
        run_environment(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision must be a non-empty string"):
        run_environment("cpu", bad)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="resolves 'auto' on a CPU-only machine")
@pytest.mark.parametrize(
    ("accelerator", "precision", "expected"),
    [
        ("cpu", "auto", ("cpu", "32-true")),
        ("gpu", "auto", ("cuda", "16-mixed")),
        ("cuda", "bf16-mixed", ("cuda", "bf16-mixed")),
        ("cpu", "bf16-mixed", ("cpu", "bf16-mixed")),
    ],
)
def test_execution_resolves_auto(
    tmp_path: Path, accelerator: str, precision: str, expected: tuple[str, str]
) -> None:
    config = tiny_config(tmp_path, accelerator=accelerator, precision=precision)
    assert _execution(config) == expected


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(),
    reason="'auto' means the CPU only where no accelerator is available",
)
def test_execution_auto_on_a_cpu_only_machine_is_the_cpu(tmp_path: Path) -> None:
    assert _execution(tiny_config(tmp_path, accelerator="auto")) == ("cpu", "32-true")
