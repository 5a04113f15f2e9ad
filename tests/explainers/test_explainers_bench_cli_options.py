"""``torchlap bench explain``'s options with the runs faked: the defaults handed on, which run
each option choice starts, the bounds and refusals (exit 2, before any output)."""

import pytest
from typer.testing import CliRunner

from torchlap.bench import explain
from torchlap.bench.explain import TABLE_HEADER, BenchRow, format_row
from torchlap.cli import app

TOO_MANY_MASKS = "10000000"  # RISE's 7x7 grids of that many masks: above 2**28 cells


class FakeRuns:
    """Records the calls of ``run_benchmark`` and ``run_comparisons``; ``error``: raised."""

    def __init__(self, monkeypatch, error: Exception | None = None) -> None:
        self.calls, self.error = [], error
        monkeypatch.setattr(explain, "run_benchmark", self.run_benchmark)
        monkeypatch.setattr(explain, "run_comparisons", self.run_comparisons)

    def run_benchmark(self, *args, on_row, **kwargs):
        self.calls.append(("benchmark", args, kwargs))
        if self.error:
            raise self.error
        on_row(BenchRow(args[0][0], "lap", 0.25, args[1], 1.0, 0.0, 1.0))
        return [], "fake model"

    def run_comparisons(self, *args, **kwargs):
        self.calls.append(("comparisons", args, kwargs))
        if self.error:
            raise self.error
        return "COMPARED"


def bench(*args: str):
    return CliRunner().invoke(app, ["bench", "explain", *args])


def test_the_defaults_reach_the_benchmark_and_the_table_is_printed(monkeypatch):
    runs = FakeRuns(monkeypatch)
    result = bench()
    assert result.exit_code == 0, result.output
    assert runs.calls == [
        (
            "benchmark",
            ([224, 64], 16, None, 4000, 64, 3, "cpu", 1000),
            {"rounds": 2, "precision": "float32"},
        )
    ]
    row = format_row(BenchRow(224, "lap", 0.25, 16, 1.0, 0.0, 1.0))
    assert result.output.splitlines() == [
        "batch 16; device cpu; RISE masks 4000",
        TABLE_HEADER,
        "-" * len(TABLE_HEADER),
        row,
        "model: fake model",
    ]


def test_against_and_rise_vs_sise_run_the_comparisons_on_the_first_size(monkeypatch):
    runs = FakeRuns(monkeypatch)
    options = "--sizes 32,16 --batch-size 2 --rise-masks 50 --mask-batch-size 5 --rounds 3"
    result = bench(*options.split(), "--against", "grad-cam", "--precision", "bfloat16")
    assert result.exit_code == 0, result.output
    assert result.output == "COMPARED\n"
    expected = (("grad-cam", False, 32, 2, 50, 5, "cpu", "bfloat16"), {"rounds": 3})
    assert runs.calls == [("comparisons", *expected)]
    result = bench("--rise-vs-sise", "--sizes", "16")
    assert result.exit_code == 0, result.output
    assert runs.calls[1] == (  # RISE's masks: the SISE paper's "around 8000"
        "comparisons",
        ("", True, 16, 16, 8000, 64, "cpu", "float32"),
        {"rounds": 2},
    )
    result = bench("--rise-vs-sise", "--against", "torchcam", "--rise-masks", "300")
    assert result.exit_code == 0, result.output
    assert runs.calls[2][1][:5] == ("torchcam", True, 224, 16, 300)  # the user's count wins
    result = bench("--against", "torchcam")
    assert result.exit_code == 0, result.output
    assert runs.calls[3][1][4] == 4000  # (no RISE runs: the table's default)


