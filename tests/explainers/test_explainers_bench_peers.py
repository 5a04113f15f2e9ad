"""``bench explain``'s peer comparison with stand-in peers and a fake clock: which maps are
compared (resized how), what each peer is given, the images/s and speed-ratio arithmetic."""

import logging
import math
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bench_fakes import FakeClock, small_cnn

from torchlap.bench import explain_peers
from torchlap.bench.explain_peers import (
    PeerRow,
    format_peer_rows,
    map_correlation,
    run_rise_vs_sise,
    run_scorecam_against,
)
from torchlap.explainers import ScoreCam


def fake_grad_cam(monkeypatch, seen: dict, maps_of) -> None:
    """A stand-in ``pytorch_grad_cam`` (ScoreCAM, ClassifierOutputTarget) recording its use."""

    class Target:
        def __init__(self, category):
            self.category = category

    class Hooks:
        def release(self):
            seen["released"] = True

    class ScoreCAM:
        def __init__(self, model, target_layers):
            seen["layers"] = target_layers
            self.activations_and_grads = Hooks()

        def __call__(self, input_tensor, targets):
            seen["batch_size"] = self.batch_size
            seen["targets"] = [t.category for t in targets]
            sys.stderr.write("100%|##########| 1/1 tqdm bar\n")
            return maps_of(input_tensor)

    package = types.ModuleType("pytorch_grad_cam")
    package.ScoreCAM = ScoreCAM
    utils = types.ModuleType("pytorch_grad_cam.utils")
    targets = types.ModuleType("pytorch_grad_cam.utils.model_targets")
    targets.ClassifierOutputTarget = Target
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", package)
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam.utils", utils)
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam.utils.model_targets", targets)


def fake_torchcam(monkeypatch, seen: dict) -> None:
    """A stand-in ``torchcam.methods.ScoreCAM``: its maps are the channel sums of the layer's
    activations, captured by a hook (so at the layer's resolution), as a list of one tensor."""

    class ScoreCAM:
        def __init__(self, model, target_layer, batch_size, input_shape):
            seen.update(layer=target_layer, batch_size=batch_size, input_shape=input_shape)
            self.layer = dict(model.named_modules())[target_layer]

        def __enter__(self):
            self.handle = self.layer.register_forward_hook(self.hook)
            return self

        def hook(self, module, inputs, output):
            seen["activations"] = output.detach().clone()

        def __exit__(self, *exc):
            self.handle.remove()

        def __call__(self, class_idx):
            seen["targets"] = class_idx
            return [seen["activations"].sum(dim=1)]

    package = types.ModuleType("torchcam")
    methods = types.ModuleType("torchcam.methods")
    methods.ScoreCAM = ScoreCAM
    monkeypatch.setitem(sys.modules, "torchcam", package)
    monkeypatch.setitem(sys.modules, "torchcam.methods", methods)


