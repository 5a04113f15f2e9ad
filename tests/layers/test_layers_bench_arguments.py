"""`torchlap bench ...` argument handling: refused before any model is built or line printed."""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from torchlap.cli import app


def _invoke(*args: str):
    return CliRunner().invoke(app, ["bench", *args])


def test_bench_explain_help_example_is_a_real_command() -> None:
    """The help showed `--scale 0.5`, which bench explain does not take."""
    result = _invoke("explain", "--help")
    assert result.exit_code == 0
    assert "--scale 0.5" not in result.output
    assert "bench explain --sizes 64 --methods lap,gradcam" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--precision", "magic"), "unknown precision 'magic'"),  # without --against too
        (("--sizes", ""), "--sizes lists no size"),
        (("--sizes", ","), "--sizes lists no size"),
        (("--against", ","), "--against lists no name"),
        (("--against", "magic"), "unknown --against peer(s) ['magic']"),
        (("--methods", ","), "--methods lists no name"),
        (("--methods", "magic"), "unknown explainer 'magic'"),
        # a C++ allocator stack (exit 1) before; ignored without a word before
        (("--sizes", "99999"), "--sizes must each be from 8 to 8192 pixels, got '99999'"),
        (("--batch-size", "5000"), "--batch-size must be from 1 to 4096, got 5000"),
        (("--rise-vs-sise", "--methods", "gradcam"), "--methods is not used with --rise-vs-sise"),
        (("--against", "torchcam", "--methods", "lap"), "--methods is not used with --against"),
        (
            ("--precision", "bfloat16", "--methods", "gradcam,lap"),
            "--precision bfloat16 sets the masked forwards of scorecam, rise, sise, and "
            "--methods lists none of them",
        ),
    ],
)
def test_bench_explain_refuses_bad_arguments_before_printing(args, message) -> None:
    result = _invoke("explain", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "images/s" not in result.output and "batch 16" not in result.output  # no header


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--archs", ","), "--archs lists no architecture"),
        (("--rounds", "0"), "--rounds must be >= 1, got 0"),
        (("--repeats", "0"), "--repeats must be >= 1, got 0"),
        # a C++ allocator stack (exit 1) before
        (("--size", "100000"), "--size must be from 75 (Inception-v3's smallest) to 8192"),
        (("--batch-size", "5000"), "--batch-size must be from 1 to 4096, got 5000"),
    ],
)
def test_bench_model_refuses_bad_arguments(args, message) -> None:
    result = _invoke("model", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize("batches", ["99999999999999999999999", "4097", "32,0", ","])
def test_bench_layer_bounds_the_batches(batches) -> None:
    """A huge batch printed a C++ stack from the allocator."""
    result = _invoke("layer", "--batches", batches)
    assert result.exit_code == 2, result.output
    assert "--batches must be ints from 1 to 4096" in " ".join(result.output.split())


def test_benchmarks_restore_the_callers_train_flags_also_on_error() -> None:
    from torchlap.bench.common import keeps_model_flags
    from torchlap.bench.explain import run_benchmark
    from torchlap.bench.explain_peers import run_rise_vs_sise, run_scorecam_against

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model.train()
    model[1].eval()
    seen = []

    @keeps_model_flags
    def failing(images: torch.Tensor, model: torch.nn.Module) -> None:
        seen.append([m.training for m in model.modules()])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing(torch.zeros(1), model=model)
    assert seen == [[False, False, False]]
    assert [m.training for m in model.modules()] == [True, True, False]
    for function in (run_benchmark, run_scorecam_against, run_rise_vs_sise):
        assert getattr(function, "__wrapped__", None) is not None, function.__name__


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "--methods", "lap,lap", "--sizes", "16"], "--methods lists lap more"),
        (["explain", "--sizes", "32,32"], "--sizes lists 32 more than once"),
        (["model", "--archs", "resnet18,resnet18"], "--archs lists resnet18 more than once"),
        (["layer", "--batches", "1,1"], "--batches lists 1 more than once"),
    ],
)
def test_bench_refuses_repeated_values(args, message) -> None:
    """Before: the work was repeated and its row printed twice."""
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


class _StopError(RuntimeError):
    pass


def _stop(*args: object, **kwargs: object) -> None:
    raise _StopError("stopped after the benchmark seeded torch")


def test_benchmarks_hand_back_the_callers_random_state(monkeypatch) -> None:
    """Before: run_benchmark, run_comparisons and run_model_bench re-seeded torch's global
    generator with their ``seed`` for good (a caller's next torch.rand was the benchmark's)."""
    from torchlap import AdaptiveLocalAttentionPool2d
    from torchlap.bench import explain, model

    torch.manual_seed(1234)
    tiny = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        AdaptiveLocalAttentionPool2d(4, 1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    state = torch.get_rng_state()
    rows, _ = explain.run_benchmark(
        sizes=(8,), batch_size=1, methods=["lap"], repeats=1, rounds=1, model=tiny
    )
    assert len(rows) == 1
    assert torch.equal(torch.get_rng_state(), state)
    monkeypatch.setattr(explain, "build_lap_resnet18", _stop)
    with pytest.raises(_StopError):
        explain.run_comparisons("grad-cam", False, 8, 1, 4, 4, "cpu", "float32", seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    monkeypatch.setattr(model, "_build", _stop)
    with pytest.raises(_StopError):
        model.run_model_bench(archs=("resnet18",), size=75, batch=1, repeats=1, rounds=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_peak_memory_leaves_the_environment_as_it_was(monkeypatch) -> None:
    """Before: measuring CPU memory set KINETO_LOG_LEVEL=6 in the caller's environment for
    good (every process it started later inherited it); a user's own value is kept."""
    from torchlap.bench.common import peak_memory_bytes

    monkeypatch.delenv("KINETO_LOG_LEVEL", raising=False)
    assert peak_memory_bytes(lambda: torch.ones(64, 64) * 2, torch.device("cpu")) > 0
    assert "KINETO_LOG_LEVEL" not in os.environ
    with pytest.raises(_StopError):
        peak_memory_bytes(_stop, torch.device("cpu"))
    assert "KINETO_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("KINETO_LOG_LEVEL", "3")
    peak_memory_bytes(lambda: torch.ones(8), torch.device("cpu"))
    assert os.environ["KINETO_LOG_LEVEL"] == "3"
