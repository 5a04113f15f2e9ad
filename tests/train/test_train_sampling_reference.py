"""The sampler's orders written out by hand from its docstring: the ranks' interleaved slices of
one global order, the padding, the balanced batches' class sequence (paper 000 Appendix A),
the item seeds, the defaults and the refusals at their boundaries."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch

from torchlap.train.sampling import (
    EpochOrderSampler,
    ResumableBatchSampler,
    SeededItems,
    derive_seed,
)


def _indices(batches: list[list[tuple[int, int]]]) -> list[list[int]]:
    return [[index for _, index in batch] for batch in batches]


# ------------------------------------------------------------------ ranks and padding
def test_two_ranks_take_interleaved_slices_of_the_padded_dataset_order() -> None:
    """7 items, no shuffle, 2 ranks: the order 0..6 padded by its first item to 8; rank r
    takes positions r, r + 2, ...; the ranks' j-th batches of 2 together are the
    single-process j-th batch of 4 (but for the padded last one)."""
    ranks = [
        _indices(list(ResumableBatchSampler(EpochOrderSampler(7, shuffle=False, rank=r,
                                                              world_size=2), 2)))
        for r in (0, 1)
    ]  # fmt: skip
    assert ranks == [[[0, 2], [4, 6]], [[1, 3], [5, 0]]]
    single = _indices(list(ResumableBatchSampler(EpochOrderSampler(7, shuffle=False), 4)))
    assert single == [[0, 1, 2, 3], [4, 5, 6]]
    assert sorted(ranks[0][0] + ranks[1][0]) == single[0]
    assert sorted(ranks[0][1] + ranks[1][1]) == [0, *single[1]]  # the padded repeat of item 0
    assert [len(EpochOrderSampler(7, rank=r, world_size=2)) for r in (0, 1)] == [4, 4]


def test_the_shuffled_ranks_union_is_the_single_process_batch() -> None:
    """Shuffled, 12 items, 3 ranks of 2: the union of the ranks' j-th batches is the
    one-process j-th batch of 6 (same seed, phase and epoch)."""
    kw = {"seed": 11, "phase": 2}
    single_sampler = EpochOrderSampler(12, **kw)
    single_sampler.set_epoch(5)
    single = list(ResumableBatchSampler(single_sampler, 6))
    for j in range(2):
        union = []
        for r in range(3):
            sampler = EpochOrderSampler(12, rank=r, world_size=3, **kw)
            sampler.set_epoch(5)
            union += list(ResumableBatchSampler(sampler, 2))[j]
        assert sorted(union) == sorted(single[j])
    assert sorted(i for batch in _indices(single) for i in batch) == list(range(12))


def test_item_seeds_are_derived_from_seed_phase_epoch_and_index() -> None:
    sampler = EpochOrderSampler(5, seed=9, phase=1, shuffle=False)
    sampler.set_epoch(3)
    assert list(sampler) == [(derive_seed(9, 1, 3, i), i) for i in range(5)]


def test_the_defaults_are_a_seed_0_phase_0_shuffled_padded_single_rank_order() -> None:
    default = EpochOrderSampler(40)
    explicit = EpochOrderSampler(40, seed=0, phase=0, shuffle=True, rank=0, world_size=1,
                                 follow_epoch=True, pad=True)  # fmt: skip
    assert torch.equal(default.global_order(), explicit.global_order())
    assert list(default) == list(explicit)
    assert default.global_order().tolist() != list(range(40))  # shuffled
    assert sorted(default.global_order().tolist()) == list(range(40))
    before = default.global_order()
    default.set_epoch(1)  # follows the epoch
    assert not torch.equal(default.global_order(), before)
    assert len(EpochOrderSampler(5, world_size=2, rank=1)) == 3  # padded: 5 -> 6


def test_without_follow_epoch_every_epoch_has_the_epoch_0_order() -> None:
    sampler = EpochOrderSampler(30, seed=2, follow_epoch=False)
    first = sampler.global_order()
    sampler.set_epoch(4)
    assert torch.equal(sampler.global_order(), first) and sampler.epoch == 0


def test_resumable_batches_drop_the_last_partial_batch_when_asked() -> None:
    sampler = EpochOrderSampler(7, shuffle=False)
    batches = ResumableBatchSampler(sampler, 3, drop_last=True)
    assert len(batches) == 2 and _indices(list(batches)) == [[0, 1, 2], [3, 4, 5]]
    batches.skip_batches(1)
    assert _indices(list(batches)) == [[3, 4, 5]]
    batches.skip_batches(0)
    assert len(list(batches)) == 2


@pytest.mark.parametrize("count", [-1, True, 1.0, "1"])
def test_a_bad_skip_count_is_refused(count: object) -> None:
    batches = ResumableBatchSampler(EpochOrderSampler(4), 2)
    with pytest.raises(ValueError, match=rf"count must be an int >= 0, got {count!r}"):
        batches.skip_batches(count)  # type: ignore[arg-type]


# ------------------------------------------------------------------ balanced batches
def _classes(sampler: EpochOrderSampler, labels: list[int]) -> list[int]:
    return [labels[i] for i in sampler.global_order().tolist()]


def test_balanced_batches_of_four_over_three_classes_by_hand() -> None:
    """3 classes of 4, global batches of 4: one draw of every class plus one more for the
    class the remainder has reached (0, then 1, then 2); in batch j the classes in turn from
    class j on. Every class draws 4 times over the epoch: each of its items once."""
    labels = [2, 0, 1] * 4
    sampler = EpochOrderSampler(12, seed=1, labels=labels, batch_size=4)
    assert _classes(sampler, labels) == [0, 0, 1, 2, 1, 1, 2, 0, 2, 2, 0, 1]
    assert sorted(sampler.global_order().tolist()) == list(range(12))


def test_balanced_batches_with_a_last_short_batch_by_hand() -> None:
    """3 classes of 4, batches of 5: [2, 2, 1] draws in batch 0 (the remainder 2 from class
    0 on), [1, 2, 2]... written per class k: batch 1 starts the remainder at class 2 (classes
    2 and 0 get the extra draw), the last batch of 2 at class 1 (classes 1 and 2)."""
    labels = [0, 1, 2] * 4
    sampler = EpochOrderSampler(12, seed=3, labels=labels, batch_size=5)
    assert _classes(sampler, labels) == [0, 0, 1, 1, 2, 1, 2, 2, 0, 0, 2, 1]
    assert sorted(sampler.global_order().tolist()) == list(range(12))


def test_a_rare_class_is_drawn_again_in_a_new_order_and_a_frequent_one_partly() -> None:
    labels = [0] * 6 + [1] * 2
    sampler = EpochOrderSampler(8, seed=5, labels=labels, batch_size=4)
    order = sampler.global_order().tolist()
    assert [labels[i] for i in order] == [0, 0, 1, 1, 1, 1, 0, 0]
    rare = [i for i in order if labels[i] == 1]
    assert sorted(rare[:2]) == [6, 7] and sorted(rare[2:]) == [6, 7]  # two full rounds
    frequent = [i for i in order if labels[i] == 0]
    assert len(set(frequent)) == 4  # 4 of the 6, none twice


def test_balanced_two_ranks_deal_each_batch_class_after_class() -> None:
    """Rank r takes positions r, r + 2, ... of the global order: batch [0, 0, 1, 1] gives
    each rank one item of each class; the item seeds carry the global position."""
    labels = [0] * 4 + [1] * 4
    orders, pairs = [], []
    for rank in (0, 1):
        sampler = EpochOrderSampler(8, seed=2, phase=1, rank=rank, world_size=2, labels=labels,
                                    batch_size=4)  # fmt: skip
        sampler.set_epoch(6)
        orders.append(sampler.order().tolist())
        pairs.append(list(sampler))
    glob = EpochOrderSampler(8, seed=2, phase=1, labels=labels, batch_size=4)
    glob.set_epoch(6)
    everything = glob.global_order().tolist()
    assert orders == [everything[0::2], everything[1::2]]
    for rank in (0, 1):
        for j in range(2):
            assert sorted(labels[i] for i in orders[rank][2 * j : 2 * j + 2]) == [0, 1]
        expected = [
            (derive_seed(2, 1, 6, everything[p], p), everything[p]) for p in range(rank, 8, 2)
        ]
        assert pairs[rank] == expected


def test_balanced_evaluation_order_keeps_its_length_without_padding() -> None:
    labels = [0, 1] * 3 + [0]
    sampler = EpochOrderSampler(7, labels=labels, batch_size=4, world_size=2, pad=False)
    assert len(sampler.global_order()) == 7
    padded = EpochOrderSampler(7, labels=labels, batch_size=4, world_size=2)
    assert len(padded.global_order()) == 8
    # fewer items than one batch: one short batch, class 0 first with the remainder's draw
    small = EpochOrderSampler(3, labels=[1, 0, 0], batch_size=4)
    assert _classes(small, [1, 0, 0]) == [0, 0, 1]
    assert sorted(small.global_order().tolist()) == [0, 1, 2]


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n_items": True}, r"n_items must be an int >= 1, got True"),
        ({"n_items": 2.0}, r"n_items must be an int >= 1, got 2.0"),
        ({"world_size": 0}, r"world_size must be an int >= 1, got 0"),
        ({"world_size": True}, r"world_size must be an int >= 1, got True"),
        ({"rank": -1}, r"rank must be an int in \[0, 0\], got -1"),
        ({"rank": False}, r"rank must be an int in \[0, 0\], got False"),
        ({"rank": 0.0}, r"rank must be an int in \[0, 0\], got 0.0"),
        ({"labels": [0, 1, 0, 1], "batch_size": None}, r"balanced batches need batch_size"),
        ({"labels": [0, 1, 0, 1], "batch_size": True}, r"balanced batches need batch_size"),
        ({"labels": [0, 1, 0, 1], "batch_size": 0}, r"balanced batches need batch_size"),
        ({"labels": [0, 1, 0, 1], "batch_size": 2.0}, r"balanced batches need batch_size"),
        ({"labels": [0, -1, 0, 1], "batch_size": 2}, r"labels must be 4 class indices"),
        ({"labels": [True, False] * 2, "batch_size": 2}, r"labels must be 4 class indices"),
        ({"labels": [[0, 1], [0, 1]], "batch_size": 2}, r"labels must be 4 class indices"),
        ({"labels": ["a"] * 4, "batch_size": 2}, r"labels must be 4 class indices"),
    ],
)
def test_bad_sampler_arguments_are_refused(kw: dict, match: str) -> None:
    options = {"n_items": 4, **kw}
    with pytest.raises(ValueError, match=match):
        EpochOrderSampler(**options)


def test_boundary_arguments_are_accepted() -> None:
    assert EpochOrderSampler(1).global_order().tolist() == [0]
    assert EpochOrderSampler(4, rank=1, world_size=2).order().numel() == 2
    sampler = EpochOrderSampler(4, labels=torch.tensor([0, 3, 0, 3]), batch_size=1)
    assert sampler.labels is not None and sampler.labels.dtype == torch.int64
    assert sorted(Counter(sampler.labels.tolist()).values()) == [2, 2]


# ------------------------------------------------------------------------- seeds and items
def test_derive_seed_is_two_seed_sequence_words_in_63_bits() -> None:
    """The seeds recorded runs were trained with: NumPy's SeedSequence of the parts (each
    taken modulo 2**32), its first word shifted by 31 bits XOR its second, in 63 bits (a
    change would give a resumed run other batches and augmentations than before)."""
    for parts in [(0,), (3, 1, 4), (2**40 + 5, 7), (123456789, 0, 2, 99, 5)]:
        words = np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(2)
        expected = ((int(words[0]) * 2**31) ^ int(words[1])) % 2**63
        assert derive_seed(*parts) == expected
        assert 0 <= derive_seed(*parts) < 2**63


def test_seeded_items_seed_every_rng_from_the_item_seed_and_restore_them() -> None:
    class Draws:
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> tuple:
            return random.random(), float(np.random.rand()), float(torch.rand(1)), index

    items = SeededItems(Draws())
    assert len(items) == 2
    seed = 2**40 + 17
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    got = items[(seed, 1)]
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
    expected_py = random.Random(seed).random()
    expected_np = float(np.random.RandomState(seed % 2**32).rand())
    expected_torch = float(torch.rand(1, generator=torch.Generator().manual_seed(seed)))
    assert got == (expected_py, expected_np, expected_torch, 1)
