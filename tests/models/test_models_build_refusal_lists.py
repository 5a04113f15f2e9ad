"""A ``.safetensors`` file that does not fit the model is refused naming at most eight keys of
each kind: the shape mismatches (in the file's key order, by name) and the missing keys (in
the model's order). (The unexpected keys: test_models_build_weights.py.) Files made here in
tmp_path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from torchlap.models.build import load_pretrained_file

N = 10  # more than the eight named


class _Deep(nn.Module):
    """A first convolution, N hidden linears h0 ... h9 and the classifier (the last linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        for i in range(N):
            self.add_module(f"h{i}", nn.Linear(2, 2))
        self.classifier = nn.Linear(2, 2)


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _listed(message: str, kind: str) -> list[str]:
    """The keys the refusal names after ``kind`` (its list literal)."""
    match = re.search(kind + r" \[(.*?)\]", message)
    assert match is not None, message
    return re.findall(r"'(h\d)\.", match.group(1))


def test_at_most_eight_shape_mismatches_are_named(tmp_path: Path) -> None:
    state = dict(_Deep().state_dict())
    for i in range(N):
        state[f"h{i}.weight"] = torch.zeros(3, 3)
    path = _save(state, tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match="does not hold weights of this architecture") as info:
        load_pretrained_file(_Deep(), path, 3)
    assert _listed(str(info.value), "shape mismatches") == [f"h{i}" for i in range(8)]
    assert "(3, 3) vs (2, 2)" in str(info.value)
    assert _listed(str(info.value), "missing keys") == []


def test_at_most_eight_missing_keys_are_named(tmp_path: Path) -> None:
    state = {k: v for k, v in _Deep().state_dict().items() if not k.endswith(".bias")}
    path = _save(state, tmp_path / "biasless.safetensors")
    with pytest.raises(ValueError, match="does not hold weights of this architecture") as info:
        load_pretrained_file(_Deep(), path, 3)
    # conv.bias first (the model's order), then the hidden linears' up to eight in all; the
    # classifier's bias may be missing (a classifier is left fresh when it does not fit)
    match = re.search(r"missing keys \[(.*?)\]", str(info.value))
    assert match is not None
    named = re.findall(r"'([^']+)'", match.group(1))
    assert named == ["conv.bias", *(f"h{i}.bias" for i in range(7))]
