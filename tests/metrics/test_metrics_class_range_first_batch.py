"""A label past the model's classes is refused after the first batch's pass, not after a pass
over every image (the class count is the logits' width, known after the first forward)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap import metrics


class _Counting(nn.Module):
    """A 3-class model that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.head(x.mean(dim=(2, 3)))


CASES = {
    "keep_top_k": lambda m, x, s, y: metrics.keep_top_k(m, x, s, y, ks=(50,), batch_size=2),
    "drop_increase": lambda m, x, s, y: metrics.drop_increase(
        m, x, s, y, target="label", batch_size=2
    ),
    "drop_inc_win": lambda m, x, s, y: metrics.drop_inc_win(m, x, s, y, batch_size=2),
}


@pytest.mark.parametrize("name", CASES)
def test_a_label_past_the_classes_is_refused_after_one_batch(name: str) -> None:
    torch.manual_seed(0)
    model = _Counting()
    images, maps = torch.rand(8, 3, 8, 8), torch.rand(8, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 5])
    with pytest.raises(ValueError, match="5"):
        CASES[name](model, images, maps, labels)
    assert model.calls == 1  # 4 before: every batch of the original images ran first
