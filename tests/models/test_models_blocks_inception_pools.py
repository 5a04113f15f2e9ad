"""Which convolutions of an Inception reduction block the LAP's score map pools: exactly the
strided ones of torchvision's InceptionB (Mixed_6a) and InceptionD (Mixed_7a), with windows
kernel = stride = 2 read at the centres of their 3x3 unpadded windows (offset 1); the others
keep running as they were."""

from __future__ import annotations

import pytest
from torchvision.models.inception import InceptionB, InceptionD

from torchlap.models import LapInceptionReduction

# torchvision's definitions: the stride-2 convolutions of each block (all 3x3, unpadded)
STRIDED = {
    "Mixed_6a": (InceptionB, ("branch3x3", "branch3x3dbl_3")),
    "Mixed_7a": (InceptionD, ("branch3x3_2", "branch7x7x3_4")),
}


@pytest.mark.parametrize("block", sorted(STRIDED))
def test_the_score_map_pools_exactly_the_strided_convolutions(block):
    make, strided = STRIDED[block]
    original = make(4)
    wrapped = LapInceptionReduction(original)
    assert wrapped.shared_pools() == {name: ((2, 2), (1, 1)) for name in strided}
    for name, unit in original.named_children():
        conv = getattr(wrapped, name).conv
        assert tuple(conv.stride) == (1, 1), name  # strided ones run at stride 1, then pooled
        assert tuple(unit.conv.stride) == ((2, 2) if name in strided else (1, 1)), name
