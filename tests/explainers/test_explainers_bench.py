"""The ``explain`` benchmark: one tiny run through the library function and the CLI."""

from torch import nn
from typer.testing import CliRunner

from torchlap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d
from torchlap.bench.explain import format_table, run_benchmark
from torchlap.cli import app


def test_run_benchmark_times_every_method_against_lap():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(4, 2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        AdaptiveLocalAttentionPool2d(4, 1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    options = {"rise_masks": 3, "repeats": 1, "rounds": 1, "model": model}
    rows, how = run_benchmark(sizes=(16,), batch_size=2, methods=["gradcam", "rise"], **options)
    assert "Sequential" in how
    assert [r.method for r in rows] == ["lap", "gradcam", "rise"]
    lap, gradcam, rise = rows
    assert lap.ratio_to_lap == 1.0
    assert lap.forwards_per_image == 1.0 and lap.backwards_per_image == 0.0
    assert gradcam.forwards_per_image == 1.0 and gradcam.backwards_per_image == 1.0
    assert rise.forwards_per_image == 4.0  # 3 masks + the forward that finds the prediction
    assert all(r.seconds > 0 and r.images_per_second > 0 for r in rows)
    table = format_table(rows)
    assert "x lap" in table and "rise" in table


def test_cli_command():
    options = "--sizes 32 --batch-size 1 --methods lap --repeats 1 --rounds 1 --num-classes 3"
    result = CliRunner().invoke(app, ["bench", "explain", *options.split()])
    assert result.exit_code == 0, result.output
    assert "img/s" in result.output and "lap" in result.output
    assert "lapify" in result.output  # the LAP-ResNet18 comes from torchlap.lapify
    bad = CliRunner().invoke(app, ["bench", "explain", "--methods", "nope", "--sizes", "32"])
    assert bad.exit_code != 0
    assert "unknown explainer" in bad.output
