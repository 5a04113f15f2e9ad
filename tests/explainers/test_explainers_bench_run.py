"""``run_benchmark`` and ``run_comparisons`` with stand-in explainers, peers and clocks: the
methods timed and their order, the settings each gets, the ratios and the printed blocks."""

import logging
import math

import pytest
import torch
import torchvision
from bench_fakes import FakeClock
from torch import nn

from torchlap.bench import explain
from torchlap.bench.explain import BenchRow, build_lap_resnet18, format_table, run_benchmark
from torchlap.bench.explain_peers import PeerRow


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class FakeRegistry:
    """Stands in for the explainer registry: each method a class recording what it was made
    with and given; ``kinds``: method -> (kind, applies to the model, forwards, backwards)."""

    def __init__(self, kinds: dict, comparison: list) -> None:
        self.kinds, self.comparison, self.made, self.calls = kinds, comparison, {}, []

    def available(self) -> list:
        return list(self.kinds)

    def comparison_methods(self) -> list:
        return list(self.comparison)

    def get(self, name: str) -> type:
        if name not in self.kinds:
            raise ValueError(f"unknown explainer {name!r}")
        kind, applies, forwards, backwards = self.kinds[name]
        registry = self

        class Method:
            def __init__(self, model, **options):
                registry.made.setdefault(name, []).append(options)
                self.last_stats = {}

            @staticmethod
            def applies_to(model):
                return applies

            def __call__(self, images):
                registry.calls.append((name, tuple(images.shape), float(images.sum())))
                self.last_stats = {"forwards_per_image": forwards, "backwards_per_image": backwards}

        Method.kind = kind
        return Method

    def install(self, monkeypatch) -> None:
        for name in ("get", "available", "comparison_methods"):
            monkeypatch.setattr(explain, name, getattr(self, name))


KINDS = {
    "gradcam": ("gradient", True, 1.0, 1.0),
    "lap": ("lap", True, 1.0, 0.0),
    "rise": ("perturbation", True, 40.0, 0.0),
    "sise": ("perturbation", True, 9.0, 0.0),
    "extra": ("gradient", True, 2.0, 2.0),
    "other": ("gradient", False, 1.0, 1.0),
}


def test_run_benchmark_defaults_order_settings_and_ratios(monkeypatch, caplog):
    registry = FakeRegistry(KINDS, ["gradcam", "lap", "rise"])
    registry.install(monkeypatch)
    built, timed = [], []

    def build(num_classes=1000):
        built.append((num_classes, float(torch.rand(1))))
        return tiny_model(), "fake lap-resnet18"

    def time_call(fn, device, repeats):
        fn()
        timed.append(repeats)
        return [4.0, 2.0, 6.0, 1.0, 3.0, 2.0][len(timed) % 6 - 1]  # lap, gradcam, extra x 2

    monkeypatch.setattr(explain, "build_lap_resnet18", build)
    monkeypatch.setattr(explain, "time_call", time_call)
    monkeypatch.setattr(explain, "time", FakeClock(*[1.0, 10.0, 1.0, 3.0] * 2))
    seen = []
    torch.manual_seed(1234)  # not the benchmark's seed
    with caplog.at_level(logging.INFO, logger="torchlap.bench.explain"):
        rows, how = run_benchmark(on_row=seen.append)
    assert how == "fake lap-resnet18" and seen == rows
    torch.manual_seed(0)
    assert built == [(1000, float(torch.rand(1)))]  # the model seeded with seed 0
    # the comparison set, then every other method that applies; lap first; slow ones last
    assert [(r.size, r.method) for r in rows] == [
        (size, method)
        for size in (224, 64)
        for method in ("lap", "gradcam", "extra", "rise", "sise")
    ]
    assert (
        registry.made["rise"]
        == [{"n_masks": 4000, "mask_batch_size": 64, "precision": "float32"}] * 2
    )
    assert registry.made["sise"] == [{"mask_batch_size": 64, "precision": "float32"}] * 2
    assert registry.made["gradcam"] == registry.made["lap"] == [{}, {}]
    assert timed == [3] * 12  # 3 repeats; 2 rounds x 3 fast methods x 2 sizes
    generator = torch.Generator().manual_seed(0)
    for size in (224, 64):
        images = torch.randn(16, 3, size, size, generator=generator)
        shown = {(shape, total) for _, shape, total in registry.calls if shape[-1] == size}
        assert shown == {(tuple(images.shape), float(images.sum()))}
    extra, rise, sise = rows[2:5]
    # fast: the best of the 2 rounds; slow: one call, timed by the clock
    assert [r.seconds for r in rows[:5]] == [1.0, 2.0, 2.0, 10.0, 3.0]
    assert [r.ratio_to_lap for r in rows[:5]] == [1.0, 2.0, 2.0, 10.0, 3.0]
    assert [r.images_per_second for r in rows[:5]] == [16.0, 8.0, 8.0, 1.6, 16 / 3]
    assert (extra.forwards_per_image, extra.backwards_per_image) == (2.0, 2.0)
    assert (rise.forwards_per_image, sise.forwards_per_image) == (40.0, 9.0)
    assert "timing gradcam at 224x224" in caplog.text
    assert "timing rise at 64x64 (one call)" in caplog.text


