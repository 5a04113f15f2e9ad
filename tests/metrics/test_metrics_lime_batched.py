"""``lime_cell_scores`` scores the whole batch at once; captum's ``Lime`` (the implementation it
used before, one image and one sample at a time in Python) is the slow reference: the same
patterns (drawn under ``torch.manual_seed(seed)``), weights and least-squares fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.metrics.lime_faithfulness import lime_cell_scores


class Small(nn.Module):
    """A nonlinear classifier that counts its forwards."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 9, 5)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        hidden = torch.tanh(self.conv(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(hidden, 3).flatten(1))


def captum_scores(model, images, mask, targets, n_samples, seed, baseline, per_eval, score,
                  weighting):  # fmt: skip
    """The per-image captum loop ``lime_cell_scores`` ran before (the slow reference)."""
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr import Lime

    def forward(x):
        logits = model(x)
        return logits.softmax(dim=1) if score == "probability" else logits

    lime = Lime(
        forward,
        interpretable_model=SkLearnLinearRegression(),
        similarity_func=(lambda *a, **k: 1.0) if weighting == "none" else None,
    )
    feature_mask = mask.expand(1, images.shape[1], *mask.shape)
    rows = []
    for index in range(images.shape[0]):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            coefficients = lime.attribute(
                images[index : index + 1], baselines=baseline, target=int(targets[index]),
                feature_mask=feature_mask, n_samples=n_samples, perturbations_per_eval=per_eval,
                return_input_shape=False,
            )  # fmt: skip
        rows.append(coefficients.reshape(1, -1).float())
    return torch.cat(rows)


def ragged_mask() -> torch.Tensor:
    """Six cells of unequal sizes on a 9x11 image."""
    rows = torch.tensor([0] * 4 + [1] * 5)
    cols = torch.tensor([0] * 3 + [1] * 5 + [2] * 3)
    return rows[:, None] * 3 + cols[None, :]


@pytest.mark.parametrize(
    ("weighting", "score", "baseline", "n_samples", "per_eval"),
    [
        ("kernel", "probability", 0.0, 80, 7),
        ("none", "logit", 0.25, 50, 50),
        ("kernel", "logit", -0.5, 33, 1000),
        ("kernel", "probability", 0.0, 4, 3),  # fewer samples than cells: the minimum-norm fit
    ],
)
def test_batched_lime_equals_captums_per_image_loop(
    weighting, score, baseline, n_samples, per_eval
) -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 9, 11, generator=generator) + 0.2
    targets = torch.tensor([4, 0, 2])
    mask = ragged_mask()
    model = Small().eval()
    with torch.no_grad():
        expected = captum_scores(
            model, images, mask, targets, n_samples, 11, baseline, per_eval, score, weighting
        )
    got = lime_cell_scores(
        model, images, mask, targets, n_samples=n_samples, seed=11, baseline=baseline,
        perturbations_per_eval=per_eval, score=score, weighting=weighting,
    )  # fmt: skip
    assert got.shape == (3, 6) and got.dtype == torch.float32
    # captum fits in float32 (scikit-learn on its float32 arrays), torchlap in float64
    torch.testing.assert_close(got, expected, rtol=2e-4, atol=2e-5)


def test_a_forward_takes_copies_of_several_images() -> None:
    """One forward per ``perturbations_per_eval`` copies of the whole batch (captum's loop ran
    ``ceil(n_samples / perturbations_per_eval)`` forwards per image)."""
    images = torch.rand(4, 3, 9, 11, generator=torch.Generator().manual_seed(5))
    model = Small().eval()
    images.requires_grad_(True)  # no graph is built (the scores are numbers, not a loss)
    scores = lime_cell_scores(
        model, images, ragged_mask(), 1, n_samples=30, perturbations_per_eval=40
    )
    assert model.calls == 1 + 3  # the target check, then 120 copies in forwards of 40
    assert not scores.requires_grad