@pytest.mark.parametrize("args", [["--against", "torchcam"], ["--methods", "lap"]])
def test_a_run_refusing_its_arguments_exits_2(monkeypatch, args):
    FakeRuns(monkeypatch, ValueError("the run refused this"))
    result = bench("--sizes", "16", *args)
    assert result.exit_code == 2, result.output
    assert "the run refused this" in result.output


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        ([], True),  # every method, so RISE too
        (["--methods", "gradcam,rise"], True),
        (["--rise-vs-sise"], True),
        (["--rise-vs-sise", "--against", "grad-cam"], True),
        (["--methods", "gradcam"], False),  # RISE not run: its mask count unused
        (["--against", "grad-cam"], False),
    ],
)
def test_rise_masks_are_checked_when_rise_runs(monkeypatch, args, refused):
    runs = FakeRuns(monkeypatch)
    result = bench("--sizes", "16", "--rise-masks", TOO_MANY_MASKS, *args)
    if refused:
        assert result.exit_code == 2, result.output
        assert "--rise-masks: n_masks 10000000" in " ".join(result.output.split())
        assert runs.calls == [] and "batch" not in result.output
    else:
        assert result.exit_code == 0, result.output
        assert len(runs.calls) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--precision", "bfloat16"],  # every method: scorecam, rise and sise among them
        ["--precision", "float16", "--methods", "gradcam,sise"],
        ["--precision", "bfloat16", "--rise-vs-sise"],
        ["--precision", "bfloat16", "--against", "torchcam"],
        ["--precision", "float32", "--methods", "gradcam"],
    ],
)
def test_precision_is_taken_where_masked_forwards_run(monkeypatch, args):
    runs = FakeRuns(monkeypatch)
    result = bench("--sizes", "16", *args)
    assert result.exit_code == 0, result.output
    assert len(runs.calls) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--sizes", "8,8192"],
        ["--batch-size", "4096"],
        ["--num-classes", "2"],
        ["--num-classes", "100000"],
        *[[option, "1"] for option in ("--batch-size", "--rise-masks", "--mask-batch-size")],
        *[[option, "1"] for option in ("--repeats", "--rounds")],
    ],
)
def test_bounds_are_inclusive(monkeypatch, args):
    runs = FakeRuns(monkeypatch)
    result = bench(*args)
    assert result.exit_code == 0, result.output
    assert len(runs.calls) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "7"], "--sizes must each be from 8 to 8192 pixels, got '7'"),
        (["--sizes", "16,8193"], "--sizes must each be from 8 to 8192 pixels"),
        (["--sizes", "16,x"], "--sizes must be comma-separated ints, got '16,x'"),
        (["--sizes", "16,,32"], "--sizes '16,,32' has an empty name"),
        (["--batch-size", "4097"], "--batch-size must be from 1 to 4096, got 4097"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--rise-masks", "0"], "--rise-masks must be >= 1, got 0"),
        (["--mask-batch-size", "0"], "--mask-batch-size must be >= 1, got 0"),
        (["--repeats", "0"], "--repeats must be >= 1, got 0"),
        (["--rounds", "-1"], "--rounds must be >= 1, got -1"),
        (["--num-classes", "1"], "--num-classes must be >= 2 and <= 100000"),
        (["--num-classes", "100001"], "got 100001"),
        (["--device", "tpu"], "--device 'tpu' is not a device"),
        (["--methods", "lap,,gradcam"], "--methods 'lap,,gradcam' has an empty name"),
        (["--against", "grad-cam,torchcam,grad-cam"], "--against lists grad-cam more"),
        (["--against", "torchcam,captum"], "unknown --against peer(s) ['captum']"),
        (["--methods", "gradcam,nope,magic"], "unknown explainer 'nope', 'magic'; available:"),
        (["--precision", "bfloat16", "--methods", "gradcam"], "--precision bfloat16 sets"),
        (["--precision", "half", "--against", "grad-cam"], "unknown precision 'half'"),
        (["--against", "torchcam", "--rise-vs-sise", "--methods", "lap"], "with --against"),
    ],
)
def test_bad_arguments_are_refused_before_any_run(monkeypatch, args, message):
    runs = FakeRuns(monkeypatch)
    result = bench(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert runs.calls == []
