"""The knowledge-injection objective (paper 000, section III.B) beyond its value: the terms reach
the LAP layers' parameters, and a diverging model (some samples' outputs NaN) gets a NaN loss
with a warning rather than the loss's refusal of its maps. The base objective refuses a call."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from torchlap.losses import ConceptSets, InjectionLoss, enable_discriminative_scorers
from torchlap.models import lapify
from torchlap.models.objectives import InjectionObjective, Objective
from torchlap.train.wrapping import SmallCNN


def _lap_model() -> torch.nn.Module:
    torch.manual_seed(0)
    net, _ = lapify(SmallCNN(2, 3), "auto")
    enable_discriminative_scorers(net)
    return net


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"image": torch.rand(4, 3, 32, 32), "label": torch.tensor([0, 1, 0, 1])}


def test_the_base_objective_refuses_to_be_called() -> None:
    with pytest.raises(NotImplementedError, match="Objective does not define __call__"):
        Objective()(_lap_model(), _batch())


def _discriminative_grads(model: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for n, p in model.named_parameters() if ".discriminative_scorer." in n]


def test_the_injection_terms_train_the_discriminative_scorers() -> None:
    # the discriminative scoring module only chooses the top/bottom pixel sets of Eq. 5 (its
    # input is detached, it changes no logit): its one gradient is that of the first and third
    # terms of Eq. 5 (paper 000, III.B), so it shows whether the terms reach the model
    model, batch = _lap_model(), _batch()
    logits = model(batch["image"])
    F.cross_entropy(logits, batch["label"]).backward()
    grads = _discriminative_grads(model)
    assert grads and all(g is None or not g.any() for g in grads)  # nothing from the logits
    model.zero_grad(set_to_none=True)
    loss, terms, _ = InjectionObjective(InjectionLoss(ConceptSets.default(2, 1)))(model, batch)
    assert float(terms["discriminative"]) > 0
    loss.backward()
    grads = _discriminative_grads(model)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_one_sample_with_nan_outputs_gives_a_nan_loss_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = _lap_model().eval()  # eval: batch norm keeps the NaN in its sample
    batch = _batch()
    batch["image"][1, 0, 3, 3] = float("nan")
    objective = InjectionObjective(InjectionLoss(ConceptSets.default(2, 1)))
    with caplog.at_level(logging.WARNING, logger="torchlap.models.objectives"):
        loss, terms, logits = objective(model, batch)
    assert torch.isnan(logits[1]).all() and torch.isfinite(logits[[0, 2, 3]]).all()
    assert torch.isnan(loss) and torch.isnan(terms["total"])
    assert "the model's outputs are no longer finite" in caplog.text
