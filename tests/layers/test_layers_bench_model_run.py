"""``torchlap bench model`` on tiny twins and a fake clock: the twins built, the multiply-adds
counted (by hand here), the statistic (best over rounds of the median), ratios and the table."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from torchlap.bench import model as bench
from torchlap.bench.model import ModelBenchRow, format_model_rows, run_model_bench
from torchlap.cli import app


class _Clock:
    def __init__(self) -> None:
        self.now = 0

    def perf_counter(self) -> float:
        return self.now


# seconds each forward pass takes, per twin (0 vanilla, 1 LAP) and mode: the counting pass,
# then per round (repeats 3) a warm-up and three timed calls; best medians 2, 5, 20, 30 s
COSTS = {
    (0, False): [0, 100, 3, 1, 2, 100, 5, 6, 4],
    (1, False): [0, 100, 9, 7, 8, 100, 6, 4, 5],
    (0, True): [0, 100, 10, 30, 20, 100, 40, 40, 40],
    (1, True): [0, 100, 50, 50, 50, 100, 30, 35, 25],
}


def _twin(stride: int, costs: dict, clock: _Clock, lap: int) -> nn.Module:
    """A 3x3 convolution (2 channels, no bias), a global average pool, a linear layer to 1000
    classes; each forward pass advances the clock by its next cost."""
    model = nn.Sequential(
        nn.Conv2d(3, 2, 3, stride=stride, padding=1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 1000),
    )

    def tick(module, args, output) -> None:
        clock.now += costs[(lap, module.training)].pop(0)

    model.register_forward_hook(tick)
    return model


@pytest.fixture
def tiny(monkeypatch):
    """Vanilla twin: stride-2 convolution; LAP twin: stride 1 (as the lapified blocks)."""
    clock, costs = _Clock(), {key: list(v) for key, v in COSTS.items()}
    seen = SimpleNamespace(built=[], costs=costs, models=[], weights=[])

    def build(arch, preset, size, device):
        seen.built.append((arch, preset, size, torch.device(device)))
        seen.models.append(_twin(1 if preset else 2, costs, clock, int(preset is not None)))
        seen.weights.append(seen.models[-1][3].weight.detach().clone())
        return seen.models[-1]

    monkeypatch.setattr(bench, "_build", build)
    monkeypatch.setattr(bench, "time", clock)
    return seen


def test_run_model_bench_times_and_counts_both_twins(tiny, caplog, capsys):
    built, costs = tiny.built, tiny.costs
    with caplog.at_level(logging.INFO, logger=bench.__name__):
        (row,) = run_model_bench(("resnet50",), size=75, batch=2, repeats=3, rounds=2)
    assert capsys.readouterr().out == ""  # the FLOP counter prints no table of its own
    assert caplog.messages == [
        f"timing resnet50 ({twin}) {step}"
        for _ in range(2)
        for twin in ("vanilla", "LAP")
        for step in ("forward", "train step")
    ]
    # the train step ends with the optimizer's step: the linear layers' weights have moved
    moved = zip(tiny.models, tiny.weights, strict=True)
    assert len(tiny.models) == 2 and all(not torch.equal(m[3].weight, w) for m, w in moved)
    assert built == [
        ("resnet50", None, 75, torch.device("cpu")),
        ("resnet50", "resnet50-imagenet", 75, torch.device("cpu")),
    ]
    assert all(not left for left in costs.values())  # every pass ran, in its twin and mode
    assert (row.arch, row.preset, row.size, row.batch) == ("resnet50", "resnet50-imagenet", 75, 2)
    assert row.forward_ms == (2000, 5000) and row.train_ms == (20000, 30000)
    assert (row.forward_time_ratio, row.train_time_ratio) == (2.5, 1.5)
    # by hand, per image: the convolution 2 channels x 27 taps at 38 x 38 (stride 2) or
    # 75 x 75 pixels, the linear layer 2 x 1000; the train step adds the weight gradients of
    # both and the linear layer's input gradient (the image takes none)
    conv = [2 * 27 * 38 * 38, 2 * 27 * 75 * 75]
    forward = [2 * (c + 2000) for c in conv]
    train = [2 * (2 * c + 3 * 2000) for c in conv]
    assert row.forward_gmacs == pytest.approx([f / 1e9 for f in forward], rel=1e-12)
    assert row.train_gmacs == pytest.approx([t / 1e9 for t in train], rel=1e-12)
    assert row.forward_mac_ratio == pytest.approx(forward[1] / forward[0])
    assert row.train_mac_ratio == pytest.approx(train[1] / train[0])


def test_run_model_bench_runs_the_archs_in_order_with_the_papers_presets(tiny, monkeypatch):
    built = tiny.built
    monkeypatch.setattr(bench, "_time", lambda fn, device, repeats: 1.0)
    monkeypatch.setattr(bench, "count_multiply_adds", lambda fn, *args: 1e9)
    rows = run_model_bench(size=75, batch=1, repeats=1, rounds=1)
    assert [(r.arch, r.preset) for r in rows] == [
        ("resnet18", "resnet18"),
        ("resnet50", "resnet50-imagenet"),
        ("inception_v3", "inception_v3"),
    ]
    presets = [None, "resnet18", None, "resnet50-imagenet", None, "inception_v3"]
    assert [b[1] for b in built] == presets


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 74}, "size must be >= 75"),
        ({"batch": 0}, "batch, repeats and rounds must be >= 1, got 0, 1, 1"),
        ({"repeats": 0}, "got 1, 0, 1"),
        ({"rounds": 0}, "got 1, 1, 0"),
        ({"archs": ("resnet18", "vgg11")}, r"unknown architecture\(s\) \['vgg11'\]"),
    ],
)
def test_run_model_bench_refuses_before_building(tiny, options, message):
    built = tiny.built
    with pytest.raises(ValueError, match=message):
        run_model_bench(**{"archs": ("resnet18",), "size": 75, "batch": 1, "repeats": 1,
                           "rounds": 1, **options})  # fmt: skip
    assert built == []


def test_the_table_divides_lap_by_vanilla_in_every_column():
    row = ModelBenchRow(
        "resnet18", "resnet18", 224, 2, (10.0, 15.0), (40.0, 50.0), (2.0, 2.4), (6.0, 9.0)
    )
    header, rule, line = format_model_rows([row]).splitlines()
    assert line == (
        "| resnet18 (resnet18) | 224 | 2 | 10 / 15 | 1.50 | 1.20 (2.0 / 2.4) | 40 / 50 | 1.25 "
        "| 1.50 | 1.25, 0.83 |"
    )
    assert header.count("|") == rule.count("|") == line.count("|") == 11
    assert format_model_rows([]).count("\n") == 1


ALL = ("resnet18", "resnet50", "inception_v3")


def _invoke(*args: str):
    return CliRunner().invoke(app, ["bench", "model", *args])


@pytest.fixture
def calls(monkeypatch):
    seen = []
    row = ModelBenchRow("resnet18", "resnet18", 75, 1, (10.0, 15.0), (40.0, 50.0), (2, 3), (6, 9))

    def run(archs, size, batch, device, repeats, rounds):
        seen.append((archs, size, batch, device, repeats, rounds))
        return [row]

    monkeypatch.setattr(bench, "run_model_bench", run)
    return seen


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), (ALL, 224, 16, "cpu", 3, 2)),
        (("--scale", "0.5"), (ALL, 112, 8, "cpu", 3, 2)),
        (("--size", "100", "--batch-size", "1", "--scale", "0.4"), (ALL, 75, 1, "cpu", 3, 2)),
        (("--size", "75", "--batch-size", "1", "--scale", "1"), (ALL, 75, 1, "cpu", 3, 2)),
        (("--size", "8192", "--batch-size", "4096"), (ALL, 8192, 4096, "cpu", 3, 2)),
        (("--archs", "inception_v3,resnet18", "--repeats", "1", "--rounds", "1"),
         (("inception_v3", "resnet18"), 224, 16, "cpu", 1, 1)),
    ],
)  # fmt: skip
def test_bench_model_scales_the_input_and_prints_the_table(calls, args, expected):
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert calls == [expected]
    lines = result.output.splitlines()
    assert lines[0].startswith("device cpu; threads ") and "LAP pooling path: " in lines[0]
    assert lines[1].startswith("| model (lapify preset) | px | batch |")
    assert lines[3].startswith("| resnet18 (resnet18) | 75 | 1 | 10 / 15 | 1.50 |")
    assert lines[4].startswith("target: time ratio within 10% of the MAC ratio")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scale", "0"), "--scale must be in (0, 1], got 0.0"),
        (("--scale", "1.01"), "--scale must be in (0, 1], got 1.01"),
        (("--size", "74"), "--size must be from 75 (Inception-v3's smallest) to 8192, got 74"),
        (("--size", "8193"), "got 8193"),
        (("--batch-size", "0"), "--batch-size must be from 1 to 4096, got 0"),
        (("--batch-size", "4097"), "--batch-size must be from 1 to 4096, got 4097"),
        (("--device", "tpu"), "--device"),
        (("--archs", "resnet18,,vgg"), "--archs"),
        (("--archs", "resnet18,vgg11"), "--archs names unknown architecture(s) ['vgg11']"),
    ],
)
def test_bench_model_refuses_before_running(calls, args, message):
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert calls == [] and "device cpu" not in result.output


def test_bench_model_reports_a_refusal_of_the_library_as_a_bad_parameter(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("nothing to run here")

    monkeypatch.setattr(bench, "run_model_bench", refuse)
    result = _invoke("--archs", "resnet18")
    assert result.exit_code == 2 and "nothing to run here" in result.output


def test_the_library_defaults_are_the_commands(tiny, monkeypatch):
    """224 px, batch 16, medians of 3 calls, best of 2 rounds: what ``bench model`` passes."""
    built = tiny.built
    timed = []
    monkeypatch.setattr(bench, "_time", lambda fn, device, repeats: timed.append(repeats) or 1.0)
    monkeypatch.setattr(bench, "count_multiply_adds", lambda fn, *args: 1e9)
    (row,) = run_model_bench(("resnet18",))
    assert (row.size, row.batch) == (224, 16) and built[0][2:] == (224, torch.device("cpu"))
    assert timed == [3] * 8  # 2 rounds x 2 twins x (forward, train step)


def test_the_twins_are_the_plain_model_and_the_papers_lapified_one():
    from torchlap.layers.lap import LapBase
    from torchlap.models.presets import PRESETS

    vanilla = bench._build("resnet18", None, 75, torch.device("cpu"))
    lapified = bench._build("resnet18", "resnet18", 75, "cpu")
    laps = [name for name, m in lapified.named_modules() if isinstance(m, LapBase)]
    assert laps == list(PRESETS["resnet18"].lap_names)
    assert not any(isinstance(m, LapBase) for m in vanilla.modules())
    with torch.no_grad():
        for model in (vanilla.eval(), lapified.eval()):
            assert model(torch.zeros(1, 3, 75, 75)).shape == (1, 1000)


def test_a_timed_call_waits_for_the_gpus_queued_work(monkeypatch):
    clock, queued = _Clock(), []

    def synchronize(device=None) -> None:
        clock.now += sum(queued)
        queued.clear()

    monkeypatch.setattr(bench, "time", clock)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    left = [100, 2, 7, 6, 9, 1]  # the warm-up, then five calls that only queue their work
    assert bench._time(lambda: queued.append(left.pop(0)), torch.device("cuda"), 5) == 6