def test_scorecam_against_gives_the_peers_the_same_work_and_compares_with_float32(
    monkeypatch, capfd, caplog
):
    model = small_cnn()
    images = torch.randn(2, 3, 16, 20, generator=torch.Generator().manual_seed(1))
    target = model(images).argmax(dim=1)
    grad_cam, torchcam = {}, {}
    fake_grad_cam(monkeypatch, grad_cam, lambda x: -x.mean(dim=1).numpy())
    fake_torchcam(monkeypatch, torchcam)
    monkeypatch.setattr(explain_peers, "time", FakeClock(1, 2.0, 1, 4.0, 1, 0.5, 1, 8.0))
    with caplog.at_level(logging.INFO, logger="torchlap.bench.explain_peers"):
        rows = run_scorecam_against(
            model, images, mask_batch_size=8, precisions=("float32", "bfloat16")
        )
    assert caplog.messages == [  # the progress lines on stderr
        "timing torchlap scorecam (float32)",
        "timing torchlap scorecam (bfloat16)",
        "timing grad-cam ScoreCAM",
        "timing torchcam ScoreCAM",
    ]
    assert [r.name for r in rows] == [
        "torchlap scorecam (float32)",
        "torchlap scorecam (bfloat16)",
        "grad-cam ScoreCAM",
        "torchcam ScoreCAM",
    ]
    assert [r.seconds for r in rows] == [2.0, 4.0, 0.5, 8.0]
    assert [r.batch for r in rows] == [2, 2, 2, 2]
    assert [r.images_per_second for r in rows] == [1.0, 0.5, 4.0, 0.25]
    assert rows[0].forwards_per_image == rows[1].forwards_per_image > 1
    assert math.isnan(rows[2].forwards_per_image) and math.isnan(rows[3].forwards_per_image)
    # the reference: torchlap's float32 map (the layer torchlap picks: model[4], 8x10)
    layer = ScoreCam(model).resolve_layer(None, images)
    reference = ScoreCam(model, mask_batch_size=8)(images, target)
    bfloat16 = ScoreCam(model, mask_batch_size=8, precision="bfloat16")(images, target)
    assert rows[0].correlation == pytest.approx(1.0)
    assert rows[1].correlation == pytest.approx(map_correlation(bfloat16, reference), abs=1e-6)
    expected = map_correlation(-images.mean(dim=1), reference)
    assert rows[2].correlation == pytest.approx(expected, abs=1e-6)
    coarse = torchcam["activations"].sum(dim=1)
    assert coarse.shape[-2:] == (8, 10)  # resized to the input's 16x20, corners not aligned
    upsampled = F.interpolate(coarse[:, None], size=(16, 20), mode="bilinear")[:, 0]
    aligned = F.interpolate(coarse[:, None], (16, 20), mode="bilinear", align_corners=True)[:, 0]
    expected = map_correlation(upsampled, reference)
    assert rows[3].correlation == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(map_correlation(aligned, reference), abs=1e-6)
    # each peer: the same layer, target classes and mask batch; grad-cam's hooks released
    assert grad_cam["layers"] == [dict(model.named_modules())[layer]]
    assert torchcam["layer"] == layer and torchcam["input_shape"] == (3, 16, 20)
    assert grad_cam["targets"] == torchcam["targets"] == target.tolist()
    assert grad_cam["batch_size"] == torchcam["batch_size"] == 8
    assert grad_cam["released"]
    assert "tqdm" not in capfd.readouterr().err  # grad-cam's progress bars kept off stderr


def test_scorecam_against_defaults_and_refusals(monkeypatch):
    model = small_cnn()
    images = torch.randn(1, 3, 16, 16)
    seen = {}
    fake_grad_cam(monkeypatch, seen, lambda x: x.mean(dim=1).numpy())
    rows = run_scorecam_against(model, images, peers=["grad-cam"], precisions=("float32",))
    assert [r.name for r in rows] == ["torchlap scorecam (float32)", "grad-cam ScoreCAM"]
    assert seen["batch_size"] == 64  # the CLI's --mask-batch-size default
    seen.clear()
    with pytest.raises(ValueError, match=r"unknown --against peer\(s\) \['gradcam'\]"):
        run_scorecam_against(model, images, peers=["grad-cam", "gradcam"])
    assert seen == {}  # refused before any work


def test_grad_cam_hooks_are_released_also_when_it_fails(monkeypatch):
    seen = {}

    def boom(x):
        raise RuntimeError("peer failed")

    fake_grad_cam(monkeypatch, seen, boom)
    with pytest.raises(RuntimeError, match="peer failed"):
        run_scorecam_against(small_cnn(), torch.randn(1, 3, 16, 16), peers=["grad-cam"])
    assert seen["released"]


class FakeExplainer:
    """Stands in for Rise and Sise: records its options and the targets it was given."""

    made: ClassVar[list] = []

    def __init__(self, model, **options):
        self.options = options
        self.last_stats = {"forwards_per_image": float(options.get("n_masks", 21))}
        FakeExplainer.made.append(self)

    def __call__(self, images, target):
        self.target = target
        return torch.zeros(images.shape[0], *images.shape[-2:])


