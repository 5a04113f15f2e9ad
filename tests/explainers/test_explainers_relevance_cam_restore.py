"""Relevance-CAM leaves the model as it found it when the explanation fails inside zennit's
composite (the batch norms merged back out of the weights, zennit's hooks and the canonizers'
attributes removed, the train flag back)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from torchlap.explainers import RelevanceCam


class NanForMarkedImages(nn.Module):
    """A conv-BN-ReLU net whose logits are NaN for an image whose first pixel is 7."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 5, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, 3),
        )
        with torch.no_grad():
            self.net[1].running_mean.uniform_(-0.5, 0.5)
            self.net[1].running_var.uniform_(0.5, 2.0)
            self.net[1].weight.uniform_(0.5, 1.5)

    def forward(self, x: Tensor) -> Tensor:
        poisoned = torch.where(x[:, 0, 0, 0] == 7.0, float("nan"), 0.0)
        return self.net(x) + poisoned[:, None]


def _state(model: nn.Module) -> dict[str, object]:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "data": [p.data.data_ptr() for p in model.parameters()],
        "attributes": {name: set(vars(m)) for name, m in model.named_modules()},
        "children": {name: dict(m._modules) for name, m in model.named_modules()},
        "hooks": [
            len(getattr(m, kind))
            for m in model.modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
        ],
    }


def test_an_error_inside_the_composite_leaves_the_model_as_it_was() -> None:
    model = NanForMarkedImages().train()
    before = _state(model)
    images = torch.rand(2, 3, 8, 8)
    images[1, 0, 0, 0] = 7.0  # image 1: the one-image target check sees image 0 only
    with pytest.raises(ValueError, match=r"NaN or infinite logits for images \[1\]"):
        RelevanceCam(model, layer="net.2")(images, torch.tensor([0, 1]))
    after = _state(model)
    assert after["hooks"] == before["hooks"]
    assert after["attributes"] == before["attributes"]
    assert after["children"] == before["children"]
    assert after["data"] == before["data"]
    for key, value in before["tensors"].items():
        torch.testing.assert_close(after["tensors"][key], value, rtol=0, atol=0, msg=key)
    assert all(m.training for m in model.modules())
    # and the model explains its finite images afterwards as a fresh copy does
    images[1, 0, 0, 0] = 0.5
    fresh = NanForMarkedImages()
    torch.testing.assert_close(
        RelevanceCam(model, layer="net.2")(images), RelevanceCam(fresh, layer="net.2")(images)
    )


def test_a_canonizer_failing_after_one_that_hooked_the_model_leaves_no_hook() -> None:
    from zennit.canonizers import Canonizer

    class Hooking(Canonizer):
        """A user's canonizer that puts a forward hook on the model (undone by ``remove``)."""

        def apply(self, root_module: nn.Module) -> list:
            self.handle = root_module.register_forward_hook(lambda *args: None)
            return [self]

        def register(self) -> None:
            pass

        def remove(self) -> None:
            self.handle.remove()

    class Failing(Hooking):
        def apply(self, root_module: nn.Module) -> list:
            raise RuntimeError("a user's canonizer failing")

    model = NanForMarkedImages()
    hooks = _state(model)["hooks"]
    with pytest.raises(RuntimeError, match="a user's canonizer failing"):
        RelevanceCam(model, layer="net.2", canonizers=[Hooking(), Failing()])(
            torch.rand(1, 3, 8, 8)
        )
    assert _state(model)["hooks"] == hooks


@pytest.mark.parametrize("canonizers", [5, {"a set"}, None])
def test_canonizers_that_are_no_list_are_refused_saying_what_is_accepted(canonizers) -> None:
    with pytest.raises(TypeError, match=r"canonizers must be 'auto' or a list of zennit"):
        RelevanceCam(NanForMarkedImages(), canonizers=canonizers)


def test_a_lap_layer_type_without_an_lrp_rule_is_named() -> None:
    from torchlap.layers import LapBase

    class WeightedMeanLap(LapBase):
        """A LAP layer of a type torchlap has no LRP rule for: the score-weighted mean."""

        def forward(self, x: Tensor) -> Tensor:
            weights = self._score(x).flatten(2).softmax(dim=-1)
            return (x.flatten(2) * weights).sum(dim=-1)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), WeightedMeanLap(4), nn.Linear(4, 3))
    with pytest.raises(TypeError, match="no LRP rule for LAP layer type WeightedMeanLap"):
        RelevanceCam(model, layer="1")(torch.rand(2, 3, 8, 8))


def test_a_frozen_model_gives_the_same_map() -> None:
    # the relevance flows back from the logits to the layer through the images' graph: a model
    # whose parameters do not require gradients (frozen for evaluation) is explained alike
    images = torch.rand(2, 3, 8, 8)
    expected = RelevanceCam(NanForMarkedImages(), layer="net.4")(images, 0)
    frozen = NanForMarkedImages().requires_grad_(False)
    torch.testing.assert_close(RelevanceCam(frozen, layer="net.4")(images, 0), expected)
    assert bool((expected > 0).any())
