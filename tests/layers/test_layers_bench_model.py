"""``torchlap bench model``: multiply-adds counted, not estimated; the table's ratios."""

import pytest
import torch
from torch import nn

from torchlap.bench.model import (
    ModelBenchRow,
    count_multiply_adds,
    format_model_rows,
    run_model_bench,
)


def test_multiply_adds_of_a_convolution_and_a_linear_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(64, 5))
    x = torch.randn(2, 3, 4, 4)
    # conv: 2 images * 4 out channels * 16 pixels * (3 * 3 * 3) taps; linear: 2 * 64 * 5
    expected = 2 * 4 * 16 * 27 + 2 * 64 * 5
    with torch.no_grad():
        assert count_multiply_adds(model, x) == expected
    # forward + backward (input and weight gradients of both layers): three times the forward
    assert count_multiply_adds(lambda: model(x.requires_grad_()).sum().backward()) == 3 * expected


def test_rows_report_ratios_and_validate_inputs():
    row = ModelBenchRow(
        "resnet18", "resnet18", 224, 2, (10.0, 13.0), (30.0, 42.0), (2.0, 2.6), (6.0, 7.8)
    )
    assert row.forward_time_ratio == pytest.approx(1.3)
    assert row.train_mac_ratio == pytest.approx(1.3)
    table = format_model_rows([row])
    assert "| 1.30 |" in table and "1.00, 1.08" in table
    with pytest.raises(ValueError, match="unknown architecture"):
        run_model_bench(("vgg11",))
    with pytest.raises(ValueError, match="size must be >= 75"):
        run_model_bench(("resnet18",), size=32)


@pytest.mark.slow
def test_lapified_resnet18_counts_more_multiply_adds_than_its_twin():
    (row,) = run_model_bench(("resnet18",), size=75, batch=1, repeats=1, rounds=1)
    # the strided convolutions of blocks 2-4 run at stride 1 in the lapified model
    assert 1.1 < row.forward_mac_ratio < 1.6 and 1.1 < row.train_mac_ratio < 1.6
    assert row.forward_ms[0] > 0 and row.train_ms[1] > 0


def test_layer_benchmark_leaves_stderr_quiet(capfd):
    """No profiler or allocator warning on stderr (the allocator warns when a block allocated
    before the memory profiler started is freed under it)."""
    from torchlap.bench.layer import run_layer_benchmark

    capfd.readouterr()
    run_layer_benchmark([("t", (2, 4, 6, 6), 3, 2, 1)], repeats=1, rounds=1, batches=(2, 1))
    err = capfd.readouterr().err
    assert "CPUAllocator" not in err and "profiler" not in err.lower(), err
