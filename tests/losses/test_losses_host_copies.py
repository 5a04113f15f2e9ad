"""Eq. 5's per-head counts ``k`` on the training path: one exact-decimal count per distinct
ratio (not per head and step), and no tensor built from a Python list when every head has the
same ratio (on a GPU such a copy from the host waits for the device on every step)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from torchlap.losses import concept_discrimination_loss, expert_supervision_loss, ratio_count
from torchlap.losses.functional import _head_counts


def test_head_counts_equal_one_ratio_count_per_head() -> None:
    ratios = [0.1, None, 0.35, 0.1, 1.0, 0.0, 0.35]
    for n_pixels in (1, 49, 196, 50_176):
        expected = [0 if r is None else ratio_count(r, n_pixels) for r in ratios]
        assert _head_counts(ratios, n_pixels) == expected
        complement = [
            0 if r is None else ratio_count(1 - Fraction(repr(r)), n_pixels) for r in ratios
        ]
        assert _head_counts(ratios, n_pixels, complement=True) == complement


def _no_list_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.tensor

    def refuse(data, *args, **kwargs):
        if isinstance(data, (list, tuple)):
            raise AssertionError(f"torch.tensor({data!r}) on the loss path")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", refuse)


def test_one_ratio_for_every_head_builds_no_tensor_from_a_list(monkeypatch) -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 5, 6, 6, generator=generator).clamp(0.01, 0.99).requires_grad_(True)
    present = torch.rand(3, 5, generator=generator) > 0.5
    masks = torch.rand(3, 12, 12, generator=generator) > 0.6
    expected_weak = concept_discrimination_loss(probs, present)
    expected_expert = expert_supervision_loss(probs, masks, present, torch.ones(3, dtype=bool))
    _no_list_tensors(monkeypatch)
    weak = concept_discrimination_loss(probs, present)
    expert = expert_supervision_loss(probs, masks, present, torch.ones(3, dtype=bool))
    torch.testing.assert_close(weak, expected_weak, rtol=0, atol=0)
    torch.testing.assert_close(expert, expected_expert, rtol=0, atol=0)
    weak.backward()
    assert torch.isfinite(probs.grad).all()


class _CountingTable(torch.Tensor):
    """A concept table that counts the copies asked of it (``Tensor.to``)."""

    copies = 0
    watched = None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.to and args and args[0] is cls.watched:
            cls.copies += 1
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("supervision", ["weak", "expert"])
def test_injection_loss_copies_the_concept_table_once_not_every_step(supervision) -> None:
    from test_losses_injection import _batch, tiny_model

    from torchlap import attention_maps
    from torchlap.losses import ConceptSets, InjectionLoss, enable_discriminative_scorers

    model = tiny_model(n_concepts=3)
    enable_discriminative_scorers(model)
    images, labels, masks = _batch()
    sets = ConceptSets.default(2, 3)
    loss = InjectionLoss(sets, supervision=supervision)
    kwargs = {"region_masks": masks} if supervision == "expert" else {}
    model(images)
    expected = loss(attention_maps(model, detach=False), labels, **kwargs)
    sets.table = _CountingTable.watched = sets.table.as_subclass(_CountingTable)
    _CountingTable.copies = 0
    for _ in range(3):
        model(images)
        out = loss(attention_maps(model, detach=False), labels, **kwargs)
        torch.testing.assert_close(out["injection"], expected["injection"], rtol=0, atol=0)
    assert _CountingTable.copies == 1  # on the first step (before: one or two on every step)
