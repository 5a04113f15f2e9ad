"""The layer benchmark runs and reports sensible ratios on tiny shapes."""

import torch

from torchlap.layers.bench import format_rows, run_layer_benchmark


def test_layer_benchmark_rows():
    shapes = [((2, 8, 8, 8), 2, 2, 0), ((2, 8, 9, 9), 3, 2, 1), ((2, 16, 3, 3), None, None, 0)]
    rows = run_layer_benchmark(shapes, device="cpu", repeats=1)
    assert [r.op for r in rows] == ["k2 s2 p0", "k3 s2 p1", "adaptive 1x1"]
    for row in rows:
        assert row.lap_ms > 0 and row.avg_ms > 0
        assert torch.isfinite(torch.tensor(row.extra_peak_input_copies))
    table = format_rows(rows)
    assert table.count("\n") == 4 and "LAP/avg" in table
