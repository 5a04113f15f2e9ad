"""InjectionLoss against loops written from paper 000's text, not from torchlap's functions.

Eq. 5 (section III.B.1) per LAP layer, the discriminative scoring module's loss ("the first and
third terms of Eq. 5, without multiplying the first term by 2, and with k1 = k3 = HW"), Eq. 6
(section III.B.2) per pair of consecutive LAP layers, and Appendix A's weights: "cross-entropy
loss on the classification head, concept-discrimination loss, and inter-LAPs concordance loss
with weights of 1, 0.25 per LAP, and 0.25 per LAP pair"; full supervision: "cross-entropy loss
on LAPs considering experts' bounding boxes as the ground truth with weights of 1 and 0.25 per
LAP", the loss "similar to" Eq. 5 with the boxes choosing the pixels.

Where the papers are silent the loops follow torchlap's documented reading (README, "Where
torchlap interprets the papers"): the discriminative scorer's loss weighs 0.25 per LAP; Eq. 6
runs on both maps max-pooled to the coarser size, summed over heads and averaged over samples;
``t = 0.1``; a positive without a box gets Eq. 5's terms, and every positive of a head, boxed
or not, counts in its N_c ("the number of samples containing concept c").
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch

from torchlap.layers import LapMaps
from torchlap.losses import ConceptSets, InjectionLoss
from torchlap.models.recipes import paper_loss_weights

LABELS = [0, 1, 1, 0, 1, 0]
COMMON = 2  # ConceptSets.default(2, 3): head c in class c, head 2 in every class
MIN_AR, MAX_AR, IAR = [0.1, 0.1, None], [0.5, 0.5, 0.25], [0.1, 0.1, None]  # CelebA-like
SIZES = (8, 4, 2)  # three LAP layers, two pairs
IMAGE = 16
# image rows r0:r1, columns c0:c1 of each boxed sample (the others have no box)
MIXED = {0: (2, 9, 3, 12), 1: (8, 16, 0, 5), 5: (0, 6, 10, 16), 2: (4, 12, 4, 12)}
EVERY = {**MIXED, 3: (0, 4, 0, 4), 4: (10, 16, 10, 16)}  # RSNA-like: every positive boxed


def _k(ratio: float | None, n: int) -> int:
    """ceil(ratio * n) on the decimal value of the ratio (0 when the term is off)."""
    return 0 if ratio is None else math.ceil(Fraction(str(ratio)) * n)


def _present(s: int, c: int) -> bool:
    return c == COMMON or LABELS[s] == c


def _maps(seed: int) -> dict[str, LapMaps]:
    gen = torch.Generator().manual_seed(seed)
    maps = {}
    for index, size in enumerate(SIZES):
        shape = (len(LABELS), 3, size, size)
        concepts = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.9 + 0.05
        disc = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.9 + 0.05
        maps[f"lap{index}"] = LapMaps(concepts, concepts.amax(1, keepdim=True), disc, (size, size))
    return maps


def _pixels(size: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(size) for j in range(size)]


def _by(values: list[list[float]], pixels, reverse: bool):
    return sorted(pixels, key=lambda ij: values[ij[0]][ij[1]], reverse=reverse)


def _eq5_positive(p, d, c: int) -> float:
    """One positive sample's bracket of Eq. 5 (before the division by N_c), sets chosen on the
    discriminative map ``d``: 2 x mean ln p over top k1, + mean ln(1 - p) over bottom k2."""
    n = len(p) ** 2
    k1 = _k(MIN_AR[c], n)
    k2 = 0 if MAX_AR[c] is None else math.ceil((1 - Fraction(str(MAX_AR[c]))) * n)
    pixels = _pixels(len(p))
    top, bottom = _by(d, pixels, True)[:k1], _by(d, pixels, False)[:k2]
    value = 2 * sum(math.log(p[i][j]) for i, j in top) / k1 if k1 else 0.0
    return value + (sum(math.log(1 - p[i][j]) for i, j in bottom) / k2 if k2 else 0.0)


def _eq5_negative(p, d, c: int) -> float:
    """One negative sample's third term (before the division by N_c-bar): mean ln(1 - p) over
    the top k3 pixels of ``d``."""
    k3 = _k(IAR[c], len(p) ** 2)
    top = _by(d, _pixels(len(p)), True)[:k3]
    return sum(math.log(1 - p[i][j]) for i, j in top) / k3 if k3 else 0.0


def _expert_positive(p, box: tuple[int, int, int, int]) -> float:
    """Appendix A for a boxed positive: 2 x mean ln p over "half of the pixels with higher
    importance probability within the box", + mean ln(1 - p) over "all the zones out of the
    bounding boxes" (a map pixel is inside when its image cell touches the box)."""
    size, cell = len(p), IMAGE // len(p)
    r0, r1, c0, c1 = box
    inside = [
        (i, j) for i, j in _pixels(size)
        if i * cell < r1 and (i + 1) * cell > r0 and j * cell < c1 and (j + 1) * cell > c0
    ]  # fmt: skip
    outside = [ij for ij in _pixels(size) if ij not in inside]
    half = _by(p, inside, True)[: math.ceil(len(inside) / 2)]
    value = 2 * sum(math.log(p[i][j]) for i, j in half) / len(half)
    return value + (sum(math.log(1 - p[i][j]) for i, j in outside) / len(outside) if outside else 0)


