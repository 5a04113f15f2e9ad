"""BB-LAP on an RSNA-like batch: one head, boxes on the positives only, negatives marked
has_region=False (as the RSNA importer does). The paper's third term must still reach them."""

from __future__ import annotations

import math

import torch
from torch import nn

from torchlap import LocalAttentionPool2d, attention_maps
from torchlap.losses import LOG_EPS, ConceptSets, InjectionLoss


def _loop_reference(probs: torch.Tensor, inside: torch.Tensor, labels: list[int], iar: float):
    """Appendix A for one head, from its text: term 1 on the better half of the box pixels
    (x2), term 2 on every pixel outside, both over N_c; term 3 on the top ceil(IAR HW) pixels
    of the negatives, over N_c-bar."""
    batch, _, height, width = probs.shape
    pixels = [(i, j) for i in range(height) for j in range(width)]
    positives = [s for s in range(batch) if labels[s] == 1]
    negatives = [s for s in range(batch) if labels[s] == 0]
    total = 0.0
    for s in positives:
        p = {ij: float(probs[s, 0][ij]) for ij in pixels}
        box = [ij for ij in pixels if inside[s][ij]]
        out = [ij for ij in pixels if not inside[s][ij]]
        half = sorted(box, key=lambda ij, p=p: -p[ij])[: math.ceil(len(box) / 2)]
        first = sum(math.log(max(p[ij], LOG_EPS)) for ij in half) / len(half)
        second = sum(math.log(max(1 - p[ij], LOG_EPS)) for ij in out) / len(out)
        total -= (2 * first + second) / len(positives)
    k3 = math.ceil(iar * height * width)
    for s in negatives:
        values = sorted((float(probs[s, 0][ij]) for ij in pixels), reverse=True)[:k3]
        total -= sum(math.log(max(1 - v, LOG_EPS)) for v in values) / k3 / len(negatives)
    return total


def test_rsna_like_batch_gets_the_appendix_loss_and_no_concordance() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        LocalAttentionPool2d(4, 2, n_concepts=1),
        nn.Conv2d(4, 4, 3, padding=1),
        LocalAttentionPool2d(4, 2, n_concepts=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 1),
    )
    for layer in (model[2], model[4]):
        nn.init.normal_(layer.scorer.heads[-1].weight)
    images = torch.randn(5, 1, 16, 16)
    labels = torch.tensor([1, 0, 1, 0, 0])
    masks = torch.zeros(5, 16, 16)
    masks[0, 2:9, 3:12] = 1
    masks[2, 8:16, 0:5] = 1
    has_region = labels.bool()  # normal images have no region
    logits = model(images)
    maps = attention_maps(model, detach=False)
    loss = InjectionLoss(
        ConceptSets.default(2, 1), iar=0.1, supervision="expert", use_discriminative=False
    )
    out = loss(maps, labels, region_masks=masks, has_region=has_region, logits=logits)

    expected = []
    for lap in maps.values():
        probs = lap.concepts.detach().double()
        size = probs.shape[-1]
        cell = 16 // size  # divisible sizes: a cell is inside when any of its pixels is
        inside = masks.reshape(5, size, cell, size, cell).amax(dim=(2, 4)) > 0
        expected.append(_loop_reference(probs, inside, labels.tolist(), 0.1))
    # the default layer_reduction="sum": each LAP's expert loss, added
    torch.testing.assert_close(out["expert"].item(), sum(expected))
    assert out["discrimination"].item() == 0.0  # every positive has its box
    assert loss.weights["concordance"] == 0.0 and out["concordance"].item() > 0
    # cross-entropy 1 and 0.25 per LAP: 0.25 x each layer's term
    torch.testing.assert_close(
        out["total"], out["cross_entropy"] + 0.25 * sum(expected), check_dtype=False
    )