def test_run_benchmark_keeps_the_listed_methods_and_puts_lap_first(monkeypatch):
    registry = FakeRegistry(KINDS, ["gradcam"])
    registry.install(monkeypatch)
    monkeypatch.setattr(explain, "time_call", lambda fn, device, repeats: fn() or 0.5)
    monkeypatch.setattr(explain, "time", FakeClock(1.0, 2.0))
    options = {"batch_size": 2, "repeats": 1, "rounds": 1, "model": tiny_model()}
    rows, how = run_benchmark(sizes=(8,), methods=["rise", "lap", "other"], **options)
    assert how == "given model Sequential"
    assert [r.method for r in rows] == ["lap", "other", "rise"]
    assert rows[2].seconds == 2.0 and rows[2].ratio_to_lap == 4.0
    rows, _ = run_benchmark(sizes=(8,), methods=["other"], **options)
    assert [r.method for r in rows] == ["lap", "other"]


def test_run_benchmark_refuses_unknown_methods_before_building(monkeypatch):
    built = []
    monkeypatch.setattr(explain, "build_lap_resnet18", lambda *a: built.append(a))
    with pytest.raises(ValueError, match="unknown explainer 'nope'"):
        run_benchmark(sizes=(8,), methods=["lap", "nope"])
    assert built == []


def test_bench_rows_and_table():
    row = BenchRow(64, "gradcam", 0.5, 4, 1.0, 1.0, 2.5)
    assert row.images_per_second == 8.0
    assert BenchRow(64, "lap", 0.0, 4, 1.0, 0.0).images_per_second == math.inf
    assert math.isnan(BenchRow(64, "lap", 1.0, 4, 1.0, 0.0).ratio_to_lap)
    lines = format_table([row]).splitlines()
    assert " ".join(lines[0].split()) == "size method s/batch img/s x lap fwd/img bwd/img"
    assert lines[1] == "-" * len(lines[0])
    assert lines[2].split() == ["64", "gradcam", "0.500", "8.00", "2.5", "1.0", "1.0"]


def test_build_lap_resnet18_has_imagenets_classes_by_default():
    model, how = build_lap_resnet18()
    assert model.fc.out_features == 1000
    assert how == "torchlap.lapify(resnet18, where='resnet18')"
    assert build_lap_resnet18(7)[0].fc.out_features == 7


class FakePeers:
    """Stands in for the builders and peer runs of ``run_comparisons``; rows' seconds come from
    ``times`` (one list per call)."""

    def __init__(self, monkeypatch, times: list) -> None:
        self.times, self.calls, self.seeds = times, [], []
        monkeypatch.setattr(explain, "build_lap_resnet18", self.build)
        monkeypatch.setattr(torchvision.models, "resnet50", self.resnet50)
        monkeypatch.setattr(explain, "run_scorecam_against", self.scorecam)
        monkeypatch.setattr(explain, "run_rise_vs_sise", self.rise_vs_sise)

    def build(self, num_classes=1000):
        self.seeds.append(("lap-resnet18", num_classes, float(torch.rand(1))))
        return tiny_model(), "fake lap-resnet18"

    def resnet50(self, weights="default"):
        self.seeds.append(("resnet50", weights, float(torch.rand(1))))
        return tiny_model()

    def rows(self, names: list) -> list:
        return [PeerRow(n, s, 2, 1.0) for n, s in zip(names, self.times.pop(0), strict=True)]

    def scorecam(self, model, images, peers, mask_batch_size, precisions):
        self.calls.append(("scorecam", images, list(peers), mask_batch_size, precisions))
        return self.rows([f"torchlap scorecam ({p})" for p in precisions] + list(peers))

    def rise_vs_sise(self, model, images, rise_masks, mask_batch_size, precision):
        self.calls.append(("rise", images, rise_masks, mask_batch_size, precision))
        return self.rows([f"sise ({precision})", f"rise ({rise_masks} masks) ({precision})"])


