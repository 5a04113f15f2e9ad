"""lapify(where="auto"/"global") site selection on small models built here.

The expected sites follow the documented rule (paper 000, III.C; torchlap.models.lapify):
every down-sampling step whose output stride (the product of the step strides so far, a step
being all down-sampling modules that read the same resolution, its stride the largest of
theirs) is 8 or more, plus the global pool (the last adaptive pool after which no BatchNorm,
LAP or bigger map runs). Each case names the output strides by hand.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torchvision.models.inception import InceptionD

from torchlap import lapify
from torchlap.layers import AdaptiveLocalAttentionPool2d, LocalAttentionPool2d, lap_modules
from torchlap.models import LapInceptionReduction


def head(channels: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2)]


def outputs_keep_their_shape(model: nn.Module, x: torch.Tensor, before: torch.Size) -> None:
    with torch.no_grad():
        assert model(x).shape == before


def vanilla_shape(model: nn.Module, x: torch.Tensor) -> torch.Size:
    with torch.no_grad():
        return model.eval()(x).shape


@pytest.mark.parametrize("first", [(2, 1), (1, 2)])
def test_a_step_may_shrink_one_axis_and_counts_with_its_largest_stride(first):
    # 16x16 -> (first pool) 8x16 or 16x8: output stride 2; -> 4x8 or 8x4: 4; -> 2x4 or 4x2: 8
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.MaxPool2d(first, first),
        nn.MaxPool2d(2),
        nn.MaxPool2d(2),
        *head(4),
    )
    x = torch.randn(1, 3, 16, 16)
    before = vanilla_shape(model, x)
    _, names = lapify(model, input_size=16)
    assert names == ["3", "4"]
    assert type(model[1]) is nn.MaxPool2d and type(model[2]) is nn.MaxPool2d
    lap = model[3]
    assert isinstance(lap, LocalAttentionPool2d) and lap.in_channels == 4
    assert lap.kernel_size == (2, 2) and lap.stride == (2, 2) and lap.padding == (0, 0)
    assert isinstance(model[4], AdaptiveLocalAttentionPool2d)
    outputs_keep_their_shape(model, x, before)


class TwoPaths(nn.Module):
    """A stride-2 stem, then two paths reading the same map: stride 2, and stride 4 upsampled."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.a = nn.MaxPool2d(2)
        self.b = nn.MaxPool2d(4)
        self.up = nn.Upsample(scale_factor=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.a(x) + self.up(self.b(x))
        return self.fc(self.pool(x).flatten(1))


def test_paths_reading_one_resolution_are_one_step_of_their_largest_stride():
    # stem: output stride 2; the step {a (2), b (4)} reads the stem's map: 2 * 4 = 8
    model = TwoPaths().eval()
    x = torch.randn(1, 3, 16, 16)
    before = vanilla_shape(model, x)
    _, names = lapify(model, input_size=16)
    assert names == ["a", "b", "pool"]
    assert model.b.kernel_size == (4, 4) and model.b.stride == (4, 4)
    assert model.a.kernel_size == (2, 2) and model.a.stride == (2, 2)
    assert type(model.stem) is nn.Conv2d
    outputs_keep_their_shape(model, x, before)


def test_a_stride_one_pool_is_no_down_sampling_step():
    # the 3x3 stride-1 pool keeps 16x16 (it is a site, but not a step); then 2, 4, 8
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.MaxPool2d(3, 1, 1),
        nn.MaxPool2d(2),
        nn.MaxPool2d(2),
        nn.MaxPool2d(2),
        *head(4),
    )
    _, names = lapify(model, input_size=16)
    assert names == ["4", "5"]


def test_a_pool_steps_by_its_stride_not_by_its_kernel():
    # 2x2/2 pool: output stride 2; 4x4 windows at stride 2: 4 (< 8: no LAP)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.MaxPool2d(2),
        nn.MaxPool2d(4, 2, 1),
        *head(4),
    )
    _, names = lapify(model, input_size=16)
    assert names == ["3"]


@pytest.mark.parametrize(("stem_stride", "expected"), [(1, ["2"]), (4, ["1", "2", "3"])])
def test_an_inception_reduction_is_one_step_of_stride_two(stem_stride, expected):
    # stem stride 1: the reduction is at output stride 2, the 3x3/3 pool at 6 (no LAP);
    # stem stride 4: the reduction is at 8 (one LAP for the block), the pool at 24 (a LAP)
    layers: list[nn.Module] = []
    if stem_stride > 1:
        layers.append(nn.Conv2d(3, 3, stem_stride, stride=stem_stride))
    layers += [InceptionD(3), nn.MaxPool2d(3, 3), *head(3 + 320 + 192)]
    model = nn.Sequential(*layers).eval()
    size = 19 * stem_stride
    x = torch.randn(1, 3, size, size)
    before = vanilla_shape(model, x)
    _, names = lapify(model, input_size=size)
    assert names == expected
    if stem_stride > 1:
        block = model[1]
        assert isinstance(block, LapInceptionReduction)
        assert block.lap.kernel_size == (3, 3) and block.lap.stride == (2, 2)
        assert block.lap.in_channels == 3
        assert model[2].kernel_size == (3, 3) and model[2].stride == (3, 3)
    outputs_keep_their_shape(model, x, before)


