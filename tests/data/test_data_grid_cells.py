"""The grid pointing game's grids: which images are eligible cells (correct and at least
``min_confidence``, a one-logit model read through its sigmoid) and which class each cell
records, checked against explicit per-image and per-pixel loops."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from torchlap.data.grid import build_grids, confident_images


class FixedLogits(nn.Module):
    """Returns row i of ``logits`` for an image whose pixels all equal i."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.table[x[:, 0, 0, 0].long()]


def _images(n: int) -> Tensor:
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()


def test_a_probability_equal_to_min_confidence_is_eligible() -> None:
    """'at least min_confidence': the threshold itself is eligible, just above it is not."""
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 2.0]])
    model = FixedLogits(logits)
    labels = torch.tensor([0, 1])
    p = float(torch.softmax(logits[0], dim=0)[0])  # about 0.75, as float32
    eligible, confidence = confident_images(model, _images(2), labels, min_confidence=p)
    assert float(confidence[0]) == p and bool(eligible[0])
    # the next float32 up (the probabilities are float32, and so is the comparison)
    above = float(torch.nextafter(torch.tensor(p), torch.tensor(1.0)))
    eligible, _ = confident_images(model, _images(2), labels, min_confidence=above)
    assert not bool(eligible[0])


def test_a_misclassified_image_is_never_eligible() -> None:
    """Correct first: a label with probability above min_confidence but not the argmax fails."""
    logits = torch.log(torch.tensor([[0.4, 0.5, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    labels = torch.tensor([0, 0, 2])
    for threshold in (0.0, 0.3):
        eligible, confidence = confident_images(FixedLogits(logits), _images(3), labels, threshold)
        expected = []
        for i in range(3):  # by hand: argmax == label and p(label) >= threshold
            probs = [math.exp(v) for v in logits[i].tolist()]
            probs = [v / sum(probs) for v in probs]
            correct = max(range(3), key=lambda k: probs[k]) == int(labels[i])
            expected.append(correct and probs[int(labels[i])] >= threshold)
        assert eligible.tolist() == expected == [False, True, True]
        torch.testing.assert_close(confidence, torch.tensor([0.4, 0.7, 0.8]))


def test_a_one_logit_model_reads_class_one_as_its_sigmoid() -> None:
    """One logit z: p(class 1) = sigmoid(z), p(class 0) = 1 - sigmoid(z)."""
    z = torch.tensor([[3.0], [3.0], [-3.0], [-3.0]])
    labels = torch.tensor([1, 0, 0, 1])
    eligible, confidence = confident_images(FixedLogits(z), _images(4), labels, 0.9)
    s = 1.0 / (1.0 + math.exp(-3.0))
    torch.testing.assert_close(confidence, torch.tensor([s, 1 - s, s, 1 - s]))
    assert eligible.tolist() == [True, False, True, False]


def test_cells_record_the_class_of_their_source_image_not_its_rank() -> None:
    """cell_classes holds class ids; with class 0 ineligible, ranks among the eligible
    classes (0..3) differ from the ids (1..4)."""
    labels = torch.tensor([0, 1, 2, 3, 4] * 3)
    images = (labels.float() + 1).view(-1, 1, 1, 1).expand(-1, 1, 3, 2).clone()
    eligible = labels != 0
    grids = build_grids(images, labels, eligible, (2, 2), n_grids=5, seed=3)
    for g in range(5):
        recorded = grids.cell_classes[g].tolist()
        assert 0 not in recorded and len(set(recorded)) == 4
        for cell in range(4):
            source = int(grids.cell_sources[g, cell])
            assert int(labels[source]) == recorded[cell]
            row, col = divmod(cell, 2)
            for y in range(3):  # the cell's pixels show its source image's value
                for x in range(2):
                    assert float(grids.images[g, 0, 3 * row + y, 2 * col + x]) == recorded[cell] + 1
