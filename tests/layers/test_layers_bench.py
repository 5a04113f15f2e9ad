"""The layer benchmark runs and reports sensible ratios on tiny shapes."""

import math

import pytest
import torch

import torchlap._ext as ext
from torchlap.bench.layer import (
    LayerBenchRow,
    empty_layer,
    format_rows,
    kernel_replay,
    lap_multiply_adds,
    run_layer_benchmark,
    summary,
)
from torchlap.layers.lap import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d

needs_kernels = pytest.mark.skipif(ext.lap_kernels() is None, reason="no C compiler")


def test_layer_benchmark_rows():
    shapes = [((2, 8, 8, 8), 2, 2, 0), ((2, 8, 9, 9), 3, 2, 1), ((2, 16, 3, 3), None, None, 0)]
    rows = run_layer_benchmark(shapes, device="cpu", repeats=1)
    assert [r.op for r in rows] == ["k2 s2 p0", "k3 s2 p1", "adaptive 1x1"]
    for row in rows:
        assert row.lap_ms > 0 and row.avg_ms > 0
        assert row.scorer_ms > 0 and row.scorer_ratio_avg == row.scorer_ms / row.avg_ms
        assert torch.isfinite(torch.tensor(row.extra_peak_input_copies))
        assert row.multiply_adds > 0 and row.gemm_ms_per_gmac > 0 and row.autograd_floor_ms > 0
        assert row.fma_floor_ratio_avg == row.fma_floor_ms / row.avg_ms > 0
        assert row.autograd_floor_ratio_max == row.autograd_floor_ms / row.max_ms
        if ext.lap_kernels() is not None:  # the fused layer ran: its kernels alone, timed
            assert row.kernels_ms > 0 and row.kernels_ratio_avg == row.kernels_ms / row.avg_ms
    table = format_rows(rows)
    assert table.count("\n") == 4 and "LAP/avg" in table and "scorer alone/avg" in table
    assert "FMA floor/avg" in table and "autograd floor/max" in table
    assert "kernels alone ms | kernels alone/avg" in table
    assert all(line.count("|") == 16 for line in table.splitlines())


def test_rows_without_the_fused_layer_show_no_kernel_time():
    row = LayerBenchRow((1, 4, 4, 4), "k2 s2 p0", "here", 1.0, 2.0, 3.0, 3.0, 1.5, 0.1, 0.5)
    assert math.isnan(row.kernels_ratio_avg)
    assert "| 0.10 | - | - | 0.50 |" in format_rows([row])


def test_summary_counts_the_missed_shapes_and_those_the_scorer_alone_misses():
    def row(lap_ms, scorer_ms):
        return LayerBenchRow(
            (1, 4, 4, 4), "k2 s2 p0", "here", 1.0, 2.0, lap_ms, lap_ms, lap_ms / 2, 0.1, scorer_ms
        )

    text = summary([row(1.2, 0.5), row(2.0, 0.5), row(3.0, 1.6)])
    assert "worst LAP/avg 3.00" in text
    assert "above 1.5 at 2 of 3 shapes, at 1 of them the scorer alone" in text


def test_summary_states_what_the_floors_say_about_the_missed_targets():
    def row(lap_ms, max_ms, macs, floor_ms):
        # avg 1 ms; the matrix product at 1 ms per GMAC
        return LayerBenchRow(
            (1, 4, 4, 4), "k2 s2 p0", "", 1.0, max_ms, lap_ms, lap_ms, lap_ms / max_ms, 0.1,
            0.5, macs, 1.0, floor_ms,
        )  # fmt: skip

    # LAP/avg 2 and 3 with FMA floors of 1.2 and 0.6 ms; LAP/max 2, 3 and 1.1 (within target)
    text = summary([row(2.0, 1.0, 1.2e9, 1.3), row(3.0, 1.0, 0.6e9, 0.5), row(1.1, 1.0, 1e9, 0.1)])
    assert "the target asks LAP's multiply-adds to run at 40-80% of the rate" in text
    assert "(LAP runs them at 20-60%; FMA floor/avg 0.60-1.20)" in text
    assert "LAP/max above 1.2 at 2 of 3 shapes; at 1 of them an autograd function" in text
    assert "(autograd floor/max 0.50-1.30)" in text
    # every target met: no floor lines
    assert "\n" not in summary([row(1.1, 1.0, 1e9, 0.1)])


