"""Every explainer refuses a model whose logits (or masked-image scores) are NaN or infinite,
naming the method and the images, instead of returning maps of a NaN class, flat maps or NaN
maps."""

from __future__ import annotations

import pytest
import torch
from test_explainers_contract import METHODS as CONTRACT_METHODS
from torch import Tensor, nn

import torchlap
from torchlap.explainers import explain
from torchlap.models.wrapping import SmallCNN

MARK = 0.123  # the first pixel of an image the poisoned model answers with NaN

OPTIONS = {"rise": {"n_masks": 8}, "sise": {}, "scorecam": {}}
# every registered method, LAP last (it needs a LAP model: METHODS[:-1] are the others)
METHODS = [*(m for m in CONTRACT_METHODS if m != "lap"), "lap"]


class Poisoned(nn.Module):
    """SmallCNN (LAP-extended for ``lap``) whose logits are ``value`` for the images chosen by
    ``when`` (the gradients of the finite rows are untouched)."""

    def __init__(self, lap: bool, value: float, when: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        net = SmallCNN(3)
        self.net = torchlap.lapify(net)[0] if lap else net
        self.value = value
        self.when = when

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x)
        # "masked": a masked copy has pixels masked to exactly 0
        marked = self.when == "marked"
        bad = x[:, 0, 0, 0] == MARK if marked else (x == 0).flatten(1).any(dim=1)
        poison = torch.where(bad, self.value, 0.0)
        return logits + poison[:, None]


def images() -> Tensor:
    torch.manual_seed(1)
    batch = 0.5 + 0.5 * torch.rand(3, 3, 32, 32)
    batch[1, 0, 0, 0] = MARK
    return batch


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", [None, 2])
def test_non_finite_logits_are_refused_naming_the_images(method, value, target) -> None:
    model = Poisoned(method == "lap", value, "marked").eval()
    what = "returns NaN or infinite logits for"
    if method == "rise" and target is not None:  # no unmasked forward: its masked copies
        what = "gives NaN or infinite class scores on masked copies of"
    message = rf"{method}: the model {what} images \[1\] \(batch indices\).*explain only the"
    with pytest.raises(ValueError, match=message):
        explain(model, images(), method, target=target, **OPTIONS.get(method, {}))


@pytest.mark.parametrize("method", ["scorecam", "rise", "sise"])
def test_non_finite_scores_of_masked_images_are_refused(method) -> None:
    """The unmasked images' logits are finite; the masked forwards give NaN: the maps would be
    NaN (Score-CAM, RISE) or flat (SISE). Checked once, after the masked forwards."""
    model = Poisoned(False, float("nan"), "masked").eval()
    batch = images()
    with torch.no_grad():
        assert torch.isfinite(model(batch)).all()
    with pytest.raises(ValueError, match=rf"{method}: the model gives NaN or infinite class "
                       r"scores on masked copies of images \[0, 1, 2\]"):  # fmt: skip
        explain(model, batch, method, target=0, **OPTIONS[method])


def test_finite_models_are_unaffected() -> None:
    model = Poisoned(False, float("nan"), "marked").eval()
    batch = images()
    batch[1, 0, 0, 0] = 0.9  # no image marked
    for method in METHODS[:-1]:
        maps = explain(model, batch, method, **OPTIONS.get(method, {}))
        assert torch.isfinite(maps).all(), method
