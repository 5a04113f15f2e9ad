"""``LapExportModule``'s settings and its pass's maps, and ``verify_onnx``'s batches.

LAP All's defaults are Algorithm 1's (paper 000, supplement: decay ``alpha <- 0.8``; a pixel is
active when "greater than 0.5"); the threshold's bound is 1 inclusive; concept sets that fit no
LAP layer are refused when the module is built; a LAP layer that ran in an earlier forward but
not in this one is named (its old map is not exported as this pass's); an image one pixel wide
or high goes through. ``verify_onnx`` feeds onnxruntime batches of ``batch_size`` images (1
included, 16 by default), every image once, in order, and reports per output the largest
difference over all batches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import torchlap
from torchlap.export import LapExportModule, output_names, verify_onnx


class _Model(torch.nn.Module):
    """A LAP model; with ``extra``, a second LAP layer that runs while ``use_extra`` is set."""

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.extra = torchlap.LocalAttentionPool2d(4, 2) if extra else None
        self.pool = torchlap.AdaptiveLocalAttentionPool2d(4, 1)
        self.fc = torch.nn.Linear(4, 2)
        self.use_extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.use_extra:
            x = self.extra(x)
        return self.fc(self.pool(x).flatten(1))


def test_lap_all_defaults_are_algorithm_1s() -> None:
    module = LapExportModule(_Model())
    assert (module.decay, module.threshold) == (0.8, 0.5)


def test_the_threshold_may_be_1_and_no_more() -> None:
    assert LapExportModule(_Model(), threshold=1.0).threshold == 1.0
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        LapExportModule(_Model(), threshold=1.01)


def test_concept_sets_fitting_no_layer_are_refused_when_built() -> None:
    # the model's LAP layers have one head each: head 1 is beyond every layer
    with pytest.raises(ValueError, match=r"^concept_sets name concept head 1, but no LAP layer"):
        LapExportModule(_Model(extra=True), concept_sets={0: [0], 1: [1]})


def test_a_layer_that_ran_only_in_an_earlier_forward_is_named() -> None:
    model = _Model(extra=True).eval()
    module = LapExportModule(model)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert len(module(images)) == 4  # logits, the two layers' maps, LAP All
        model(images)  # the caller's own pass: each layer keeps its map
        model.use_extra = False  # the extra layer's map of the pass above is still there
        with pytest.raises(ValueError, match=r"LAP layer\(s\) \['extra'\] did not run"):
            module(images)


def test_an_image_one_pixel_wide_or_high_goes_through() -> None:
    module = LapExportModule(_Model().eval())
    with torch.no_grad():
        for height, width in ((8, 1), (1, 8)):
            outputs = module(torch.rand(2, 3, height, width))
            assert outputs[-1].shape == (2, height, width)


def _verify(tmp_path, monkeypatch, module, images, changed=None, **options):
    """``verify_onnx`` with onnxruntime faked: its session computes the module's outputs (as
    an export in eval mode does), then ``changed(index of the batch, outputs)``; returns the
    differences and the batches fed."""
    fed: list[torch.Tensor] = []

    def run(names, feeds):
        batch = torch.from_numpy(feeds["images"]).clone()
        fed.append(batch)
        with torch.no_grad():
            outputs = [t.numpy().copy() for t in module(batch)]
        return outputs if changed is None else changed(len(fed) - 1, outputs)

    inputs = [SimpleNamespace(name="images", shape=("batch", 3, 8, 8))]
    session = SimpleNamespace(get_inputs=lambda: inputs, run=run)
    runtime = SimpleNamespace(InferenceSession=lambda *args, **kwargs: session)
    monkeypatch.setattr("torchlap.export._require_onnxruntime", lambda: runtime)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"stand-in: the session is faked")
    return verify_onnx(path, module, images, **options), fed


@pytest.mark.parametrize(("count", "options", "sizes"), [(3, {"batch_size": 1}, [1, 1, 1]),
                                                          (17, {}, [16, 1])])  # fmt: skip
def test_verify_feeds_batches_of_batch_size(
    tmp_path, monkeypatch, count: int, options: dict, sizes: list[int]
) -> None:
    torch.manual_seed(0)
    module = LapExportModule(_Model().eval()).eval()
    images = torch.rand(count, 3, 8, 8)
    worst, fed = _verify(tmp_path, monkeypatch, module, images, **options)
    assert worst == dict.fromkeys(output_names(module), 0.0)
    assert [len(batch) for batch in fed] == sizes
    torch.testing.assert_close(torch.cat(fed), images)


def test_verify_reports_the_largest_difference_over_the_batches(tmp_path, monkeypatch) -> None:
    """One pixel of one output off by a known amount in each batch: the larger one is
    reported, whichever batch holds it; an output never changed reports 0."""
    torch.manual_seed(0)
    module = LapExportModule(_Model().eval()).eval()
    offsets = {"logits": (0.25, 0.125), "lap_all": (0.125, 0.25)}  # (batch 0, batch 1)

    def changed(index, outputs):
        for name, offset in offsets.items():
            output = outputs[output_names(module).index(name)]
            output.reshape(-1)[-1] += np.float32(offset[index])
        return outputs

    images = torch.rand(4, 3, 8, 8)
    worst, _ = _verify(tmp_path, monkeypatch, module, images, changed, batch_size=2)
    assert worst["logits"] == pytest.approx(0.25, abs=1e-6)
    assert worst["lap_all"] == pytest.approx(0.25, abs=1e-6)
    assert worst["lap_pool"] == 0.0
