"""A float64 model's maps are computed in float64 (the perturbation methods and the ante-hoc
energy map), checked against the slow references run in float64.

Before: Score-CAM, RISE and SISE took the masked images' scores with ``.float()`` and summed
them into float32 maps, and the ante-hoc explainer multiplied ``images.float()``; a float64
model's maps were float32 values cast back to float64 (relative errors near 1e-7). Half
precision still scores in float32; float32 is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from explainer_references import reference_scorecam
from test_explainers_sise import cnn, reference_sise
from torch import nn

from torchlap.explainers import Rise, ScoreCam, Sise, explain, rise_masks
from torchlap.explainers.maps import score_dtype
from torchlap.models import AnteHocModel

TIGHT = {"rtol": 1e-10, "atol": 1e-12}  # float64 summed in another order; float32 is ~1e-7


@contextmanager
def float64_by_default() -> Iterator[None]:
    """The references' own tensors (``torch.zeros`` accumulators) in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _model_and_images() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = cnn(lap=False).double()
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    return model, images, torch.tensor([1, 3])


def test_score_dtype_keeps_float64_and_widens_half_precision() -> None:
    assert score_dtype(torch.float64) == torch.float64
    assert score_dtype(torch.float32) == torch.float32
    assert score_dtype(torch.bfloat16) == torch.float32
    assert score_dtype(torch.float16) == torch.float32
    assert score_dtype(torch.bool) == torch.float32


def test_scorecam_of_a_float64_model_is_float64() -> None:
    model, images, target = _model_and_images()
    ours = ScoreCam(model, layer="7", mask_batch_size=5).raw(images, target)
    assert ours.dtype == torch.float64
    with float64_by_default():
        for i in range(2):
            expected = reference_scorecam(model, model[7], images[i], int(target[i]))
            torch.testing.assert_close(ours[i], expected, **TIGHT)


def test_rise_of_a_float64_model_is_float64() -> None:
    model, images, target = _model_and_images()
    n, p = 12, 0.5
    ours = Rise(model, n_masks=n, grid_size=4, mask_batch_size=5)(images, target)
    assert ours.dtype == torch.float64
    masks = rise_masks(n, (16, 16), grid_size=4, p=p).double()
    with float64_by_default():
        expected = torch.zeros(2, 16, 16)
        for b in range(2):
            for i in range(n):
                with torch.no_grad():
                    scores = model((images[b] * masks[i])[None]).softmax(1)
                expected[b] += scores[0, target[b]] * masks[i]
        expected /= n * p
    torch.testing.assert_close(ours, expected, **TIGHT)


def test_sise_of_a_float64_model_is_float64() -> None:
    model, images, target = _model_and_images()
    explainer = Sise(model, mask_batch_size=7)
    names = explainer.feature_probe(images).block_layers
    ours = explainer.visualization_maps(images, target)
    assert ours.dtype == torch.float64
    with float64_by_default():
        for i in range(2):
            _, expected = reference_sise(model, names, images[i], int(target[i]))
            for level, layer_map in enumerate(expected):
                torch.testing.assert_close(ours[level, i], layer_map, **TIGHT)


def test_antehoc_energy_of_a_float64_model_is_float64() -> None:
    model, images, _ = _model_and_images()
    antehoc = AnteHocModel(model, eta=2).double().eval()
    with torch.no_grad():
        antehoc.weight_network.decoder[-1].weight.normal_(0, 0.5)
    ours = explain(antehoc, images, "antehoc", kind="energy")
    assert ours.dtype == torch.float64
    with torch.no_grad():
        antehoc(images)
    interpretation = antehoc.maps.interpretation[:, 0]
    assert interpretation.dtype == torch.float64 and interpretation.shape[-2:] == (16, 16)
    expected = (images * interpretation[:, None]).sum(dim=1)
    torch.testing.assert_close(ours, expected, **TIGHT)