def test_rise_vs_sise_settings_and_rows(monkeypatch, caplog):
    FakeExplainer.made = []
    monkeypatch.setattr(explain_peers, "Rise", FakeExplainer)
    monkeypatch.setattr(explain_peers, "Sise", FakeExplainer)
    monkeypatch.setattr(explain_peers, "time", FakeClock(5, 3.0, 1, 12.0))
    model = small_cnn()
    images = torch.randn(2, 3, 16, 16)
    with caplog.at_level(logging.INFO, logger="torchlap.bench.explain_peers"):
        rows = run_rise_vs_sise(model, images, precision="bfloat16")
    assert caplog.messages == ["timing sise (bfloat16)", "timing rise (8000 masks) (bfloat16)"]
    assert [r.name for r in rows] == ["sise (bfloat16)", "rise (8000 masks) (bfloat16)"]
    assert [r.seconds for r in rows] == [3.0, 12.0]
    assert [r.batch for r in rows] == [2, 2]
    assert [r.forwards_per_image for r in rows] == [21.0, 8000.0]
    assert all(math.isnan(r.correlation) for r in rows)  # no maps compared
    sise, rise = FakeExplainer.made
    # the SISE paper's settings: RISE with 8000 masks, SISE with its default mu = 0
    assert rise.options == {"n_masks": 8000, "mask_batch_size": 64, "precision": "bfloat16"}
    assert sise.options == {"mask_batch_size": 64, "precision": "bfloat16"}
    target = model(images).argmax(dim=1)
    assert torch.equal(sise.target, target) and torch.equal(rise.target, target)
    table = format_peer_rows(rows, reference=rows[1].name).splitlines()
    assert "speed vs rise (8000 masks) (bfloat16) |" in table[0]
    assert table[2] == "| sise (bfloat16) | 3.00 | 0.667 | 4.00x | 21 | - |"
    assert table[3] == "| rise (8000 masks) (bfloat16) | 12.00 | 0.167 | 1.00x | 8000 | - |"


def test_format_peer_rows_divides_the_reference_time_by_each_row():
    rows = [
        PeerRow("a", 2.0, 4, 10.0, 1.0),
        PeerRow("b", 0.5, 4, float("nan"), 0.25),
        PeerRow("c", 8.0, 4, 3.0, float("nan")),
    ]
    assert format_peer_rows(rows).splitlines() == [
        "| implementation | s / batch | images/s | speed vs a | forwards / image "
        "| map correlation with torchlap float32 |",
        "|---|---|---|---|---|---|",
        "| a | 2.00 | 2.000 | 1.00x | 10 | 1.000 |",
        "| b | 0.50 | 8.000 | 4.00x | - | 0.250 |",
        "| c | 8.00 | 0.500 | 0.25x | 3 | - |",
        "",
        "Maps differ: b (0.250) correlate below 0.99 with torchlap's float32 maps, so their "
        "speed is not compared at equal maps.",
    ]
    by_c = format_peer_rows(rows, reference="c").splitlines()
    assert "speed vs c |" in by_c[0]
    assert [line.split(" | ")[3] for line in by_c[2:5]] == ["4.00x", "16.00x", "1.00x"]
    unknown = format_peer_rows(rows, reference="zzz").splitlines()  # falls back to the first
    assert "speed vs a |" in unknown[0] and unknown[3].split(" | ")[3] == "4.00x"


def test_rows_whose_maps_agree_get_no_note():
    """At the stated agreement (0.99) and above, or without a comparison (nan), no row is named;
    every row below it is."""
    rows = [PeerRow("a", 1.0, 1, 1.0, 1.0), PeerRow("b", 1.0, 1, 1.0, 0.99)]
    assert len(format_peer_rows([*rows, PeerRow("c", 1.0, 1)]).splitlines()) == 5
    table = format_peer_rows([*rows, PeerRow("c", 1.0, 1, 1.0, 0.989), PeerRow("d", 1, 1, 1, -1)])
    assert table.splitlines()[-1] == (
        "Maps differ: c (0.989), d (-1.000) correlate below 0.99 with torchlap's float32 maps, "
        "so their speed is not compared at equal maps."
    )


def test_peer_row_images_per_second():
    assert PeerRow("x", 2.0, 6).images_per_second == 3.0
    assert PeerRow("x", 0.0, 6).images_per_second == math.inf
    assert math.isnan(PeerRow("x", 1.0, 6).forwards_per_image)


def test_map_correlation_is_per_image_pearson_averaged():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 4, 5, generator=generator) * 1e-3  # small norms: denominators < 1
    reference = maps * 2 + torch.rand(3, 4, 5, generator=generator) * 1e-3 + 7.0
    per_image = [
        np.corrcoef(maps[i].flatten().numpy(), reference[i].flatten().numpy())[0, 1]
        for i in range(3)
    ]
    assert map_correlation(maps, reference) == pytest.approx(np.mean(per_image), abs=1e-6)
    assert map_correlation(maps[:1], maps[:1]) == pytest.approx(1.0)
    # a constant map counts as 0 (not nan) in the mean
    flat = torch.cat([maps[:1], torch.full((1, 4, 5), 3.0)])
    assert map_correlation(flat, reference[:2]) == pytest.approx(per_image[0] / 2, abs=1e-6)