def _concept_loss(
    p_all, d_all, boxes: dict | None, rule: str = "all", own_common: bool = False
) -> float:
    """One layer's Eq. 5 (``boxes`` None) or expert loss (``boxes``: sample -> box; the common
    head gets Eq. 5, a class region being no target for it). ``rule="all"``: every positive of
    a head counts in its N_c; ``"split"``: boxed and unboxed positives each over their own
    count (torchlap before the fix), to show that the two differ on a mixed batch.
    ``own_common``: the common head's sets are chosen on its own map ``p``, not on ``d``."""
    total = 0.0
    for c in range(3):
        chooser = p_all if own_common and c == COMMON else d_all
        pos = [s for s in range(len(LABELS)) if _present(s, c)]
        neg = [s for s in range(len(LABELS)) if not _present(s, c)]
        boxed = {s for s in pos if boxes is not None and s in boxes and c != COMMON}
        for s in pos:
            if s in boxed:
                value = _expert_positive(p_all[s][c], boxes[s])
            else:
                value = _eq5_positive(p_all[s][c], chooser[s][c], c)
            group = boxed if s in boxed else set(pos) - boxed
            total -= value / (len(pos) if rule == "all" else len(group))
        for s in neg:
            total -= _eq5_negative(p_all[s][c], chooser[s][c], c) / len(neg)
    return total


def _discriminative_loss(d_all) -> float:
    """First and third terms of Eq. 5 on the discriminative maps, k1 = k3 = HW, no factor 2."""
    total = 0.0
    for c in range(3):
        pos = [s for s in range(len(LABELS)) if _present(s, c)]
        neg = [s for s in range(len(LABELS)) if not _present(s, c)]
        for group, active in ((pos, True), (neg, False)):
            for s in group:
                d = d_all[s][c]
                logs = [math.log(v if active else 1 - v) for row in d for v in row]
                total -= sum(logs) / len(logs) / len(group)
    return total


def _cell_max(p, size: int):
    cell = len(p) // size
    return [
        [max(p[i * cell + a][j * cell + b] for a in range(cell) for b in range(cell))
         for j in range(size)]
        for i in range(size)
    ]  # fmt: skip


def _concordance(fine_all, coarse_all, t: float = 0.1) -> float:
    """Eq. 6 between two consecutive layers: per sample and head, over the pixels with
    |p_l - p_l+1| > t, 1/(2M) sum of the two Jensen-Shannon terms; summed over heads, averaged
    over samples."""
    total = 0.0
    for s in range(len(LABELS)):
        for c in range(3):
            size = len(coarse_all[s][c])
            p, q = _cell_max(fine_all[s][c], size), coarse_all[s][c]
            terms = [
                (p[i][j] - q[i][j]) * math.log(p[i][j] / q[i][j])
                + (q[i][j] - p[i][j]) * math.log((1 - p[i][j]) / (1 - q[i][j]))
                for i, j in _pixels(size)
                if abs(p[i][j] - q[i][j]) > t
            ]
            total += sum(terms) / (2 * len(terms)) if terms else 0.0
    return total / len(LABELS)


def _cross_entropy(logits: list[list[float]]) -> float:
    return sum(
        math.log(sum(math.exp(z) for z in row)) - row[y]
        for row, y in zip(logits, LABELS, strict=True)
    ) / len(LABELS)


def _reference(maps, logits, boxes=None, rule="all", own_common=False) -> dict[str, float]:
    layers = [(m.concepts.tolist(), m.discriminative.tolist()) for m in maps.values()]
    concept = sum(_concept_loss(p, d, boxes, rule, own_common) for p, d in layers)
    scorer = sum(_discriminative_loss(d) for _, d in layers)
    pairs = sum(_concordance(a[0], b[0]) for a, b in itertools.pairwise(layers))
    ce = _cross_entropy(logits.tolist())
    weight_pair = 0.25 if boxes is None else 0.0  # Appendix A names no concordance for experts
    injection = 0.25 * concept + 0.25 * scorer + weight_pair * pairs
    return {"concept": concept, "injection": injection, "total": 1.0 * ce + injection}


def _loss(supervision: str) -> InjectionLoss:
    return InjectionLoss(ConceptSets.default(2, 3), MIN_AR, MAX_AR, IAR, supervision=supervision)


def _logits() -> torch.Tensor:
    return torch.randn(len(LABELS), 2, generator=torch.Generator().manual_seed(3)).double()


