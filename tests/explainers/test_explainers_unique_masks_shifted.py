"""``unique_masks`` groups maps by their min-max normalised values, so maps that differ by an
offset (and a positive scale) give one mask: a Score-CAM/SISE mask is ``(A - min) / (max -
min)`` of the upsampled map, which neither an offset nor a scale changes."""

import torch

from torchlap.explainers.perturbation import unique_masks


def test_offset_copies_of_a_map_share_one_mask():
    generator = torch.Generator().manual_seed(3)
    # eighths up to 2: exact in float32 after an offset of 1 or 3 and a scale of 2 or 0.5
    base = torch.randint(0, 17, (4, 3, 3), generator=generator).float() / 8
    base[:, 0, 0], base[:, 2, 2] = 0.25, 1.75  # no constant map
    maps = torch.cat([base, base[:2] + 1.0, base[1:3] * 2 + 3.0, base[3:] * 0.5 + 1.0])
    group = torch.zeros(maps.shape[0], dtype=torch.long)
    first, inverse = unique_masks(maps, group)

    def normalized(i: int) -> tuple[float, ...]:
        values = maps[i].flatten().tolist()
        low, high = min(values), max(values)
        return tuple((v - low) / (high - low) for v in values)

    keys = [normalized(i) for i in range(maps.shape[0])]
    assert len(set(keys)) == 4  # the construction: the copies normalise to their originals
    for i in range(maps.shape[0]):
        for j in range(maps.shape[0]):
            assert bool(inverse[i] == inverse[j]) == (keys[i] == keys[j]), (i, j)
    assert first.numel() == 4
    for u, representative in enumerate(first.tolist()):
        assert representative == min((inverse == u).nonzero().flatten().tolist())
