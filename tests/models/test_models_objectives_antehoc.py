"""The ante-hoc objective (paper 004, section 2.1): where it finds the weight network, the
gradient each network gets (pass one, Eq. 2, trains only the CNN; pass two, Eq. 3, only the
weight network), and the maps of pass two dropped after the step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchlap.models.antehoc import AnteHocModel
from torchlap.models.objectives import AnteHocObjective
from torchlap.train.wrapping import NormalizedClassifier, SmallCNN


def _antehoc() -> AnteHocModel:
    torch.manual_seed(0)
    return AnteHocModel(SmallCNN(2, 3), eta=2)


def _batch() -> dict[str, Tensor]:
    torch.manual_seed(1)
    return {"image": torch.rand(4, 3, 16, 16), "label": torch.tensor([0, 1, 1, 0])}


class _Holder(nn.Module):
    """A wrapper with a ``net`` and, optionally, a ``normalize`` module."""

    def __init__(self, net: nn.Module, normalize: nn.Module | None) -> None:
        super().__init__()
        self.net = net
        if normalize is not None:
            self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda a: nn.Sequential(a),  # no net, no normalize
        lambda a: _Holder(a, None),  # the net, but no normalize to give pass two its images
        lambda a: _Holder(nn.Sequential(a), nn.Identity()),  # a normalize, but not its net
    ],
)
def test_an_antehoc_model_elsewhere_in_the_model_is_refused(wrap) -> None:  # type: ignore[no-untyped-def]
    model = wrap(_antehoc())
    with pytest.raises(ValueError, match="must be the trained model itself or the net of a"):
        AnteHocObjective().bind(model)
    with pytest.raises(ValueError, match="must be the trained model itself or the net of a"):
        AnteHocObjective()(model, _batch())


def _grads(params: list[nn.Parameter]) -> list[Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


def test_each_network_gets_the_gradient_of_its_own_pass() -> None:
    antehoc = _antehoc()
    model = NormalizedClassifier(antehoc, [0.4, 0.5, 0.6], [0.2, 0.3, 0.25])
    backbone = list(antehoc.backbone.parameters())
    weights = list(antehoc.weight_network.parameters())
    batch = _batch()
    # Eq. 2 alone: the cross-entropy of the CNN's logits
    F.cross_entropy(model(batch["image"]), batch["label"]).backward()
    task_backbone, task_weights = _grads(backbone), _grads(weights)
    assert all(not g.any() for g in task_weights)  # the logits do not depend on W
    model.zero_grad(set_to_none=True)
    antehoc.close()
    loss, terms, logits = AnteHocObjective()(model, batch)
    torch.testing.assert_close(terms["cross_entropy"], F.cross_entropy(logits, batch["label"]))
    torch.testing.assert_close(loss.detach(), terms["cross_entropy"] + terms["interpret"])
    assert float(terms["interpret"]) > 0
    assert antehoc.maps is None  # the maps of pass two (and their graph) are dropped
    loss.backward()
    # pass two adds nothing to the CNN's gradient, and is the weight network's only one
    for got, want in zip(_grads(backbone), task_backbone, strict=True):
        torch.testing.assert_close(got, want)
    assert sum(float(g.abs().sum()) for g in _grads(weights)) > 0
