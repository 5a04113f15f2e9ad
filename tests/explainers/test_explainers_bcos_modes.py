"""The ``bcos`` explainer: which models it applies to, and the explanation-mode flags it leaves
behind (every module's flag as the caller had it, read right after the call)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from torchlap.models.bcos import bcos_available

if not bcos_available():  # pragma: no cover - `make test` installs the extra
    pytest.skip(
        "the bcos extra is not installed (pip install 'torchlap[bcos]')", allow_module_level=True
    )

from torchlap.explainers import explain
from torchlap.explainers.base import applicability
from torchlap.explainers.bcos import BcosExplainer
from torchlap.models.bcos import build_bcos


def _flags(model: nn.Module) -> list[bool]:
    """The explanation-mode flag (``detach``) of every module of the package that has one."""
    return [bool(m.detach) for m in model.modules() if hasattr(m, "set_explanation_mode")]


def _small_bcos() -> nn.Module:
    torch.manual_seed(0)
    return build_bcos("smallcnn", 2, in_channels=1).eval()


def test_the_explainer_applies_to_b_cos_models_only() -> None:
    bcos = _small_bcos()
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert BcosExplainer.applies_to(bcos)
    assert BcosExplainer.applies_to(nn.Sequential(bcos))  # a wrapped B-cos network
    assert not BcosExplainer.applies_to(plain)
    assert "not a B-cos network" in applicability("bcos", plain)


def test_explanation_mode_is_off_again_right_after_the_call() -> None:
    model = _small_bcos()
    assert _flags(model) and not any(_flags(model))
    maps = explain(model, torch.rand(2, 1, 16, 16), "bcos", torch.tensor([0, 1]))
    assert maps.shape == (2, 16, 16)
    assert not any(_flags(model))  # read before anything else switches them


def test_flags_the_caller_switched_on_stay_on() -> None:
    model = _small_bcos()
    switches = [m for m in model.modules() if hasattr(m, "set_explanation_mode")]
    switches[0].set_explanation_mode(True)
    before = _flags(model)
    explain(model, torch.rand(1, 1, 16, 16), "bcos", 0)
    assert _flags(model) == before == [True] + [False] * (len(before) - 1)


class _ModeRecorder(nn.Module):
    """An identity with ``set_explanation_mode`` but no ``detach`` flag (like the package's
    centered BatchNorm2d): it records every switch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bool] = []

    def set_explanation_mode(self, activate: bool = True) -> None:
        self.calls.append(bool(activate))

    def forward(self, x: Tensor) -> Tensor:
        return x


def test_a_module_without_a_detach_flag_is_switched_on_then_off() -> None:
    recorder = _ModeRecorder()
    model = nn.Sequential(recorder, _small_bcos())
    explain(model, torch.rand(1, 1, 16, 16), "bcos", 1)
    assert recorder.calls == [True, False]  # it was off before the call (no flag: off)
