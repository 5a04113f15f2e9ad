"""LIME's cell scores (paper 002, section 4.3) against a slow reference written from the text.

The paper: "we compute LIME scores for patches ... by randomly sampling 1000 occlusion
patterns and fitting a least squares model"; LIME (Ribeiro et al., which it cites, section 2)
occludes the "absent" cells with black and weights each sample by its proximity to the image.
torchlap's ``lime_cell_scores`` documents the weights as captum's default kernel,
``exp(-d^2 / 2)`` with ``d`` the cosine distance between the image and the occluded copy
(``weighting="kernel"``), or none (``weighting="none"``: plain least squares).

The reference reads the occlusion patterns back from the inputs the model was given (a cell
is present when its pixels are the image's, absent when they are the baseline), computes the
weights by loops, and solves the weighted least-squares problem with an intercept by its
normal equations (Gauss-Jordan elimination over Python floats). Nothing of torchlap is used
but the function under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchlap.metrics.lime_faithfulness import lime_cell_scores

SIDE, CELLS = 8, 2  # a 2x2 grid of 4x4 cells on an 8x8 image


class Recorder(nn.Module):
    """A small nonlinear classifier that keeps every input it is given (so the weighting
    matters: a linear model in the cells would be fitted exactly by any weights)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4, 3)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        hidden = torch.tanh(self.conv(x))
        return self.fc(nn.functional.avg_pool2d(hidden, 4).flatten(1)) * 2.0


def cell_of(row: int, col: int) -> int:
    return (row // (SIDE // CELLS)) * CELLS + col // (SIDE // CELLS)


def pattern(image: torch.Tensor, sample: torch.Tensor, baseline: float) -> list[float]:
    """1 for a cell whose pixels are the image's, 0 for one set to ``baseline``."""
    present = [None] * (CELLS * CELLS)
    for r in range(SIDE):
        for c in range(SIDE):
            for ch in range(image.shape[0]):
                value = float(sample[ch, r, c])
                if value == float(image[ch, r, c]):
                    state = 1.0
                elif value == baseline:
                    state = 0.0
                else:
                    raise AssertionError("a pixel is neither the image's nor the baseline")
                cell = cell_of(r, c)
                assert present[cell] in (None, state), "a cell both present and absent"
                present[cell] = state
    return present


def kernel_weight(image: torch.Tensor, sample: torch.Tensor) -> float:
    """exp(-d^2 / 2), d = 1 - cos(image, sample) over all pixels and channels (the cosine of a
    zero vector, every cell black, is 0)."""
    a = [float(v) for v in image.flatten()]
    b = [float(v) for v in sample.flatten()]
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    distance = 1.0 - (dot / norms if norms > 0 else 0.0)
    return math.exp(-(distance**2) / 2.0)


def probability(logits: torch.Tensor, target: int) -> float:
    values = [float(v) for v in logits]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return exps[target] / sum(exps)


def weighted_least_squares(rows: list[list[float]], ys: list[float], ws: list[float]):
    """argmin_beta sum_s w_s (y_s - beta_0 - sum_j beta_j z_sj)^2: [beta_1..beta_n] (the
    intercept beta_0 dropped), by the normal equations and Gauss-Jordan elimination."""
    design = [[1.0, *row] for row in rows]
    size = len(design[0])
    matrix = [
        [sum(w * x[i] * x[j] for x, w in zip(design, ws, strict=True)) for j in range(size)]
        + [sum(w * x[i] * y for x, y, w in zip(design, ys, ws, strict=True))]
        for i in range(size)
    ]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(matrix[r][col]))
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        lead = matrix[col][col]
        matrix[col] = [v / lead for v in matrix[col]]
        for r in range(size):
            if r != col:
                factor = matrix[r][col]
                matrix[r] = [v - factor * p for v, p in zip(matrix[r], matrix[col], strict=True)]
    return [matrix[i][size] for i in range(1, size)]


@pytest.mark.parametrize("weighting", ["kernel", "none"])
@pytest.mark.parametrize("baseline", [0.0, 0.25])
def test_lime_cell_scores_are_the_weighted_least_squares_fit(weighting, baseline) -> None:
    model = Recorder()
    images = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)) + 0.3
    mask = torch.tensor([[cell_of(r, c) for c in range(SIDE)] for r in range(SIDE)])
    targets = torch.tensor([2, 0])
    n_samples = 40
    scores = lime_cell_scores(
        model, images, mask, targets, n_samples=n_samples, seed=4, baseline=baseline,
        perturbations_per_eval=7, weighting=weighting,
    )  # fmt: skip
    seen = torch.cat(model.seen[1:])  # the first call checks the targets' range (one image)
    assert seen.shape[0] == 2 * n_samples  # one LIME run of n_samples per image
    for index in range(2):
        image = images[index]
        samples = seen[index * n_samples : (index + 1) * n_samples]
        rows = [pattern(image, sample, baseline) for sample in samples]
        assert 0 < sum(map(sum, rows)) < n_samples * 4  # both states occur
        with torch.no_grad():
            ys = [probability(model(sample[None])[0], int(targets[index])) for sample in samples]
        if weighting == "kernel":
            ws = [kernel_weight(image, sample) for sample in samples]
            assert max(ws) - min(ws) > 1e-3  # the weights differ: the kernel is exercised
        else:
            ws = [1.0] * n_samples
        expected = torch.tensor(weighted_least_squares(rows, ys, ws), dtype=torch.float32)
        torch.testing.assert_close(scores[index], expected, rtol=1e-4, atol=1e-5)


def test_the_two_weightings_differ_on_a_nonlinear_model() -> None:
    images = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)) + 0.3
    mask = torch.tensor([[cell_of(r, c) for c in range(SIDE)] for r in range(SIDE)])
    kernel = lime_cell_scores(Recorder(), images, mask, 1, n_samples=40, seed=4)
    plain = lime_cell_scores(Recorder(), images, mask, 1, n_samples=40, seed=4, weighting="none")
    assert not torch.allclose(kernel, plain, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match=r"weighting must be one of \('kernel', 'none'\)"):
        lime_cell_scores(Recorder(), images, mask, 1, weighting="cosine")