def test_summary_splits_the_missed_time_into_kernels_and_fixed_cost():
    def row(lap_ms, kernels_ms):
        return LayerBenchRow(
            (1, 4, 4, 4), "k2 s2 p0", "", 1.0, 5.0, lap_ms, lap_ms, lap_ms / 5, 0.1,
            0.5, kernels_ms=kernels_ms,
        )  # fmt: skip

    text = summary([row(2.0, 1.2), row(3.0, 1.8), row(1.2, 0.5)])
    assert (
        "where LAP/avg is above 1.5, the fused layer's two kernel calls alone take 1.20-1.80x "
        "avg_pool2d, at 1 of 2 shapes within 1.5" in text
    )
    assert "kernel calls alone" not in summary([row(2.0, float("nan"))])


@needs_kernels
@pytest.mark.parametrize(
    "layer",
    [
        lambda: AdaptiveLocalAttentionPool2d(16, 1),
        lambda: LocalAttentionPool2d(16, 3, 2, 1, n_concepts=2, hidden_channels=4),
    ],
    ids=["global pool", "windows"],
)
def test_the_kernel_replay_writes_the_layers_own_gradients(layer):
    """The replayed kernel calls are the layer's: their gradients are autograd's, bit for bit
    on the same inputs, and the layer is left as it was (no gradients, no maps)."""
    torch.manual_seed(3)
    lap = layer()
    with torch.no_grad():  # away from the zero start, so that every gradient is non-zero
        for parameter in lap.scorer.parameters():
            parameter.add_(torch.randn_like(parameter))
    x = torch.randn(3, 16, 7, 7, requires_grad=True)
    replay = kernel_replay(lap, x)
    assert replay is not None
    assert x.grad is None and all(p.grad is None for p in lap.parameters())
    assert lap.maps is None
    replay.grad_x.fill_(float("nan"))
    replay.grad_params.fill_(float("nan"))
    replay()
    lap(x).sum().backward()
    torch.testing.assert_close(replay.grad_x, x.grad, rtol=0, atol=0)
    by_kernel = [lap.scorer.heads[0].weight, lap.scorer.heads[0].bias]
    by_kernel += [lap.scorer.heads[2].weight, lap.scorer.heads[2].bias, lap.alpha]
    expected = torch.cat([p.grad.reshape(-1) for p in by_kernel])
    torch.testing.assert_close(replay.grad_params, expected, rtol=0, atol=0)


@needs_kernels
def test_the_kernel_replay_of_an_input_without_gradient_writes_none():
    """The layer's backward computes no input gradient there, so neither does its replay."""
    lap = AdaptiveLocalAttentionPool2d(8, 1)
    replay = kernel_replay(lap, torch.randn(2, 8, 5, 5))
    assert replay is not None
    replay.grad_x.fill_(float("nan"))
    replay()
    assert torch.isnan(replay.grad_x).all()
    assert torch.isfinite(replay.grad_params).all()


@needs_kernels
def test_no_kernel_replay_where_the_fused_layer_does_not_run(monkeypatch):
    monkeypatch.setenv("TORCHLAP_FUSED_LAYER", "0")  # the per-op path
    assert kernel_replay(AdaptiveLocalAttentionPool2d(8, 1), torch.randn(2, 8, 5, 5)) is None
    monkeypatch.delenv("TORCHLAP_FUSED_LAYER")
    x = torch.randn(2, 8, 5, 5, dtype=torch.bfloat16)  # a dtype the kernels do not take
    lap = AdaptiveLocalAttentionPool2d(8, 1, dtype=torch.bfloat16)
    assert kernel_replay(lap, x) is None


