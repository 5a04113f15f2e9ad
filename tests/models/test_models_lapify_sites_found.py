"""lapify's sites: which modules it offers, the probe input it draws, and its refusals.

Sites (torchlap.models.lapify): pooling and adaptive pooling layers, convolutions with a
stride > 1, torchvision ResNet blocks that down-sample, Inception reductions, timm's
FastAdaptiveAvgPool over (H, W), and the functional global pool of torchvision DenseNet,
MobileNetV2, MNASNet and ShuffleNetV2 (an adaptive LAP appended to the pooled Sequential).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from torchlap import lapify
from torchlap.layers import AdaptiveLocalAttentionPool2d, lap_modules


def asked(model: nn.Module) -> list[str]:
    """The names the where= predicate is asked about (every replaceable module but the
    appended global pools), in model order; the predicate selects nothing."""
    names: list[str] = []

    def predicate(name: str, module: nn.Module) -> bool:
        names.append(name)
        return False

    with pytest.raises(ValueError, match="selected no module"):
        lapify(model, where=predicate)
    return names


def test_a_resnet_offers_its_pools_strided_convs_and_down_sampling_blocks():
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    steps = [f"layer{i}.0{part}" for i in (2, 3, 4) for part in ("", ".conv1", ".downsample.0")]
    assert asked(model) == ["conv1", "maxpool", *steps, "avgpool"]
    with pytest.raises(ValueError, match=r"'layer2\.0\.conv1' lies inside 'layer2\.0'"):
        lapify(model, where=lambda name, module: True)
    assert not lap_modules(model)


def test_timm_fast_pools_are_sites_only_over_height_and_width():
    layers = pytest.importorskip("timm.layers")
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(4, 4, 3, stride=(1, 2)),
        layers.adaptive_avgmax_pool.FastAdaptiveAvgPool(input_fmt="NHWC"),
        nn.Conv2d(4, 4, 1),
        layers.adaptive_avgmax_pool.FastAdaptiveAvgPool(flatten=True),
    )
    assert asked(model) == ["1", "4"]


class DenseNet(nn.Module):
    """Not torchvision's: named as it, with the same layout, but no appended site."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.classifier = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.features(x)), 1)
        return self.classifier(x.flatten(1))


def small_densenet() -> nn.Module:
    return torchvision.models.DenseNet(8, (2, 2), 8, num_classes=3)


# (builder, the pooled Sequential, the children lapify appends to it)
FUNCTIONAL = {
    "densenet": (small_densenet, "features", ["relu_final", "global_pool"]),
    "mobilenet_v2": (
        lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=3, width_mult=0.25),
        "features",
        ["global_pool"],
    ),
    "mnasnet": (
        lambda: torchvision.models.mnasnet0_5(weights=None, num_classes=3),
        "layers",
        ["global_pool"],
    ),
    "shufflenet": (
        lambda: torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=3),
        "conv5",
        ["global_pool"],
    ),
}


@pytest.mark.parametrize("arch", list(FUNCTIONAL))
def test_a_functional_global_pool_gets_an_appended_lap_that_keeps_the_outputs(arch):
    build, container, added = FUNCTIONAL[arch]
    torch.manual_seed(0)
    model = build().eval()
    old_children = [n for n, _ in getattr(model, container).named_children()]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    _, names = lapify(model, where="global", input_size=32)
    assert names == [f"{container}.global_pool"]
    sequential = getattr(model, container)
    assert [n for n, _ in sequential.named_children()] == old_children + added
    assert isinstance(sequential.global_pool, AdaptiveLocalAttentionPool2d)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="found nothing to replace"):
        lapify(model, where="global", input_size=32)  # appended once only


class Twin(nn.Module):
    def __init__(self, own_pool: bool = False) -> None:
        super().__init__()
        self.a, self.b = small_densenet(), small_densenet()
        self.pool = nn.AdaptiveAvgPool2d(1) if own_pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:  # the DenseNets as feature extractors, pooled here
            return self.pool(self.a.features(x) + self.b.features(x)).flatten(1)
        return self.a(x) + self.b(x)


def test_appended_sites_of_nested_models_carry_their_prefix_and_keep_model_order():
    model = Twin()
    # the functional pools are no module: never offered to a predicate
    assert not [name for name in asked(model) if "global_pool" in name]
    _, names = lapify(model, where=["b.features.global_pool", "a.features.global_pool"])
    assert names == ["a.features.global_pool", "b.features.global_pool"]
    assert list(lap_modules(model)) == names


def test_an_own_global_pool_wins_over_the_functional_one_it_replaces():
    model = Twin(own_pool=True)
    _, names = lapify(model, where="global", input_size=16)
    assert names == ["pool"] and not hasattr(model.a.features, "global_pool")


def test_a_model_only_named_like_a_torchvision_one_has_no_appended_site():
    with pytest.raises(ValueError, match=r"where='global'\) found nothing to replace"):
        lapify(DenseNet(), where="global", input_size=8)


