"""Inception v3 and GoogLeNet built without weights: torchlap asks torchvision for
``init_weights=True`` (the constructors' documented behaviour for ``init_weights=None``,
which torchvision keeps but warns about), so the network is initialised as torchvision's own
scheme says, without the FutureWarning; an ``init_weights`` the user gives is kept.

The expected values come from torchvision's constructors (inception.py, googlenet.py): with
``init_weights`` every ``nn.Conv2d``/``nn.Linear`` weight is drawn from a normal of std 0.1
(Inception v3) or 0.01 (GoogLeNet), truncated at +-2 (far beyond these stds); without it the
``nn.Linear`` keeps PyTorch's default, uniform within +-1/sqrt(fan_in)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from torchlap.models.build import build_model

# torchvision's init_weights scheme: (std of the truncated normal, features into the classifier)
SCHEMES = {"inception_v3": (0.1, 2048), "googlenet": (0.01, 1024)}


def _std(values: torch.Tensor) -> float:
    """The sample standard deviation, one value at a time (no torch reduction)."""
    flat = [float(v) for v in values.detach().flatten()]
    mean = sum(flat) / len(flat)
    return math.sqrt(sum((v - mean) ** 2 for v in flat) / (len(flat) - 1))


@pytest.mark.parametrize("arch", sorted(SCHEMES))
def test_without_weights_the_network_gets_torchvisions_init_without_a_warning(arch: str) -> None:
    std, fan_in = SCHEMES[arch]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # torchvision's init_weights=None warning
        model = build_model(arch, 2, lap="none")
    weight = model.fc.weight
    assert weight.shape == (2, fan_in)
    # 2 x fan_in draws: the sample std is within a few percent of the scheme's
    assert abs(_std(weight) - std) < 0.1 * std
    # PyTorch's default would be uniform within +-1/sqrt(fan_in): a std of 1/sqrt(3 fan_in)
    assert abs(_std(weight) - 1 / math.sqrt(3 * fan_in)) > 0.2 * std


@pytest.mark.parametrize("arch", sorted(SCHEMES))
def test_an_init_weights_the_user_gives_is_kept(arch: str) -> None:
    _, fan_in = SCHEMES[arch]
    model = build_model(arch, 2, lap="none", arch_kwargs={"init_weights": False})
    bound = 1 / math.sqrt(fan_in)  # PyTorch's nn.Linear default: uniform(-bound, bound)
    assert float(model.fc.weight.detach().abs().max()) <= bound
    assert model.torchlap_config["arch_kwargs"] == {"init_weights": False}