@needs_kernels
def test_recorded_calls_put_the_library_back_also_on_an_error():
    library = ext.lap_kernels()
    lap = AdaptiveLocalAttentionPool2d(8, 1)
    with pytest.raises(RuntimeError, match="inside"), ext.recorded_calls() as calls:
        lap(torch.randn(2, 8, 5, 5))
        assert set(calls) == {"lap_layer_forward_f32"}
        raise RuntimeError("inside")
    assert ext.lap_kernels() is library


def _taps_by_loop(height, width, kernel, stride, padding, out_h, out_w):
    """Window positions inside the input, counted one window and one tap at a time."""
    taps = 0
    for i in range(out_h):
        for j in range(out_w):
            for u in range(kernel):
                for v in range(kernel):
                    r, c = i * stride - padding + u, j * stride - padding + v
                    taps += 0 <= r < height and 0 <= c < width
    return taps


@pytest.mark.parametrize(
    ("shape", "window", "hidden", "concepts", "aggregation"),
    [
        ((2, 6, 8, 8), (2, 2, 0), 8, 1, "max"),
        ((1, 5, 9, 7), (3, 2, 1), 0, 3, "conv"),
        ((3, 4, 10, 10), (3, 2, 0), 4, 2, "sum"),
        ((2, 6, 5, 5), None, 8, 1, "max"),
    ],
)
def test_lap_multiply_adds_counts_the_scorer_and_the_window_sums(
    shape, window, hidden, concepts, aggregation
):
    """The scorer's part against PyTorch's FLOP counter on its own forward+backward, the window
    sums' against a loop over windows and taps: three multiply-adds per tap and channel."""
    from torch.utils.flop_counter import FlopCounterMode

    batch, channels, height, width = shape
    options = dict(n_concepts=concepts, hidden_channels=hidden, aggregation=aggregation)
    if window is None:
        lap = AdaptiveLocalAttentionPool2d(channels, 1, **options)
        taps = height * width
    else:
        kernel, stride, padding = window
        lap = LocalAttentionPool2d(channels, kernel, stride, padding, **options)
        taps = _taps_by_loop(
            height, width, kernel, stride, padding, *lap.output_size(height, width)
        )
    x = torch.randn(shape, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with counter:
        concepts_map, score = lap.scorer(x)
        (concepts_map.sum() + score.sum()).backward()
    scorer_macs = counter.get_total_flops() // 2
    assert scorer_macs > 0
    assert lap_multiply_adds(lap, shape) == scorer_macs + 3 * batch * channels * taps


@pytest.mark.parametrize("gradients", [True, False])
def test_empty_layer_has_the_layers_outputs_and_gradients(gradients):
    for lap, shape in [
        (LocalAttentionPool2d(4, 3, 2, 1, n_concepts=2, aggregation="conv"), (2, 4, 9, 7)),
        (AdaptiveLocalAttentionPool2d(4, (1, None)), (1, 4, 5, 6)),
    ]:
        x = torch.randn(shape, requires_grad=True)
        pooled = empty_layer(lap, x, gradients)
        assert pooled.shape == lap(x).shape
        lap.zero_grad(set_to_none=True)
        pooled.sum().backward()
        params = list(lap.parameters())
        assert len(params) >= 5
        for tensor in [x, *params]:
            assert (tensor.grad is not None) == gradients
            if gradients:
                assert tensor.grad.shape == tensor.shape


def test_memory_measurement_keeps_the_profilers_log_off_stderr():
    """kineto (the profiler's C++ library) logs each profiler start/stop to stderr unless told
    not to; the benchmark's output must stay readable."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    env["PYTHONPATH"] = str(src)
    code = (
        "import torch\n"
        "from torchlap.bench.common import peak_memory_bytes\n"
        "print(peak_memory_bytes(lambda: torch.ones(1000).sum(), torch.device('cpu')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 4000
    assert "profiler_start" not in done.stderr and "gpuGetDeviceCount" not in done.stderr