class Recorder(nn.Module):
    """Keeps what it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return x


def probed(model: nn.Sequential, input_size) -> torch.Tensor:
    lapify(model, where="global", input_size=input_size)
    (probe,) = model[0].seen
    return probe


def seeded_normal(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("input_size", "shape"),
    [
        (None, (1, 2, 224, 224)),
        (6, (1, 2, 6, 6)),
        ((5, 7), (1, 2, 5, 7)),
        ((4, 5, 7), (1, 4, 5, 7)),
    ],
)
def test_the_probe_is_seeded_normal_noise_with_the_first_convs_channels(input_size, shape):
    channels = shape[1]
    model = nn.Sequential(
        Recorder(), nn.Conv2d(channels, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    torch.testing.assert_close(probed(model, input_size), seeded_normal(shape))


def test_the_probe_takes_the_dtype_of_the_first_floating_tensor():
    model = nn.Sequential(Recorder(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model[1].register_buffer("count", torch.zeros(1, dtype=torch.long))
    probe = probed(model, 4)  # no Conv2d: 3 channels; no floating tensor: float32
    torch.testing.assert_close(probe, seeded_normal((1, 3, 4, 4)))
    model = nn.Sequential(
        Recorder(), nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).double()
    model[1].register_buffer("count", torch.zeros(1, dtype=torch.long))
    probe = probed(model, 4)
    assert probe.dtype == torch.float64
    torch.testing.assert_close(probe, seeded_normal((1, 2, 4, 4)).double())


class Failing(nn.Module):
    def __init__(self, conv: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, 3, 1) if conv else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("conv", "input_size", "message"),
    [
        (True, (2, 8, 8), r"\(1, 2, 8, 8\) failed \(RuntimeError: boom\); .* accepts$"),
        (True, 8, r"\(1, 2, 8, 8\) failed .*the in_channels of the first Conv2d, 'body\.0';"),
        (True, None, r"shape \(1, 2, 224, 224\) failed .*probe's 2 channels"),
        (False, (8, 8), r"\(1, 3, 8, 8\) .*\(the probe has 3 channels: the model has no Conv2d"),
    ],
)
def test_a_failing_dry_pass_says_how_its_probe_was_made(conv, input_size, message):
    with pytest.raises(ValueError, match=message):
        lapify(Failing(conv), where="global", input_size=input_size)


@pytest.mark.parametrize("input_size", [True, 64.0, (8,), (1, 2, 8, 8), {"h": 8}])
def test_an_input_size_of_another_form_is_a_type_error(input_size):
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2))
    with pytest.raises(TypeError, match=r"input_size must be an int, \(H, W\) or \(C, H, W\)"):
        lapify(model, where=["1"], input_size=input_size)


@pytest.mark.parametrize("input_size", [0, -1, 2**63, (0, 8), (3, 8, 2**63), (3, True, 8)])
def test_input_size_entries_out_of_range_are_refused(input_size):
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="positive ints that fit in 64 bits"):
        lapify(model, where=["1"], input_size=input_size)
    assert type(model[1]) is nn.MaxPool2d


@pytest.mark.parametrize("input_size", [1, 2**63 - 1, (1, 1), (1, 1, 2**63 - 1)])
def test_input_size_entries_at_the_bounds_are_accepted(input_size):
    # the pool's channels come from the conv before it: no dry pass runs on the huge size
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2))
    _, names = lapify(model, where=["1"], input_size=input_size)
    assert names == ["1"] and list(lap_modules(model)) == ["1"]


def test_lists_of_names_are_checked_before_any_work():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.MaxPool2d(2), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="where: the list of module names is empty"):
        lapify(model, where=[])
    with pytest.raises(ValueError, match=r"where: module names listed twice: \['2'\]"):
        lapify(model, where=["2", "1", "2"])
    with pytest.raises(TypeError, match=r"where must be 'auto', 'global', .* got list"):
        lapify(model, where=[1])
    assert not lap_modules(model)
    _, names = lapify(model, where=("2", "1"))
    assert names == ["1", "2"]


def test_a_misspelt_name_gets_at_most_three_suggestions():
    model = nn.Sequential()
    for name in ("pool_a", "pool_b", "pool_c", "pool_d"):
        model.add_module(name, nn.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"no module 'pool_' \(did you mean \[[^]]*\]\?\)$") as e:
        lapify(model, where=["pool_"])
    suggested = str(e.value).split("[", 1)[1].split("]", 1)[0]
    assert len(suggested.split(", ")) == 3


def test_a_preset_naming_a_module_lapify_cannot_replace_says_so():
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    model.avgpool = nn.Identity()
    with pytest.raises(ValueError, match=r"preset 'resnet18': lapify cannot replace avgpool"):
        lapify(model, where="resnet18")
    assert not lap_modules(model)


def test_a_predicate_choosing_a_module_registered_twice_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    model.add_module("again", model[1])
    with pytest.raises(ValueError, match=r"'1' is one module .*\(registered as \['1', 'again'\]\)"):
        lapify(model, where=lambda name, module: isinstance(module, nn.MaxPool2d))
    assert type(model[1]) is nn.MaxPool2d