def test_no_shrink_is_refused_naming_the_map_height_then_width():
    # 1x2 map: the 2x2/2 pool with padding 1 gives 1x2 again
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2, 2, 1), *head(4))
    with pytest.raises(ValueError, match=r"1 \(stride 2\) gets a 1x2 map and does not shrink"):
        lapify(model, input_size=(1, 2))
    assert type(model[1]) is nn.MaxPool2d


def test_the_global_pool_may_keep_a_map_that_no_later_module_exceeds():
    # the (2, 3) pool is the last adaptive pool; the 1x1 conv after it reads 2x3 = its own area
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.AdaptiveAvgPool2d((2, 3)),
        nn.Conv2d(16, 4, 1),
        nn.Flatten(),
        nn.Linear(24, 2),
    ).eval()
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        before = model(x)
    _, names = lapify(model, where="global", input_size=(9, 11))
    assert names == ["1"]
    assert isinstance(model[1], AdaptiveLocalAttentionPool2d) and model[1].in_channels == 16
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # uniform start: the plain average


def not_global_models() -> dict[str, nn.Module]:
    return {
        # a 1-channel 2x6 map (area 12 > 2x3) is read after the (2, 3) pool
        "bigger map after": nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.AdaptiveAvgPool2d((2, 3)),
            nn.Conv2d(16, 1, 1),
            nn.Upsample(scale_factor=(1, 2)),
            nn.Conv2d(1, 1, 1),
            nn.Flatten(),
            nn.Linear(12, 2),
        ),
        # a BatchNorm right after the pool
        "batchnorm after": nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.AdaptiveAvgPool2d(1),
            nn.BatchNorm2d(8),
            nn.Flatten(),
            nn.Linear(8, 2),
        ),
    }


@pytest.mark.parametrize("case", list(not_global_models()))
def test_an_adaptive_pool_before_bigger_maps_or_a_batchnorm_is_not_the_global_pool(case, caplog):
    model = not_global_models()[case]
    with (
        caplog.at_level(logging.WARNING, logger="torchlap.models.lapify"),
        pytest.raises(ValueError, match=r"where='global'\) found nothing to replace"),
    ):
        lapify(model, where="global", input_size=8)
    assert "no global pool found" in caplog.text
    assert not lap_modules(model) and type(model[1]) is nn.AdaptiveAvgPool2d


def test_auto_without_a_global_pool_warns_and_keeps_the_steps(caplog):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)
    )
    with caplog.at_level(logging.WARNING, logger="torchlap.models.lapify"):
        _, names = lapify(model, input_size=16)
    assert names == ["3"]
    assert "lapify(where='auto'): no global pool found in the model" in caplog.text


class Body(nn.Module):
    """Returns its features in a 1-tuple or a dict, as many backbones do."""

    def __init__(self, wrap: str) -> None:
        super().__init__()
        self.wrap = wrap
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor] | dict[str, torch.Tensor]:
        out = self.body(x)
        return (out,) if self.wrap == "tuple" else {"out": out}


class Net(nn.Module):
    def __init__(self, wrap: str) -> None:
        super().__init__()
        self.backbone = Body(wrap)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(x)
        features = out[0] if isinstance(out, tuple) else out["out"]
        return self.fc(self.gap(features).flatten(1))


@pytest.mark.parametrize("wrap", ["tuple", "dict"])
def test_modules_returning_a_tuple_or_a_dict_do_not_break_the_dry_pass(wrap):
    model = Net(wrap).eval()
    x = torch.randn(1, 3, 16, 16)
    before = vanilla_shape(model, x)
    _, names = lapify(model, input_size=16)
    assert names == ["backbone.body.3", "gap"]
    outputs_keep_their_shape(model, x, before)


def test_the_dry_pass_leaves_batchnorm_statistics_and_train_flags_alone():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.MaxPool2d(2),
        nn.MaxPool2d(2),
        nn.MaxPool2d(2),
        *head(4),
    ).train()
    bn = model[1]
    stats = {k: v.clone() for k, v in bn.state_dict().items()}
    _, names = lapify(model, input_size=16)
    assert names == ["4", "5"]
    for key, value in bn.state_dict().items():
        assert torch.equal(value, stats[key]), key
    assert all(m.training for m in model.modules())
