"""The example batch ``export_run`` traces with and returns, as its docstring gives it: random
images in [0, 1] of the run's channels and size; ``batch_size`` images (2 by default) for a
TorchScript file, which takes that batch only; ``max(batch_size, 2)`` for the formats with a
dynamic batch (torch.export fixes a traced batch of 1 as a constant)."""

from __future__ import annotations

import torch

from torchlap.export import export_run


def test_torchscript_traces_two_images_by_default_and_takes_that_batch(run_dir, tmp_path):
    path, module, example = export_run(run_dir, tmp_path / "m.pt", "torchscript")
    assert example.shape == (2, 1, 32, 32)
    assert float(example.min()) >= 0 and float(example.max()) <= 1
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        for want, got in zip(module(example), loaded(example), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_dynamic_batch_is_traced_from_two_images_when_one_is_asked(run_dir, tmp_path):
    _, _, example = export_run(run_dir, tmp_path / "m.pt2", "exported-program", batch_size=1)
    assert example.shape == (2, 1, 32, 32)
