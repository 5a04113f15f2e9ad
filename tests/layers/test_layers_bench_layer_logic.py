"""``torchlap bench layer``'s logic without timing: the benchmarked sites are the paper's models'
pooling sites, each row's arithmetic on fixed measurements, the printed table and header."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchlap.bench import layer as bench
from torchlap.bench.common import Measurement
from torchlap.bench.layer import GEMM_SIZE, SHAPES, LayerBenchRow, format_rows, run_layer_command
from torchlap.layers.fused import fused_layer_calls
from torchlap.layers.lap import LapBase, LocalAttentionPool2d
from torchlap.models.build import build_model

# label of SHAPES -> (architecture, lapify preset, module whose input is pooled)
SITES = {
    "ResNet stem maxpool": ("resnet18", "resnet18", "maxpool"),
    "ResNet18/34 layer2.0": ("resnet34", "resnet34", "layer2.0.lap"),
    "ResNet18/34 layer3.0": ("resnet18", "resnet18", "layer3.0.lap"),
    "ResNet18/34 layer4.0": ("resnet18", "resnet18", "layer4.0.lap"),
    "ResNet50 layer4.0": ("resnet50", "resnet50-imagenet", "layer4.0.lap"),
    "ResNet18/34 avgpool": ("resnet34", "resnet34", "avgpool"),
    "ResNet50 avgpool": ("resnet50", "resnet50-imagenet", "avgpool"),
    "Inception-v3 maxpool1": ("inception_v3", "inception_v3", "maxpool1"),
    "Inception-v3 maxpool2": ("inception_v3", "inception_v3", "maxpool2"),
    "Inception-v3 Mixed_6a": ("inception_v3", "inception_v3", "Mixed_6a.lap"),
    "Inception-v3 Mixed_7a": ("inception_v3", "inception_v3", "Mixed_7a.lap"),
    "Inception-v3 avgpool": ("inception_v3", "inception_v3", "avgpool"),
}


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _sites(arch: str, preset: str) -> dict[str, tuple]:
    """Every pooling module of the lapified model at 224 px, batch 32: its input shape and
    window (None: a global pool), from a forward pass on the meta device (shapes only)."""
    with torch.device("meta"):
        model = build_model(arch, 1000, lap=preset, input_size=224).eval()
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, (LocalAttentionPool2d, nn.MaxPool2d)):
            window = tuple(_pair(getattr(module, k)) for k in ("kernel_size", "stride", "padding"))
        elif isinstance(module, (LapBase, nn.AdaptiveAvgPool2d)):
            window = None
        else:
            continue
        module.register_forward_pre_hook(
            lambda m, args, name=name, window=window: seen.update({name: (args[0].shape, window)})
        )
    with torch.no_grad():
        model(torch.empty(32, 3, 224, 224, device="meta"))
    return seen


def test_the_shapes_are_the_pooling_sites_of_the_papers_models_at_224_px():
    models = {key: _sites(*key) for key in {(arch, preset) for arch, preset, _ in SITES.values()}}
    assert [entry[0] for entry in SHAPES] == list(SITES)
    for where, shape, kernel, stride, padding in SHAPES:
        arch, preset, module = SITES[where]
        site_shape, window = models[(arch, preset)][module]
        assert shape == tuple(site_shape), where
        if kernel is None:
            assert window is None, where
        else:
            assert window == (_pair(kernel), _pair(stride), _pair(padding)), where


# the fixed measurements (s) and peaks (bytes) of a fake ``measure``
SECONDS = {
    "avg": 0.002,
    "max": 0.004,
    "lap": 0.01,
    "scorer": 0.003,
    "autograd floor": 0.001,
    "gemm": 0.5,
    "kernels": 0.006,
}


@pytest.fixture
def measured(monkeypatch):
    """``measure`` replaced: the times above; the peaks of the candidates it is asked for
    (avg_pool2d 1000 bytes, LAP 2304 more), -1 bytes for the others."""
    calls = []

    def measure(candidates, device, repeats, rounds, memory):
        calls.append((sorted(candidates), repeats, rounds))
        peaks = {"avg": 1000, "lap": 3304}
        return {
            name: Measurement(name, SECONDS[name], peaks.get(name, 0) if name in memory else -1)
            for name in candidates
        }

    monkeypatch.setattr(bench, "measure", measure)
    return calls


def test_each_row_divides_lap_by_the_poolings_of_the_same_run(measured, monkeypatch):
    monkeypatch.setattr(bench, "kernel_replay", lambda lap, x: lambda: None)
    rows = bench.run_layer_benchmark(
        [("a site", (4, 4, 6, 6), 3, 2, 1), ((8, 3, 5, 5), None, None, 0)],
        repeats=2,
        scale=0.5,
        batches=(4, 1),
        rounds=4,
    )
    names = ["autograd floor", "avg", "gemm", "kernels", "lap", "max", "scorer"]
    assert measured == [(names, 2, 4)] * 4
    assert [(r.where, r.op, r.shape) for r in rows] == [
        ("a site", "k3 s2 p1", (2, 4, 6, 6)),
        ("a site", "k3 s2 p1", (1, 4, 6, 6)),  # round(0.5) is 0: at least 1
        ("", "adaptive 1x1", (2, 3, 5, 5)),
        ("", "adaptive 1x1", (1, 3, 5, 5)),
    ]
    row = rows[0]
    assert (row.avg_ms, row.max_ms, row.lap_ms) == pytest.approx((2, 4, 10))
    assert (row.time_ratio_avg, row.time_ratio_max) == pytest.approx((5, 2.5))
    # 2304 bytes: two copies of the 2 x 4 x 6 x 6 float32 input, four of the one-image input
    assert [r.extra_peak_input_copies for r in rows[:2]] == pytest.approx([2, 4])
    assert (row.scorer_ms, row.autograd_floor_ms, row.kernels_ms) == pytest.approx((3, 1, 6))
    # 1x1 convolutions 4 -> 8 -> 1 at 36 pixels, and 8 x 8 window taps inside the 6 x 6 input
    # of 4 channels; forward and both gradients, 2 images
    assert row.multiply_adds == 3 * 2 * (36 * (4 * 8 + 8) + 4 * 8 * 8)
    assert row.gemm_ms_per_gmac == pytest.approx(500 / (GEMM_SIZE**3 / 1e9))
    assert row.fma_floor_ms == pytest.approx(row.multiply_adds / 1e9 * row.gemm_ms_per_gmac)
    # the global pool: every one of the 25 positions is a tap
    assert rows[2].multiply_adds == 3 * 2 * (25 * (3 * 8 + 8) + 3 * 25)


def test_rows_keep_the_shapes_batch_and_show_no_kernel_time_without_the_replay(
    measured, monkeypatch
):
    monkeypatch.setattr(bench, "kernel_replay", lambda lap, x: None)
    (row,) = bench.run_layer_benchmark([((3, 2, 4, 4), 2, 2, 0)], repeats=1, rounds=1)
    assert row.shape == (3, 2, 4, 4) and row.where == ""
    assert math.isnan(row.kernels_ms) and "kernels" not in measured[0][0]


def test_the_table_prints_every_column_of_a_row():
    row = LayerBenchRow(
        (2, 4, 6, 6), "k3 s2 p1", "site", 2.0, 4.0, 10.0, 5.0, 2.5, 1.25, 3.0, 10**9, 0.5, 1.0,
        6.0,
    )  # fmt: skip
    header, rule, line = format_rows([row]).splitlines()
    assert line == (
        "| site | (2, 4, 6, 6) | k3 s2 p1 | 2.00 | 4.00 | 10.00 | 5.00 | 2.50 | 1.25 | 6.00 "
        "| 3.00 | 3.00 | 1.50 | 0.25 | 0.25 |"
    )
    assert header.count("|") == rule.count("|") == 16


@pytest.fixture
def benchmarked(monkeypatch):
    """``run_layer_benchmark`` replaced: records its arguments, runs the fused layer once when
    ``fused`` says so, returns one row."""
    calls, fused = [], [True]
    row = LayerBenchRow((2, 4, 6, 6), "k3 s2 p1", "site", 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0)

    def run(device, scale, batches, rounds):
        calls.append((device, scale, batches, rounds))
        if fused[0]:
            fused_layer_calls["window"] += 1
        return [row]

    monkeypatch.setitem(fused_layer_calls, "window", 0)
    monkeypatch.setattr(bench, "run_layer_benchmark", run)
    return calls, fused


def test_the_layer_command_runs_every_batch_and_says_which_layer_ran(benchmarked):
    calls, fused = benchmarked
    text = run_layer_command("cpu", 1.0, " 32, 1,4096", 2)
    assert calls == [(torch.device("cpu"), 1.0, (32, 1, 4096), 2)]
    header, blank, *table, blank2, worst = text.splitlines()
    assert header.startswith("LAP windowed pooling on cpu: ")
    assert header.endswith(
        ", fused layer; threads "
        f"{torch.get_num_threads()}; forward+backward, fastest of 2 interleaved rounds of 3 "
        "calls each"
    )
    assert blank == blank2 == "" and len(table) == 3 and worst.startswith("worst LAP/avg 1.00")
    fused[0] = False
    assert ", per-op layer; threads" in run_layer_command("cpu", 0.25, "1", 1).splitlines()[0]
    assert calls[1] == (torch.device("cpu"), 0.25, (1,), 1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("cpu", 0.0, "1", 1), r"--scale must be in \(0, 1\], got 0.0"),
        (("cpu", 1.01, "1", 1), r"--scale must be in \(0, 1\], got 1.01"),
        (("cpu", 1.0, "1,x", 1), "--batches must be comma-separated ints, got '1,x'"),
        (("cpu", 1.0, "1,,2", 1), "--batches '1,,2' has an empty name"),
        (("cpu", 1.0, "", 1), "--batches must be ints from 1 to 4096, got ''"),
        (("cpu", 1.0, "4097", 1), "--batches must be ints from 1 to 4096, got '4097'"),
        (("cpu", 1.0, "0", 1), "--batches must be ints from 1 to 4096, got '0'"),
        (("cpu", 1.0, "2,2", 1), "--batches lists 2 more than once"),
        (("cpu", 1.0, "2", 0), "--rounds must be >= 1, got 0"),
        (("tpu", 1.0, "2", 1), "--device 'tpu' is not a device"),
    ],
)
def test_the_layer_command_refuses_before_benchmarking(benchmarked, arguments, message):
    calls, _ = benchmarked
    with pytest.raises(ValueError, match=message):
        run_layer_command(*arguments)
    assert calls == []


def test_the_autograd_floor_returns_every_gradient_by_default():
    lap = LocalAttentionPool2d(4, 2, 2, 0)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    bench.empty_layer(lap, x).sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in lap.parameters())


@pytest.mark.skipif(bench.lap_kernels() is None, reason="no C compiler")
def test_the_kernel_replay_makes_the_forward_call_too():
    """The replay times both kernel calls: the forward one writes the pooled output again."""
    torch.manual_seed(0)
    lap = LocalAttentionPool2d(4, 2, 2, 0)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    replay = bench.kernel_replay(lap, x)
    assert replay is not None
    pooled = replay.kept[1]
    expected = pooled.detach().clone()
    pooled.detach().fill_(float("nan"))
    replay()
    torch.testing.assert_close(pooled.detach(), expected, rtol=0, atol=0)


def test_the_summary_of_no_rows():
    assert bench.summary([]) == "no rows"


def test_the_defaults_time_three_calls_a_round_as_the_command_says(measured, monkeypatch):
    """``bench layer`` prints "fastest of N interleaved rounds of 3 calls each"."""
    monkeypatch.setattr(bench, "kernel_replay", lambda lap, x: None)
    bench.run_layer_benchmark([((1, 2, 4, 4), 2, 2, 0)])
    assert [(repeats, rounds) for _, repeats, rounds in measured] == [(3, 3)]


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "expected"),
    [(3, 2, 1, {"avg_pool2d": (3, 2, 1), "max_pool2d": (3, 2, 1)}),
     (None, None, 0, {"adaptive_avg_pool2d": (1,), "adaptive_max_pool2d": (1,)})],
)  # fmt: skip
def test_every_candidate_runs_forward_and_backward_at_the_layers_geometry(
    monkeypatch, kernel, stride, padding, expected
):
    """The poolings pool the same windows as LAP (or the same global pool); every pass runs
    forward and backward and frees the input's gradient and the layer's maps afterwards."""
    pooled = {}

    class Functional:
        def __getattr__(self, name):
            def pool(x, *args):
                pooled[name] = args
                return getattr(torch.nn.functional, name)(x, *args)

            return pool

    monkeypatch.setattr(bench, "F", Functional())
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    _, lap, candidates = bench._candidates(x, kernel, stride, padding)
    candidates["avg"]()
    candidates["max"]()
    assert pooled == expected
    candidates["lap"]()
    assert all(p.grad is not None for p in lap.parameters())
    assert x.grad is None and lap.maps is None


def test_the_summary_at_the_targets_edges():
    """A ratio exactly at its target meets it; rows name their site, else their pooling; the
    FMA line takes only the rows with counted multiply-adds and a timed matrix product (a NaN
    rate first in line would make the span NaN)."""

    def row(where, op, ratios, max_ms, lap_ms, extra, scorer_ms, macs, gemm, floor_ms, kernels):
        return LayerBenchRow(
            (1, 4, 4, 4), op, where, 2.0, max_ms, lap_ms, *ratios, extra, scorer_ms, macs,
            gemm, floor_ms, kernels,
        )  # fmt: skip

    nan = float("nan")
    text = bench.summary(
        [
            row("", "k2 s2 p0", (1.5, 1.2), 2.0, 3.0, 0.5, 3.0, 10**9, 1.0, 0.1, nan),
            row("d", "k3 s2 p1", (2.5, 1.25), 4.0, 5.0, 0.1, 1.0, 10**9, nan, 1.0, 4.0),
            row("b", "k2 s2 p0", (2.0, 3.5), 2.0, 4.0, 0.25, 3.0, 10**9, 1.0, 2.4, 3.0),
            row("", "adaptive 1x1", (3.0, 3.0), 2.0, 6.0, 0.75, 4.0, 0, 1.0, 3.0, nan),
        ]
    )
    assert text.splitlines() == [
        "worst LAP/avg 3.00 (adaptive 1x1 (1, 4, 4, 4); target <= 1.5), worst LAP/max 3.50 "
        "(b (1, 4, 4, 4); target <= 1.2), worst extra peak 0.75 input copies (adaptive 1x1 "
        "(1, 4, 4, 4); target <= 1); LAP/avg above 1.5 at 3 of 4 shapes, at 1 of them the "
        "scorer alone (PyTorch) is above 1.5 too",
        "where LAP/avg is above 1.5, the fused layer's two kernel calls alone take 1.50-2.00x "
        "avg_pool2d, at 1 of 2 shapes within 1.5: the rest is the layer's fixed cost around "
        "them (module, autograd, ctypes)",
        "where LAP/avg is above 1.5, the target asks LAP's multiply-adds to run at 33% of the "
        "rate of a 1024x1024 float32 matrix product measured in the same rounds (LAP runs "
        "them at 25%; FMA floor/avg 0.50)",
        "LAP/max above 1.2 at 3 of 4 shapes; at 1 of them an autograd function with the "
        "layer's inputs and outputs that does no work takes above 1.2x max_pool2d on its own "
        "(autograd floor/max 0.25-1.50)",
    ]