@pytest.mark.parametrize("seed", [0, 1])
def test_weak_mode_matches_eq5_eq6_and_the_appendix_weights(seed: int) -> None:
    maps, logits = _maps(seed), _logits()
    out = _loss("weak")(maps, torch.tensor(LABELS), logits=logits)
    want = _reference(maps, logits)
    torch.testing.assert_close(out["discrimination"].item(), want["concept"])
    torch.testing.assert_close(out["injection"].item(), want["injection"])
    torch.testing.assert_close(out["total"].item(), want["total"])


def _masks(boxes: dict) -> torch.Tensor:
    masks = torch.zeros(len(LABELS), IMAGE, IMAGE)
    for s, (r0, r1, c0, c1) in boxes.items():
        masks[s, r0:r1, c0:c1] = 1
    return masks


def _expert(maps, logits, boxes: dict) -> dict[str, torch.Tensor]:
    has_region = torch.tensor([s in boxes for s in range(len(LABELS))])
    return _loss("expert")(maps, torch.tensor(LABELS), region_masks=_masks(boxes),
                           has_region=has_region, logits=logits)  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_expert_mode_divides_boxed_and_unboxed_positives_by_the_same_n_c(seed: int) -> None:
    # class 0 positives: 0 and 5 boxed, 3 not; class 1 positives: 1 and 2 boxed, 4 not
    maps, logits = _maps(seed), _logits()
    out = _expert(maps, logits, MIXED)
    want = _reference(maps, logits, MIXED)
    torch.testing.assert_close(out["discrimination"].item() + out["expert"].item(), want["concept"])
    torch.testing.assert_close(out["injection"].item(), want["injection"])
    torch.testing.assert_close(out["total"].item(), want["total"])
    split = _reference(maps, logits, MIXED, rule="split")["concept"]
    assert abs(split - want["concept"]) > 0.1  # the rule before the fix differs here


def test_expert_mode_with_every_positive_boxed_is_unchanged_by_the_n_c_rule() -> None:
    maps, logits = _maps(2), _logits()
    out = _expert(maps, logits, EVERY)
    want = _reference(maps, logits, EVERY)
    assert want["concept"] == pytest.approx(_reference(maps, logits, EVERY, "split")["concept"])
    torch.testing.assert_close(out["total"].item(), want["total"])
    assert out["discrimination"].item() > 0  # the common head keeps Eq. 5


@pytest.mark.parametrize("supervision", ["weak", "expert"])
def test_common_head_sets_on_its_own_map(supervision: str) -> None:
    """``common_head_sets="own"``: the common head's Eq. 5 sets are its own top/bottom pixels
    (the discriminative module's loss pushes a common head up at every pixel of every sample,
    so its map ranks by no concept); the class heads keep the discriminative module's sets."""
    maps, logits = _maps(4), _logits()
    boxes = MIXED if supervision == "expert" else None
    kwargs = {"supervision": supervision, "common_head_sets": "own"}
    loss = InjectionLoss(ConceptSets.default(2, 3), MIN_AR, MAX_AR, IAR, **kwargs)
    extra = {} if boxes is None else {
        "region_masks": _masks(boxes),
        "has_region": torch.tensor([s in boxes for s in range(len(LABELS))]),
    }  # fmt: skip
    out = loss(maps, torch.tensor(LABELS), logits=logits, **extra)
    want = _reference(maps, logits, boxes, own_common=True)
    concept = out["discrimination"] + out["expert"]
    torch.testing.assert_close(concept.item(), want["concept"])
    torch.testing.assert_close(out["total"].item(), want["total"])
    default = _reference(maps, logits, boxes)["concept"]
    assert abs(default - want["concept"]) > 1e-3  # the two rules differ on these maps


def test_common_head_sets_refuses_other_values() -> None:
    with pytest.raises(ValueError, match="common_head_sets must be one of"):
        InjectionLoss(ConceptSets.default(2, 3), common_head_sets="main")


@pytest.mark.parametrize("supervision", ["weak", "expert"])
def test_training_reduction_matches_the_appendix_weights(supervision: str) -> None:
    """``torchlap train``'s loss (layer means weighted by ``paper_loss_weights``) against the
    loops: the same total as 0.25 per LAP and 0.25 per LAP pair."""
    maps, logits = _maps(5), _logits()
    boxes = MIXED if supervision == "expert" else None
    weights = paper_loss_weights(len(SIZES), supervision)
    loss = InjectionLoss(
        ConceptSets.default(2, 3), MIN_AR, MAX_AR, IAR, supervision=supervision,
        weights=weights, layer_reduction="mean",
    )  # fmt: skip
    extra = {} if boxes is None else {
        "region_masks": _masks(boxes),
        "has_region": torch.tensor([s in boxes for s in range(len(LABELS))]),
    }  # fmt: skip
    out = loss(maps, torch.tensor(LABELS), logits=logits, **extra)
    want = _reference(maps, logits, boxes)
    torch.testing.assert_close(out["total"].item(), want["total"])
