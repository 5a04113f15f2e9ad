"""``blaify``'s refusals at their boundaries (paper 002's BLA put in place of a global pool):
each wrong argument or model is refused before the model changes, with a message naming it,
and the value just inside the boundary is accepted. Also where the new module lives (the
replaced pool's dtype and train/eval flag)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchlap.models.bla import (
    BoundedLogitAttention,
    L2XFeatureSelection,
    apply_blaify_config,
    blaify,
)


class TinyNet(nn.Module):
    """16 channels; at input 4 a 2x2 feature map (4 positions)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class HalfGridPool(TinyNet):
    """An adaptive pool that keeps the input's width (``(2, None)``): no pool BLA can replace."""

    def __init__(self) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((2, None))


class PoolOnUnbatched(TinyNet):
    """The pool sees a (C, H, W) tensor: the feature map's channels cannot be told."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.avgpool(self.features(x)[0])
        return self.fc(pooled.flatten()).unsqueeze(0)


class PoolNeverRuns(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class PoolByKeyword(TinyNet):
    """The pool is called with a keyword argument: its pre-hook sees no positional input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(input=self.features(x)), 1))


class GridPoolWithoutHead(nn.Module):
    """VGG's 2x2 pool, but no ``nn.Linear`` reads its ``C*4`` flattened values."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Conv2d(8, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x))).flatten(1)


def test_a_pool_keeping_an_input_dimension_is_refused() -> None:
    model = HalfGridPool()
    with pytest.raises(ValueError, match="keeps an input dimension"):
        blaify(model, input_size=8, resize_head=True)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize("net", [PoolOnUnbatched, PoolNeverRuns, PoolByKeyword])
def test_a_pool_that_sees_no_batch_of_feature_maps_is_refused(net) -> None:
    model = net()
    with pytest.raises(ValueError, match="cannot tell the channels"):
        blaify(model, input_size=8)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


def test_resize_head_without_a_linear_reading_the_grid_is_refused() -> None:
    model = GridPoolWithoutHead()
    with pytest.raises(ValueError, match=r"found no nn\.Linear with 32 inputs"):
        blaify(model, input_size=8, resize_head=True)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"resize_head": 1}, TypeError, "resize_head must be a bool"),
        ({"inplace": "no"}, TypeError, "inplace must be a bool"),
        ({"where": 3}, TypeError, "where must be a module name"),
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"k": "auto"}, ValueError, "k='auto' is the selection size of 'l2x-f'"),
        ({"k": 0}, ValueError, "k"),
        ({"variant": "l2x-f", "k": "auto", "in_channels": 5}, ValueError, "in_channels=5 but"),
        ({"variant": "l2x-f", "k": 5}, ValueError, "L2X-F selects k=5"),
    ],
)
def test_bad_arguments_are_refused_before_the_model_changes(kwargs, error, match) -> None:
    model = TinyNet()
    with pytest.raises(error, match=match):
        blaify(model, input_size=4, **kwargs)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


def test_l2x_f_may_select_every_position_and_auto_k_reads_the_map() -> None:
    model, _ = blaify(TinyNet(), "l2x-f", k=4, input_size=4)  # k = the 4 positions of 2x2
    assert isinstance(model.avgpool, L2XFeatureSelection) and model.avgpool.k == 4
    model, _ = blaify(TinyNet(), "l2x-f", k="auto", input_size=4, in_channels=16)
    assert model.avgpool.k == 1 and model.avgpool.in_channels == 16  # max(1, round(8*4/49))


def test_the_module_takes_the_replaced_pools_dtype_and_mode() -> None:
    model = TinyNet().double().eval()
    model, _ = blaify(model, input_size=4)
    assert model.avgpool.scorer.weight.dtype == torch.float64
    assert not model.avgpool.training
    assert model(torch.rand(2, 3, 4, 4, dtype=torch.float64)).dtype == torch.float64
    model, _ = blaify(TinyNet().train(), in_channels=16)
    assert model.avgpool.training and isinstance(model.avgpool, BoundedLogitAttention)


def test_apply_blaify_config_refuses_what_blaify_did_not_record() -> None:
    for entry in ({}, {"theta": 0.1}, [("variant", "bla")]):
        with pytest.raises(ValueError, match="entry must be the dict blaify recorded"):
            apply_blaify_config(TinyNet(), entry)


def test_a_grid_pool_without_resize_head_is_refused_naming_its_grid() -> None:
    model = GridPoolWithoutHead()
    model.avgpool = nn.AdaptiveAvgPool2d((2, 3))
    with pytest.raises(ValueError, match=r"flattens the 2x3 grid .* nn\.Linear\(C\*6, d\)"):
        blaify(model, input_size=8)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


class NonSquareGrid(nn.Module):
    """VGG's layout with a 2x3 grid: the head reads C * 6 values."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((2, 3))
        self.classifier = nn.Sequential(nn.Linear(8 * 6, 5), nn.ReLU(), nn.Linear(5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_resize_head_finds_the_head_of_a_non_square_grid() -> None:
    model, names = blaify(NonSquareGrid(), input_size=8, resize_head=True)
    assert names == ["avgpool"] and isinstance(model.avgpool, BoundedLogitAttention)
    head = model.classifier[0]
    assert (head.in_features, head.out_features) == (8, 5)
    assert model.torchlap_config["blaify"]["resized_head"] == "classifier.0"
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 3)


class LinearBeforeThePool(NonSquareGrid):
    """A ``Linear(48, 48)`` registered before the pool (a stem over the flattened input): not
    the head; the head is the first such ``nn.Linear`` after the pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(48, 48)
        self._modules = {"stem": self._modules.pop("stem"), **self._modules}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.flatten(1)).view(-1, 3, 4, 4)
        return super().forward(x)


def test_resize_head_takes_the_first_linear_after_the_pool() -> None:
    model, _ = blaify(LinearBeforeThePool(), input_size=4, resize_head=True)
    assert list(model._modules)[:2] == ["stem", "features"]
    assert (model.stem.in_features, model.stem.out_features) == (48, 48)
    assert model.torchlap_config["blaify"]["resized_head"] == "classifier.0"
    assert model(torch.rand(2, 3, 4, 4)).shape == (2, 3)


def test_blaify_names_what_it_refuses_first() -> None:
    with pytest.raises(TypeError, match=r"^model must be an nn\.Module, got str$"):
        blaify("resnet18")  # type: ignore[arg-type]
    for variant in ("bla", "l2x-f"):
        with pytest.raises(ValueError, match=rf"^gamma is the threshold of .*, not of '{variant}'"):
            blaify(TinyNet(), variant, gamma=0.1, input_size=4)


def test_a_scripted_model_is_refused() -> None:
    with pytest.raises(TypeError, match=r"TorchScript module .* blaify cannot change"):
        blaify(torch.jit.script(TinyNet()), input_size=4)