def test_run_comparisons_blocks_best_rounds_and_settings(monkeypatch):
    times = [[4.0, 2.0, 8.0, 6.0], [2.0, 3.0, 9.0, 1.0], [1.0, 6.0], [3.0, 4.0]]
    peers = FakePeers(monkeypatch, times)
    torch.manual_seed(1234)  # not the benchmark's seed
    text = explain.run_comparisons(
        " grad-cam, torchcam ", True, 16, 2, 40, 8, "cpu", "bfloat16", rounds=2
    )
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    kinds = [call[0] for call in peers.calls]
    assert kinds == ["scorecam", "scorecam", "rise", "rise"]
    for call in peers.calls:
        assert torch.equal(call[1], images)
    assert peers.calls[0][2:] == (["grad-cam", "torchcam"], 8, ("float32", "bfloat16"))
    assert peers.calls[2][2:] == (40, 8, "bfloat16")
    torch.manual_seed(0)
    first = float(torch.rand(1))
    # each model from seed 0, the ResNet-50 with random weights
    assert peers.seeds == [("lap-resnet18", 1000, first), ("resnet50", None, first)]
    threads = torch.get_num_threads()
    lines = text.splitlines()
    assert lines[0] == (
        f"Score-CAM on fake lap-resnet18, 16 px, batch 2, mask batch 8, threads {threads}; "
        "best of 2 interleaved round(s)"
    )
    assert "speed vs torchlap scorecam (float32) |" in lines[1]
    cells = [line.split(" | ") for line in lines[3:7]]
    assert [c[1] for c in cells] == ["2.00", "2.00", "8.00", "1.00"]  # best of the 2 rounds
    assert [c[3] for c in cells] == ["1.00x", "1.00x", "0.25x", "2.00x"]
    assert lines[7] == ""
    assert lines[8] == (
        f"RISE vs SISE on a ResNet-50 (random weights), 16 px, batch 2, mask batch 8, "
        f"threads {threads}; best of 2 interleaved round(s)"
    )
    assert "speed vs rise (40 masks) (bfloat16) |" in lines[9]  # SISE's speed-up over RISE
    assert lines[11].startswith("| sise (bfloat16) | 1.00 | 2.000 | 4.00x |")
    assert lines[12].startswith("| rise (40 masks) (bfloat16) | 4.00 | 0.500 | 1.00x |")
    assert len(lines) == 13


def test_run_comparisons_defaults_and_single_blocks(monkeypatch):
    peers = FakePeers(monkeypatch, [[1.0, 2.0], [1.0, 2.0]])
    text = explain.run_comparisons("torchcam", False, 8, 1, 4, 4, "cpu", "float32")
    assert [c[4] for c in peers.calls] == [("float32",)]  # float32 only: no second precision
    assert text.splitlines()[0].endswith("best of 1 interleaved round(s)")
    assert "RISE" not in text and len(text.splitlines()) == 5
    text = explain.run_comparisons("", True, 8, 1, 4, 4, "cpu", "float32")
    assert text.startswith("RISE vs SISE") and "Score-CAM" not in text
    assert [c[0] for c in peers.calls] == ["scorecam", "rise"]


def test_run_comparisons_refuses_before_building(monkeypatch):
    peers = FakePeers(monkeypatch, [])
    with pytest.raises(ValueError, match=r"unknown --against peer\(s\) \['captum'\]"):
        explain.run_comparisons("grad-cam,captum", True, 8, 1, 4, 4, "cpu", "float32")
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        explain.run_comparisons("", True, 8, 1, 4, 4, "cpu", "int8")
    assert peers.calls == [] and peers.seeds == []
